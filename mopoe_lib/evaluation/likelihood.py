"""Test log-likelihoods by importance sampling (Appendix B: 15 samples).

    log p(X) ~= log (1/K) sum_k p(X | z_k) p(z_k) / q(z_k | X_S),   z_k ~ q(z | X_S),

with the posterior of a subset X_S as the proposal: it estimates the joint log-likelihood of
all modalities "conditioned on" X_S (Table 4, Figure 3 right); in expectation it is a lower
bound that tightens with K. Samples are laid out (K, S, B) and reduced over K only; the
official code reshaped (K, B) samples as (B, K), mixing data points (reference §6).
Likelihoods are not weighted by the reconstruction weights.
"""

from __future__ import annotations

import math

import torch

from ..experts import log_normal, log_std_normal
from ..fusion import subset_validity
from ..model import GaussianPosterior, MixturePosterior, MultimodalVAE
from ..subsets import powerset


def _style_proposal(model, enc, subsets, k: int):
    """Style codes per modality (M, K, S, B, Ds): q(s_m | x_m) if m is in the subset, else prior."""
    m_, b, ds = enc.style_mu.shape
    s_count = subsets.shape[0]
    member = subsets.t().to(enc.style_mu.device).view(m_, 1, s_count, 1, 1)
    mu = torch.where(member, enc.style_mu.view(m_, 1, 1, b, ds), 0.0)
    lv = torch.where(member, enc.style_logvar.view(m_, 1, 1, b, ds), 0.0)
    eps = torch.randn(m_, k, s_count, b, ds, device=mu.device)
    s = mu + torch.exp(0.5 * lv) * eps
    log_ratio = (log_std_normal(s) - log_normal(s, mu, lv)).sum(0)  # (K, S, B)
    return s, log_ratio


@torch.no_grad()
def log_likelihood(
    model: MultimodalVAE,
    x: dict[str, torch.Tensor],
    subsets: torch.Tensor | None = None,
    *,
    num_samples: int = 15,
    joint: bool = False,
    max_rows: int = 16384,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Importance-sampled log p(X) per proposal: (S, B) for the S subsets' posteriors.

    ``joint=True`` instead uses the model's joint posterior q(z | X) as the only proposal
    (the mixture over all subsets for MoPoE / Eq. (5), returns (1, B)). Subsets are processed
    in chunks so that a decoder sees at most about ``max_rows`` codes at once. ``mask``
    (B, M): X is each sample's observed modalities (proposals fuse only those, and only
    their likelihoods enter the weights).
    """
    x = model.complete(x, mask)
    enc = model.encode(x)
    num_mod = len(model.modalities)
    if joint:
        post = joint_posterior(model, x, enc, mask)
        subsets = torch.ones(1, num_mod, dtype=torch.bool)
        chunks = [(subsets, post)]
    else:
        subsets = powerset(num_mod) if subsets is None else subsets
        batch = next(iter(x.values())).shape[0]
        per = max(1, max_rows // (num_samples * batch))
        chunks = [
            (subsets[i : i + per], model.posterior(x, subsets[i : i + per], mask, enc=enc))
            for i in range(0, subsets.shape[0], per)
        ]
    out = []
    for sub, post in chunks:
        z = post.sample(num_samples)  # (K, S, B, D)
        k, s_count, b, d = z.shape
        log_w = model.prior_log_prob(z) - post.log_prob(z)
        style = None
        if model.style_dim:
            style, style_ratio = _style_proposal(model, enc, sub, k)
            log_w = log_w + style_ratio
            style = style.reshape(num_mod, k * s_count, b, -1)
        ll = model.decode_loglik(x, z.reshape(k * s_count, b, d), None, style)
        ll = ll.view(num_mod, k, s_count, b)
        if mask is not None:  # only observed modalities are evidence
            ll = torch.where(mask.t().view(num_mod, 1, 1, b), ll, torch.zeros_like(ll))
        log_w = log_w + ll.sum(0)
        out.append(torch.logsumexp(log_w, dim=0) - math.log(k))
    return torch.cat(out)


def joint_posterior(model: MultimodalVAE, x, enc=None, mask=None):
    """q(z | X) of the model: the uniform mixture of all subset posteriors for MoPoE and
    Eq. (5), the full product for MVAE, the mixture of unimodal experts for MMVAE. With a
    mask (B, M), X is each sample's observed modalities (MoPoE mixes the subsets that
    hold at least one of them)."""
    num_mod = len(model.modalities)
    if model.method in ("mopoe", "eq5"):
        subsets = powerset(num_mod)
        post = model.posterior(x, subsets, mask, enc=enc)
        everyone = torch.ones(1, post.mu.shape[0], dtype=torch.bool)
        valid = None
        if mask is not None:
            valid = subset_validity(subsets.to(mask.device), mask, model.prior_expert).t()
        return MixturePosterior(post.mu, post.logvar, everyone, valid)
    full = torch.ones(1, num_mod, dtype=torch.bool)
    post = model.posterior(x, full, mask, enc=enc)
    assert isinstance(post, GaussianPosterior | MixturePosterior)
    return post
