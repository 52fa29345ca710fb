"""The multimodal objectives: MoPoE, its special cases MVAE and MMVAE, and Eq. (5).

Every objective is a function of the unimodal encoder outputs ``mu, logvar`` of
shape (M, B, D) and of a decoder callback

    decode_loglik(z, need) -> (M, T, B)

that takes latent codes ``z`` of shape (T, B, D) (T groups of B codes) and returns,
for every modality m, log p(x_m | z) of the batch's own x_m (summed over the data
dimensions, not yet weighted). ``need`` is None (all modalities) or a boolean
(T, M) telling which decoders a group needs; entries not needed may hold anything.
The callback is where the networks live; the objectives only hold the math.

Each returns an :class:`Objective` with per-sample terms; ``loss()`` is what to
minimize. Notation: lambda_m are reconstruction weights, beta weights the KL term,
and all KL terms are to the prior p(z) = N(0, I).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from . import subsets as S
from .experts import (
    batch_noise,
    batch_randint,
    batch_uniform,
    current_shard,
    kl_laplace,
    kl_std_normal,
    laplace_mixture_log_prob,
    laplace_noise,
    log_laplace,
    log_normal,
    log_std_normal,
    mixture_log_prob,
    reparameterize,
    reparameterize_laplace,
)
from .fusion import PriorExpert, check_experts, subset_posteriors, subset_validity

DecodeLogLik = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
Sampling = Literal["stochastic", "batch_split", "stratified"]
KLMode = Literal["mixture", "subset_average"]


@dataclass
class Objective:
    """Per-sample terms of a bound; larger ``value`` is better.

    value: (B,) the objective for each sample, e.g. rec - beta * kl.
    rec: (M, B) weighted expected log-likelihood of each modality.
    kl: (B,) the divergence term (before beta).
    surrogate: (B,) what to differentiate when it differs from ``value`` (DReG).
    """

    value: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    surrogate: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    def loss(self) -> torch.Tensor:
        target = self.value if self.surrogate is None else self.surrogate
        return -target.mean()


# ---------------------------------------------------------------------------
# helpers


def _weights(rec_weights, num_mod: int, like: torch.Tensor) -> torch.Tensor:
    if rec_weights is None:
        return torch.ones(num_mod, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(rec_weights, dtype=like.dtype, device=like.device)
    if w.shape != (num_mod,):
        raise ValueError(
            f"rec_weights must have one entry per modality ({num_mod}), got {tuple(w.shape)}"
        )
    return w


def _check_loglik(ll: torch.Tensor, num_mod: int, groups: int, batch: int) -> torch.Tensor:
    if ll.shape != (num_mod, groups, batch):
        raise ValueError(
            f"decode_loglik must return shape (M, T, B) = ({num_mod}, {groups}, {batch}), "
            f"got {tuple(ll.shape)}"
        )
    return ll


def _weighted_rec(
    ll: torch.Tensor, lam: torch.Tensor, present: torch.Tensor | None
) -> torch.Tensor:
    """lambda_m * log p(x_m | z), zero for missing modalities; ll is (M, ..., B)."""
    shape = (-1,) + (1,) * (ll.dim() - 1)
    rec = ll * lam.view(shape)
    if present is not None:  # (B, M) -> (M, 1.., B)
        pres = present.t().reshape(
            (present.shape[1],) + (1,) * (ll.dim() - 2) + (present.shape[0],)
        )
        rec = torch.where(pres, rec, torch.zeros_like(rec))
    return rec


def _noise(
    shape, like: torch.Tensor, generator: torch.Generator | None, batch_dim: int
) -> torch.Tensor:
    """Standard normal noise from ``generator`` (the global RNG when None); dimension
    ``batch_dim`` runs over the samples (see :func:`mopoe_lib.experts.batch_shard`)."""
    return batch_noise(shape, batch_dim, like=like, generator=generator)


def batch_split_components(
    batch: int, num_subsets: int, device=None, rows: str = "floor_div"
) -> torch.Tensor:
    """The official code's mixture 'sampling': contiguous blocks of rows per subset.

    Each subset gets the same number of consecutive rows and the last subset (the full
    set) takes the remainder; with B < K every row goes to the last subset. ``rows``:
    ``"floor_div"``: floor(B / K) rows per subset; ``"float32_floor"``: floor(B * w_k)
    with the float32 weights w_k = 1/K renormalized, as the official code computes it,
    which gives B/K - 1 rows (not B/K) for K = 31 and B a multiple of 31.
    """
    shard = current_shard()
    if shard is not None:  # this rank's rows of the global batch's layout
        rank, world = shard
        layout = _batch_split_layout(batch * world, num_subsets, device, rows)
        return layout[rank * batch : (rank + 1) * batch]
    return _batch_split_layout(batch, num_subsets, device, rows)


def split_rows_per_subset(batch: int, num_subsets: int, rows: str = "floor_div") -> int:
    """Rows per (non-last) subset of the batch split; see :func:`batch_split_components`."""
    if rows == "floor_div":
        return batch // num_subsets
    if rows == "float32_floor":
        w = torch.full((num_subsets,), 1.0 / num_subsets, dtype=torch.float32)
        w = w / w.sum()
        return int(torch.floor(batch * w[0]))
    raise ValueError(f"rows must be 'floor_div' or 'float32_floor', got {rows!r}")


def _batch_split_layout(batch: int, num_subsets: int, device=None, rows="floor_div"):
    per = split_rows_per_subset(batch, num_subsets, rows)
    comp = torch.full((batch,), num_subsets - 1, dtype=torch.long, device=device)
    if per:
        comp[: per * num_subsets] = torch.arange(num_subsets, device=device).repeat_interleave(per)
        comp[per * num_subsets :] = num_subsets - 1
    return comp


def sample_components(
    valid: torch.Tensor, batch: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one mixture component per sample, uniformly among its valid subsets.

    ``valid`` is (K, B) or (K, 1); returns (B,) long indices. Per-sample validity (a
    mask) takes one uniform u_b per sample and the floor(u_b * n_b)-th of its n_b valid
    subsets, so a sample's draw does not depend on the rest of the batch.
    """
    k = valid.shape[0]
    if valid.shape[1] == 1:
        return batch_randint(k, batch, device=valid.device, generator=generator)
    u = batch_uniform(batch, device=valid.device, generator=generator)
    count = valid.sum(0)  # (B,) >= 1 for every sample that has any modality
    j = (u * count).long().clamp_(max=(count - 1).clamp_min(0))
    return (valid.long().cumsum(0) > j.unsqueeze(0)).long().argmax(0)


def _mixture_log_q(z, mu_k, lv_k, valid):
    """log of the uniform mixture over the valid components, at z of shape (..., B, D).

    mu_k, lv_k: (K, B, D); valid: (K, B) or (K, 1). Returns (..., B). Invalid components
    get weight 0 (log-weight -inf), the valid ones 1 / (their number).
    """
    extra = z.dim() - 2
    view = (mu_k.shape[0],) + (1,) * extra + mu_k.shape[1:]
    v = valid.view((valid.shape[0],) + (1,) * extra + (valid.shape[1],))
    log_share = -torch.log(valid.sum(0).to(z.dtype))  # (B,) or (1,)
    log_weights = torch.where(v, log_share, torch.full_like(log_share, -torch.inf))
    return mixture_log_prob(z, mu_k.view(view), lv_k.view(view), log_weights)


# ---------------------------------------------------------------------------
# MoPoE (Definition 1, Eq. (6)) and the average of subset ELBOs (Eq. (5), (21))


def _mopoe_terms(
    mu,
    logvar,
    decode_loglik,
    *,
    subsets,
    prior_expert,
    rec_weights,
    sampling,
    kl,
    mask,
    eps,
    components,
    generator,
    split_rows="floor_div",
    variance_eps=0.0,
):
    num_mod, batch, _ = mu.shape
    subsets = S.powerset(num_mod) if subsets is None else S.check_subsets(subsets, num_mod)
    if sampling not in ("stochastic", "batch_split", "stratified"):
        raise ValueError(
            f"sampling must be 'stochastic', 'batch_split' or 'stratified', got {sampling!r}"
        )
    if kl not in ("mixture", "subset_average"):
        raise ValueError(f"kl must be 'mixture' or 'subset_average', got {kl!r}")
    mu_k, lv_k = subset_posteriors(mu, logvar, subsets, prior_expert, mask,
                                   variance_eps)  # (K, B, D)  # fmt: skip
    valid = subset_validity(subsets.to(mu.device), mask, prior_expert)  # (K, B|1)
    lam = _weights(rec_weights, num_mod, mu)
    n_sub = subsets.shape[0]

    if sampling == "stratified":
        # One code from every component for every sample: E_mix = (1/K) sum_k E_{q_k}.
        if eps is None:
            eps = _noise(mu_k.shape, mu_k, generator, 1)
        z = reparameterize(mu_k, lv_k, eps)  # (K, B, D)
        ll = _check_loglik(decode_loglik(z, None), num_mod, n_sub, batch)
        rec_mk = _weighted_rec(ll, lam, mask)  # (M, K, B)
        if kl == "mixture":
            kl_k = _mixture_log_q(z, mu_k, lv_k, valid) - log_std_normal(z)
        else:
            kl_k = kl_std_normal(mu_k, lv_k)  # (K, B)
        share = valid.to(mu.dtype) / valid.sum(0, keepdim=True).to(mu.dtype)  # (K, B|1)
        rec = (rec_mk * share.unsqueeze(0)).sum(1)  # (M, B)
        kl_val = (torch.where(valid, kl_k, torch.zeros_like(kl_k)) * share).sum(0)
        return rec, kl_val, {"z": z}

    if components is None:
        if sampling == "batch_split":
            if mask is not None:
                raise ValueError(
                    "sampling='batch_split' assumes complete tuples; with a mask use "
                    "sampling='stochastic', which draws among each sample's valid subsets"
                )
            components = batch_split_components(batch, n_sub, mu.device, split_rows)
        else:
            components = sample_components(valid, batch, generator)
    rows = torch.arange(batch, device=mu.device)
    mu_s, lv_s = mu_k[components, rows], lv_k[components, rows]  # (B, D)
    if eps is None:
        eps = _noise(mu_s.shape, mu_s, generator, 0)
    z = reparameterize(mu_s, lv_s, eps)
    ll = _check_loglik(decode_loglik(z.unsqueeze(0), None), num_mod, 1, batch)[:, 0]
    rec = _weighted_rec(ll, lam, mask)  # (M, B)
    if kl == "mixture":
        kl_val = _mixture_log_q(z, mu_k, lv_k, valid) - log_std_normal(z)
    else:
        kl_k = kl_std_normal(mu_k, lv_k)
        vf = valid.to(mu.dtype)
        kl_val = (kl_k * vf).sum(0) / vf.sum(0)
    return rec, kl_val, {"z": z, "components": components}


def mopoe(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    decode_loglik: DecodeLogLik,
    *,
    subsets: torch.Tensor | None = None,
    prior_expert: PriorExpert = "none",
    beta: float = 1.0,
    rec_weights=None,
    sampling: Sampling = "stochastic",
    kl: KLMode = "mixture",
    mask: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    components: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    split_rows: str = "floor_div",
    variance_eps: float = 0.0,
) -> Objective:
    """L_MoPoE of Eq. (6): E_{q(z|X)}[sum_m lambda_m log p(x_m|z)] - beta KL(q(z|X) || p(z)).

    q(z|X) is the uniform mixture over ``subsets`` (default: all 2^M - 1 non-empty
    ones) of the subset products of experts.

    sampling:
        ``"stochastic"``: one component per sample, uniformly (the paper's mixture);
        ``"batch_split"``: the official code's contiguous blocks of rows per subset;
        ``"stratified"``: a code from every component for every sample (K decodes).
    kl:
        ``"mixture"``: the Monte Carlo estimate log q(z|X) - log p(z) at the sampled
        z, so the objective is an unbiased estimate of Eq. (6), as in the paper;
        ``"subset_average"``: the average of the closed-form subset KLs, as in the
        official code. Since KL(mixture || p) <= average of the KLs, this is a lower
        bound, and with it the objective estimates the average of subset ELBOs
        (Eq. (21)), the looser bound of Lemma 3, not L_MoPoE.
    prior_expert: ``"none"`` (Definition 1), ``"full"`` (official code) or ``"all"``.
    mask: optional (B, M) availability; each sample mixes over its valid subsets and
        only its observed modalities are reconstructed.
    eps, components: fixed noise (shaped like the sampled z) and component indices,
        for reproducible or common-random-number evaluations.
    generator: draws the components and the noise (the global RNG when None).
    split_rows: rows per subset of ``sampling="batch_split"`` (see
        :func:`batch_split_components`; official code: ``"float32_floor"``).
    variance_eps: added to every expert variance before the products (official 1e-8).
    """
    check_experts(mu, logvar)
    rec, kl_val, extras = _mopoe_terms(
        mu,
        logvar,
        decode_loglik,
        subsets=subsets,
        prior_expert=prior_expert,
        rec_weights=rec_weights,
        sampling=sampling,
        kl=kl,
        mask=mask,
        eps=eps,
        components=components,
        generator=generator,
        split_rows=split_rows,
        variance_eps=variance_eps,
    )
    return Objective(rec.sum(0) - beta * kl_val, rec, kl_val, extras=extras)


def subset_elbo_average(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    decode_loglik: DecodeLogLik,
    *,
    subsets: torch.Tensor | None = None,
    prior_expert: PriorExpert = "none",
    beta: float = 1.0,
    rec_weights=None,
    mask: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
) -> Objective:
    """The average of the subset ELBOs L_k(theta, phi_k; X) of Eq. (4), Eq. (21).

    (1/K) sum_k { E_{q_k(z|X_k)}[sum_m lambda_m log p(x_m|z)] - beta KL(q_k || p) }.
    Maximizing it minimizes the convex combination of KLs of Eq. (5) (Lemma 1); it is
    the "Eq. (5)" baseline of the paper's Table 7. Every subset is decoded
    (K times the decoder cost of L_MoPoE).
    """
    return mopoe(
        mu,
        logvar,
        decode_loglik,
        subsets=subsets,
        prior_expert=prior_expert,
        beta=beta,
        rec_weights=rec_weights,
        sampling="stratified",
        kl="subset_average",
        mask=mask,
        eps=eps,
    )


# ---------------------------------------------------------------------------
# MVAE (Wu & Goodman, 2018): products of experts with the prior expert


def mvae(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    decode_loglik: DecodeLogLik,
    *,
    variant: Literal["joint", "joint_unimodal", "subsampled"] = "joint",
    num_random_subsets: int = 1,
    beta: float = 1.0,
    rec_weights=None,
    mask: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    rec_weight_terms: Literal["all", "joint"] = "all",
    variance_eps: float = 0.0,
) -> Objective:
    """The MVAE objective: a sum of ELBOs of products of experts, each with the prior expert.

    variant:
        ``"joint"``: the ELBO of the full product, L_PoE of Eq. (7), the special case
        of MoPoE with the full set as the only subset.
        ``"joint_unimodal"``: joint ELBO + the M unimodal ELBOs L(theta, phi_m; x_m),
        as Wu & Goodman's MNIST experiment and the official MoPoE code (which, with
        ``rec_weight_terms="joint"``, weights only the joint term by lambda_m).
        ``"subsampled"``: additionally ``num_random_subsets`` random subsets per batch
        (size uniform in 2..M-1, then a subset of that size), Wu & Goodman's sub-sampling.
    Each term reconstructs only the modalities of its own subset (the ELBO on
    log p(X_k)), so only the joint term bounds log p(X) (Wu & Goodman, 2019).
    rec_weight_terms: ``"all"``: lambda_m weights log p(x_m|z) in every term;
        ``"joint"``: only in the joint term, weight 1 in the other terms, as the
        official MoPoE code trains its MVAE (``utils.calc_elbo``).
    variance_eps: added to every expert variance before the products (official 1e-8).
    """
    if rec_weight_terms not in ("all", "joint"):
        raise ValueError(f"rec_weight_terms must be 'all' or 'joint', got {rec_weight_terms!r}")
    check_experts(mu, logvar)
    num_mod, batch, _ = mu.shape
    terms = [S.full(num_mod)]
    if variant in ("joint_unimodal", "subsampled"):
        terms.append(S.unimodal(num_mod))
    if variant == "subsampled" and num_mod > 2:
        for _ in range(num_random_subsets):
            size = int(torch.randint(2, num_mod, (1,), generator=generator))
            idx = torch.randperm(num_mod, generator=generator)[:size]
            row = torch.zeros(1, num_mod, dtype=torch.bool)
            row[0, idx] = True
            terms.append(row)
    elif variant not in ("joint", "joint_unimodal", "subsampled"):
        raise ValueError(
            f"variant must be 'joint', 'joint_unimodal' or 'subsampled', got {variant!r}"
        )
    term_sets = torch.cat(terms)  # (T, M)
    n_terms = term_sets.shape[0]
    mu_t, lv_t = subset_posteriors(mu, logvar, term_sets, "all", mask, variance_eps)
    if eps is None:
        eps = _noise(mu_t.shape, mu_t, generator, 1)
    z = reparameterize(mu_t, lv_t, eps)
    need = term_sets.to(mu.device)
    ll = _check_loglik(decode_loglik(z, need), num_mod, n_terms, batch)
    lam = _weights(rec_weights, num_mod, mu)
    rec_mt = _weighted_rec(ll, lam, mask)  # (M, T, B)
    if rec_weight_terms == "joint":  # lambda on the joint term (row 0) only
        ones = _weighted_rec(ll, torch.ones_like(lam), mask)
        joint = torch.zeros(n_terms, dtype=torch.bool, device=mu.device)
        joint[0] = True
        rec_mt = torch.where(joint.view(1, -1, 1), rec_mt, ones)
    rec_mt = torch.where(need.t().unsqueeze(-1), rec_mt, torch.zeros_like(rec_mt))
    kl_t = kl_std_normal(mu_t, lv_t)  # (T, B)
    if mask is not None:  # a term none of whose modalities is observed is dropped
        term_valid = (need.unsqueeze(1) & mask.unsqueeze(0)).any(-1)  # (T, B)
        kl_t = torch.where(term_valid, kl_t, torch.zeros_like(kl_t))
    value = rec_mt.sum((0, 1)) - beta * kl_t.sum(0)
    return Objective(value, rec_mt.sum(1), kl_t.sum(0), extras={"z": z, "terms": term_sets})


# ---------------------------------------------------------------------------
# MMVAE (Shi et al., 2019): the mixture of unimodal experts, stratified sampling


def mmvae(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    decode_loglik: DecodeLogLik,
    *,
    K: int = 1,
    estimator: Literal["elbo", "iwae", "dreg", "m_elbo"] = "elbo",
    bound: Literal["looser", "tight"] = "looser",
    dreg_grad: Literal["intended", "released"] = "intended",
    experts: Literal["gaussian", "laplace"] = "gaussian",
    prior_log_scale: torch.Tensor | None = None,
    beta: float = 1.0,
    rec_weights=None,
    mask: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Objective:
    """MMVAE's objectives over the M unimodal posteriors (Shi et al., 2019).

    With log w = sum_d lambda_d log p(x_d|z) + beta (log p(z) - log q(z|X)) and
    q(z|X) = (1/M) sum_m q(z|x_m), for K codes z_{m,1..K} ~ q(z|x_m) from every m:

    ``"elbo"``: (1/M) sum_m (1/K) sum_k log w_{m,k}, the MoE ELBO of Eq. (9) with
        stratified sampling (with K=1 it equals MoPoE over the unimodal subsets);
    ``"iwae"``: with ``bound="looser"`` (1/M) sum_m log (1/K) sum_k w_{m,k}, Shi et al.'s
        stratified bound L_IWAE^MoE (their ``m_iwae_looser``, >= the ELBO); with
        ``bound="tight"``
        log (1/(MK)) sum_{m,k} w_{m,k} (their ``m_iwae``);
    ``"dreg"``: the doubly reparameterized estimator of the same bound: q's parameters
        are detached inside log q, the value is sum w~ log w with w~ the normalized
        weights (over k per stratum for looser, over all m, k for tight). With
        ``dreg_grad="intended"`` (the default) the gradient reaching z is scaled once
        more by w~, so encoders get sum w~^2 d log w / dz dz/dphi, as DReG prescribes
        (Tucker et al.; multivae does the same). ``dreg_grad="released"`` is what the
        released iffsid/mmvae code computes: its hook sits on a ``torch.cat`` /
        ``torch.stack`` copy of the codes that the loss never reads, so it never fires
        and encoders get sum w~ d log w / dz dz/dphi (chapter 6 compares the two).
        Decoders get sum w~ d log w / dtheta either way. For M = 1 the intended one is
        Tucker et al.'s unbiased DReG, and for K = 1 it is unbiased too (the dropped
        mixture scores average to zero over the strata). For M > 1 and K > 1 (looser) it
        is not unbiased for the gradient of the bound: a stratum samples from q(z|x_m)
        while the weight holds the mixture density, so the identity behind DReG covers
        only part of the score term, and the self-normalized weights within a stratum
        keep the rest from cancelling (tests/test_objectives.py measures the bias;
        chapter 6 shows it).
    ``"m_elbo"``: Shi et al.'s ``--obj elbo``, (1/M) sum_r [sum_d omega_rd lambda_d
        log p(x_d|z_d) - beta KL(q(z|x_r) || p(z))] with z_d ~ q(z|x_d) and the
        importance weight omega_rd = q(z_d|x_r) / q(z_d|x_d) (1 for d = r; z_d and the
        denominator detached, so omega differentiates into q(.|x_r) only). It uses the
        unimodal KLs, not the mixture's, so it is a different objective from ``"elbo"``.
        Averaged over the K codes.

    experts: ``"gaussian"`` (``logvar`` holds log-variances) or ``"laplace"`` (``logvar``
        holds log-scales log b; Shi et al.'s posteriors). The prior is N(0, I), or with
        ``prior_log_scale`` (D,) given, Laplace(0, exp(prior_log_scale)) (Laplace only;
        Shi et al. learn it). The KL of ``"m_elbo"`` is closed-form; every mixture KL is
        the Monte Carlo estimate log q(z|X) - log p(z) at the sampled codes.

    The stratified bound is not consistent: as K grows, (1/K) sum_k w_{m,k} tends to
    p(X) c_m with c_m = E_{p(z|X)}[q(z|x_m) / q(z|X)], so the bound tends to
    log p(X) + (1/M) sum_m log c_m <= log p(X) (Jensen, since sum_m c_m = M), with
    equality only when every c_m = 1 (chapter 6 measures the limit).

    The decoders see M*K*B codes per batch (every decoder decodes every code).
    ``eps``: the standard noise (M, K, B, D), normal or Laplace as the experts.
    """
    check_experts(mu, logvar)
    num_mod, batch, dim = mu.shape
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    for name, value, allowed in (
        ("estimator", estimator, ("elbo", "iwae", "dreg", "m_elbo")),
        ("bound", bound, ("looser", "tight")),
        ("dreg_grad", dreg_grad, ("intended", "released")),
        ("experts", experts, ("gaussian", "laplace")),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    if prior_log_scale is not None and experts != "laplace":
        raise ValueError("prior_log_scale (a Laplace prior) needs experts='laplace'")
    if estimator == "m_elbo" and mask is not None:
        raise ValueError("estimator='m_elbo' needs complete tuples (no mask)")
    laplace = experts == "laplace"
    if mask is not None:
        # A missing modality's stratum is dropped; zeroing its parameters keeps its
        # (possibly NaN) encoder output out of values and gradients.
        present = mask.t().unsqueeze(-1)
        mu = torch.where(present, mu, torch.zeros_like(mu))
        logvar = torch.where(present, logvar, torch.zeros_like(logvar))
    if eps is None:
        draw = laplace_noise if laplace else batch_noise
        eps = draw((num_mod, K, batch, dim), 2, like=mu, generator=generator)
    elif eps.shape != (num_mod, K, batch, dim):
        raise ValueError(
            f"eps must have shape (M, K, B, D) = {(num_mod, K, batch, dim)}, got {tuple(eps.shape)}"
        )
    if laplace:
        z = reparameterize_laplace(mu.unsqueeze(1), logvar.unsqueeze(1), eps)  # (M, K, B, D)
    else:
        z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps

    def log_prior(t):
        if prior_log_scale is None:
            return log_std_normal(t)
        return log_laplace(t, torch.zeros_like(prior_log_scale), prior_log_scale)

    if estimator == "dreg":
        mu_q, lv_q = mu.detach(), logvar.detach()
    else:
        mu_q, lv_q = mu, logvar
    valid = torch.ones(num_mod, 1, dtype=torch.bool, device=mu.device) if mask is None else mask.t()
    if laplace:
        v = valid.view(num_mod, 1, 1, valid.shape[1])
        log_share = -torch.log(valid.sum(0).to(z.dtype))
        lw_mix = torch.where(v, log_share, torch.full_like(log_share, -torch.inf))
        view = (num_mod, 1, 1, batch, dim)
        log_q = laplace_mixture_log_prob(z, mu_q.view(view), lv_q.view(view), lw_mix)
    else:
        log_q = _mixture_log_q(z, mu_q, lv_q, valid)  # (M, K, B)
    ll = decode_loglik(z.reshape(num_mod * K, batch, dim), None)
    ll = _check_loglik(ll, num_mod, num_mod * K, batch).reshape(num_mod, num_mod, K, batch)
    lam = _weights(rec_weights, num_mod, mu)
    rec_d = _weighted_rec(ll, lam, mask)  # (M_dec, M_comp, K, B)
    log_ratio = log_prior(z) - log_q  # (M, K, B)
    log_w = rec_d.sum(0) + beta * log_ratio

    strata = valid.to(mu.dtype)  # (M, B|1): average over the observed modalities' strata
    n_strata = strata.sum(0)
    extras = {"z": z, "log_w": log_w}
    if estimator == "m_elbo":
        return _m_elbo(mu, logvar, z, rec_d, laplace, prior_log_scale, beta, extras)
    vk = valid.unsqueeze(1)  # (M, 1, B|1)
    if estimator == "elbo":
        per_m = log_w.mean(1)
    elif bound == "looser":
        per_m = torch.logsumexp(log_w, dim=1) - math.log(K)
    if estimator == "elbo" or bound == "looser":
        per_m = torch.where(valid, per_m, torch.zeros_like(per_m))
        value = per_m.sum(0) / n_strata
    else:  # tight: one log-mean over all M*K weights of the observed strata
        masked = torch.where(vk, log_w, torch.full_like(log_w, -torch.inf))
        value = torch.logsumexp(masked.flatten(0, 1), dim=0) - torch.log(n_strata * K)
    rec = (rec_d.mean(2) * strata.unsqueeze(0)).sum(1) / n_strata  # (M_dec, B), at the codes
    kl = -(log_ratio.mean(1) * strata).sum(0) / n_strata
    surrogate = None
    if estimator == "dreg":
        masked = torch.where(vk, log_w.detach(), torch.full_like(log_w, -torch.inf))
        if bound == "looser":
            w_tilde = torch.softmax(masked, dim=1)  # over K within each stratum
        else:
            w_tilde = torch.softmax(masked.flatten(0, 1), dim=0).view_as(log_w)
        w_tilde = torch.where(vk, w_tilde, torch.zeros_like(w_tilde))
        if z.requires_grad and dreg_grad == "intended":
            z.register_hook(lambda g: g * w_tilde.unsqueeze(-1))
        per_m_s = (w_tilde * log_w).sum(1)  # (M, B)
        if bound == "looser":
            surrogate = (per_m_s * strata).sum(0) / n_strata
        else:
            surrogate = per_m_s.sum(0)
    return Objective(value, rec, kl, surrogate=surrogate, extras=extras)


def _m_elbo(mu, log_s, z, rec_d, laplace, prior_log_scale, beta, extras):
    """Shi et al.'s ``m_elbo`` (see :func:`mmvae`); rec_d is (M_dec, M_comp, K, B)."""
    num_mod = mu.shape[0]
    zd = z.detach().unsqueeze(0)  # (1, M_d, K, B, D): the codes of stratum d
    view = (num_mod, 1, 1) + mu.shape[1:]
    if laplace:
        comp = log_laplace(zd, mu.view(view), log_s.view(view))  # (M_r, M_d, K, B)
        zero = torch.zeros_like(mu)
        p_lb = prior_log_scale if prior_log_scale is not None else zero
        kl_r = kl_laplace(mu, log_s, zero, p_lb.expand_as(mu))  # (M, B)
    else:
        comp = log_normal(zd, mu.view(view), log_s.view(view))
        kl_r = kl_std_normal(mu, log_s)
    own = torch.diagonal(comp, dim1=0, dim2=1).movedim(-1, 0)  # log q_d(z_d), (M_d, K, B)
    log_omega = comp - own.detach().unsqueeze(0)
    eye = torch.eye(num_mod, dtype=torch.bool, device=mu.device).view(num_mod, num_mod, 1, 1)
    omega = torch.where(eye, torch.ones_like(log_omega), log_omega.exp())  # (M_r, M_d, K, B)
    rec_dd = torch.diagonal(rec_d, dim1=0, dim2=1).movedim(-1, 0)  # lambda_d log p(x_d|z_d)
    rec_rd = omega * rec_dd.unsqueeze(0)  # (M_r, M_d, K, B)
    value = (rec_rd.sum(1) - beta * kl_r.unsqueeze(1)).mean(0).mean(0)  # (B,)
    rec = rec_rd.mean(0).mean(1)  # (M_d, B)
    return Objective(value, rec, kl_r.mean(0), extras=extras)


# ---------------------------------------------------------------------------
# Modality-specific (style) latents, Eq. (34)


def mopoe_with_style(
    mu_c: torch.Tensor,
    logvar_c: torch.Tensor,
    mu_s: torch.Tensor,
    logvar_s: torch.Tensor,
    decode_loglik: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    *,
    beta: float = 1.0,
    beta_content: float = 1.0,
    beta_style: float = 1.0,
    style_weights=None,
    eps_style: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    **mopoe_kwargs,
) -> Objective:
    """Eq. (34): a shared content space c with the MoPoE posterior, plus a
    modality-specific style space s_m ~ q(s_m | x_m) for every modality:

        sum_m E_{q(c|X)} E_{q(s_m|x_m)} [lambda_m log p(x_m | s_m, c)]
          - beta (beta_style sum_m w_m KL(q(s_m|x_m) || p(s_m)) + beta_content KL(q(c|X) || p(c))).

    With every beta and w_m equal to 1 this is Eq. (34) exactly. The official CelebA
    run uses beta=2.5, beta_content=1, beta_style=2 and style weights (1, 5).
    ``decode_loglik(c, s, need)`` receives content codes (T, B, Dc) and one style
    code per modality, s of shape (M, B, Ds), and returns (M, T, B).
    """
    check_experts(mu_s, logvar_s)
    num_mod = mu_c.shape[0]
    if mu_s.shape[:2] != mu_c.shape[:2]:
        raise ValueError(
            f"style and content posteriors must share (M, B): {tuple(mu_s.shape[:2])} vs "
            f"{tuple(mu_c.shape[:2])}"
        )
    if eps_style is None:
        eps_style = _noise(mu_s.shape, mu_s, generator, 1)
    s = reparameterize(mu_s, logvar_s, eps_style)  # (M, B, Ds)
    obj = mopoe(
        mu_c,
        logvar_c,
        lambda c, need: decode_loglik(c, s, need),
        beta=1.0,
        generator=generator,
        **mopoe_kwargs,
    )
    kl_s = kl_std_normal(mu_s, logvar_s)  # (M, B)
    mask = mopoe_kwargs.get("mask")
    if mask is not None:
        kl_s = torch.where(mask.t(), kl_s, torch.zeros_like(kl_s))
    sw = _weights(style_weights, num_mod, mu_s)
    kl_style = (sw.view(-1, 1) * kl_s).sum(0)
    kl_total = beta_content * obj.kl + beta_style * kl_style
    value = obj.rec.sum(0) - beta * kl_total
    extras = dict(obj.extras, s=s, kl_content=obj.kl, kl_style=kl_style)
    return Objective(value, obj.rec, kl_total, extras=extras)
