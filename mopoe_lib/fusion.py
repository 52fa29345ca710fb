"""All-subset product-of-experts fusion in one batched operation.

For each subset X_k (a row of a boolean (K, M) tensor) the subset posterior is the
product of the unimodal Gaussian experts it contains (Definition 1):

    Lambda_k = sum_{m in k} exp(-logvar_m) [+ 1 for a N(0, I) prior expert]
    mu_k     = Lambda_k^-1 sum_{m in k} mu_m exp(-logvar_m)

Both sums over m are a (K, M) x (M, B*D) matrix product, so all 2^M - 1 subsets are
fused at once, with no Python loop over subsets. Precisions are computed relative to
a reference at each (sample, dimension), so that log-variances far outside
[-30, 30] give finite values and gradients, and any log-variances finite values.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .subsets import check_subsets

PriorExpert = Literal["none", "all", "full"] | bool


def prior_flags(subsets: torch.Tensor, prior_expert: PriorExpert) -> torch.Tensor:
    """Which subsets carry the N(0, I) prior expert, a (K,) bool tensor.

    ``"none"`` (or False): no subset, as in Definition 1 of the paper.
    ``"all"`` (or True): every subset, as in the MVAE (Wu & Goodman, 2018).
    ``"full"``: only the full set, the choice of the official MoPoE code.
    """
    if prior_expert is True or prior_expert == "all":
        return torch.ones(subsets.shape[0], dtype=torch.bool, device=subsets.device)
    if prior_expert is False or prior_expert == "none":
        return torch.zeros(subsets.shape[0], dtype=torch.bool, device=subsets.device)
    if prior_expert == "full":
        return subsets.all(dim=1)
    raise ValueError(f"prior_expert must be 'none', 'all' or 'full', got {prior_expert!r}")


def check_experts(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    """Shape, dtype and device checks for expert parameters of shape (M, B, D)."""
    for name, t in (("mu", mu), ("logvar", logvar)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (M, B, D)")
        if t.dim() != 3:
            raise ValueError(
                f"{name} must have shape (M, B, D) = (modalities, batch, latent), "
                f"got {tuple(t.shape)}; stack the unimodal encoder outputs with torch.stack"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ in shape")
    if mu.device != logvar.device:
        raise ValueError(f"mu is on {mu.device} but logvar on {logvar.device}")


def _check_mask(mask: torch.Tensor, num_modalities: int, batch: int, device) -> torch.Tensor:
    if mask.shape != (batch, num_modalities):
        raise ValueError(
            f"mask must have shape (B, M) = ({batch}, {num_modalities}), got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a boolean tensor (True = modality present), got {mask.dtype}"
        )
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but the experts are on {device}")
    return mask


def subset_validity(
    subsets: torch.Tensor,
    mask: torch.Tensor | None = None,
    prior_expert: PriorExpert = "none",
) -> torch.Tensor:
    """(K, B) bool: whether subset k has at least one expert for sample b.

    Without a mask every non-empty subset is valid for every sample. A subset whose
    modalities are all missing for a sample is valid only if it carries the prior
    expert (its posterior is then the prior).
    """
    flags = prior_flags(subsets, prior_expert)
    if mask is None:
        return (subsets.any(dim=1) | flags).unsqueeze(1)
    present = (subsets.unsqueeze(1) & mask.unsqueeze(0)).any(dim=2)  # (K, B)
    return present | flags.unsqueeze(1)


def subset_posteriors(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    subsets: torch.Tensor,
    prior_expert: PriorExpert = "none",
    mask: torch.Tensor | None = None,
    variance_eps: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse the experts of every subset by a product of experts, all subsets at once.

    This is q(z | X_k) of Definition 1, part 1, for every subset X_k in ``subsets``.

    Args:
        mu, logvar: unimodal posterior parameters, shape (M, B, D).
        subsets: boolean (K, M); row k selects the experts of subset X_k.
        prior_expert: ``"none"``, ``"all"`` or ``"full"`` (see :func:`prior_flags`).
        mask: optional boolean (B, M) availability; sample b is fused over the
            modalities it has. Missing experts receive exactly zero gradient, and
            their values (even NaN) never reach the result.
        variance_eps: added to every expert's variance, the prior expert's included
            (the official MoPoE ``poe`` uses exp(logvar) + 1e-8; 0: none, the paper's).

    Returns:
        ``(mu_k, logvar_k)`` of shape (K, B, D). Where subset k has no expert for
        sample b (see :func:`subset_validity`) the result is N(0, I) as a harmless
        filler; objectives exclude such components.
    """
    check_experts(mu, logvar)
    num_mod, batch, dim = mu.shape
    # Subset bookkeeping happens on a CPU copy so that no step waits on the device.
    subsets_cpu = check_subsets(subsets, num_mod).cpu()
    flags_cpu = prior_flags(subsets_cpu, prior_expert)
    any_prior = bool(flags_cpu.any())
    every_subset_valid = bool((subsets_cpu.any(dim=1) | flags_cpu).all())
    sel = subsets_cpu.to(device=mu.device, dtype=mu.dtype)
    prior_neg = 0.0  # the prior expert's log-precision
    if variance_eps:
        logvar = torch.logaddexp(logvar, torch.tensor(math.log(variance_eps), dtype=logvar.dtype,
                                                      device=logvar.device))  # fmt: skip
        prior_neg = -math.log1p(variance_eps)
    if mask is not None:
        mask = _check_mask(mask, num_mod, batch, mu.device)
        present = mask.t().unsqueeze(-1)  # (M, B, 1)
        # where(), not multiplication: a missing expert's NaN must not leak into values
        # or gradients, and its gradient must be exactly zero.
        mu = torch.where(present, mu, torch.zeros_like(mu))
        neg = torch.where(present, -logvar, torch.zeros_like(logvar))
        hi = torch.where(present, neg, torch.full_like(neg, -torch.inf)).amax(dim=0)
        lo = torch.where(present, neg, torch.full_like(neg, torch.inf)).amin(dim=0)
        # positions where a sample has no expert at all
        hi, lo = torch.nan_to_num(hi, neginf=0.0), torch.nan_to_num(lo, posinf=0.0)
    else:
        neg = -logvar
        hi, lo = neg.amax(dim=0), neg.amin(dim=0)
    if any_prior:  # the prior's log-precision is prior_neg (0 without variance_eps)
        hi, lo = torch.clamp_min(hi, prior_neg), torch.clamp_max(lo, prior_neg)
    # Precisions are taken relative to the midpoint of the experts' log-precisions at each
    # (sample, dimension): relative precisions then lie in [e^-s/2, e^s/2] for a spread s,
    # so values and gradients stay finite in float32 for spreads up to ~160 nats (the
    # largest precision as reference would underflow a lone vague expert at s > ~87 and
    # overflow its gradient already at s = 60). Beyond that the reference moves up so the
    # largest relative precision stays e^80: nothing overflows, and the vaguest experts
    # fade to zero precision, as in the official code. The result does not depend on the
    # shift wherever nothing underflows.
    shift = torch.maximum(0.5 * (hi + lo), hi - 80.0).detach()  # (B, D)
    w = torch.exp(neg - shift)
    if mask is not None:
        w = torch.where(present, w, torch.zeros_like(w))
    # The prior expert (mean 0, log-precision 0) joins the matrix product as one more row.
    if any_prior:
        sel = torch.cat([sel, flags_cpu.to(device=mu.device, dtype=mu.dtype).unsqueeze(1)], dim=1)
        w = torch.cat([w, torch.exp(prior_neg - shift).unsqueeze(0)])
        mu = torch.cat([mu, torch.zeros_like(mu[:1])])
    need_clamp = mask is not None or not every_subset_valid
    mu_k, logvar_k = _ProductOfExperts.apply(sel, w, mu, shift)
    if need_clamp:
        valid = subset_validity(subsets_cpu.to(mu.device), mask, prior_expert).unsqueeze(-1)
        mu_k = torch.where(valid, mu_k, torch.zeros_like(mu_k))
        logvar_k = torch.where(valid, logvar_k, torch.zeros_like(logvar_k))
    return mu_k, logvar_k


class _ProductOfExperts(torch.autograd.Function):
    """The fused core: relative precisions w (R, B, D), means mu (R, B, D), selection sel
    (K, R), reference log-precision shift (B, D) -> mu_k, logvar_k (K, B, D).

    W = sel @ w and S = sel @ (mu w) are two matrix products; mu_k = S / W and logvar_k =
    -(shift + log W). The backward pass is written out so that it touches each (K, B, D)
    tensor as few times as possible (about half of what autograd records for the same
    expressions; bench.py measures it), since at this size the CPU time is memory
    traffic: with g_mu, g_lv the output gradients and 1/W saved from the forward pass,
        dS = g_mu / W,  dW = -(g_mu mu_k + g_lv) / W,
        d(mu w) = sel^T dS,  dw = sel^T dW + d(mu w) mu,  dmu = d(mu w) w.
    Where W underflows (a subset without experts for a sample, or a lone expert so
    vague that its relative precision is 0) W is clamped to the smallest normal number
    and the gradient through it is zero.
    """

    @staticmethod
    def forward(ctx, sel, w, mu, shift):
        # Full precision under autocast too: these are the experts' parameters.
        with torch.autocast(w.device.type, enabled=False):
            return _ProductOfExperts._forward(ctx, sel, w, mu, shift)

    @staticmethod
    def _forward(ctx, sel, w, mu, shift):
        k, (r, b, d) = sel.shape[0], w.shape
        mw = mu * w
        big_w = (sel @ w.reshape(r, -1)).reshape(k, b, d)
        mu_k = (sel @ mw.reshape(r, -1)).reshape(k, b, d)
        tiny = torch.finfo(big_w.dtype).tiny
        dead = big_w < tiny
        big_w.clamp_min_(tiny)
        mu_k.div_(big_w)
        logvar_k = torch.log(big_w).add_(shift).neg_()
        inv = big_w.reciprocal_().masked_fill_(dead, 0.0)  # reuses W's memory
        ctx.save_for_backward(sel, w, mu, mu_k, inv)
        return mu_k, logvar_k

    @staticmethod
    def backward(ctx, g_mu, g_lv):
        with torch.autocast(ctx.saved_tensors[1].device.type, enabled=False):
            return _ProductOfExperts._backward(ctx, g_mu, g_lv)

    @staticmethod
    def _backward(ctx, g_mu, g_lv):
        sel, w, mu, mu_k, inv = ctx.saved_tensors
        k, r = sel.shape
        g_mu = torch.zeros_like(mu_k) if g_mu is None else g_mu.to(mu_k.dtype)
        g_lv = torch.zeros_like(mu_k) if g_lv is None else g_lv.to(mu_k.dtype)
        minus_d_big_w = torch.addcmul(g_lv, g_mu, mu_k).mul_(inv).reshape(k, -1)
        d_s = (g_mu * inv).reshape(k, -1)
        d_mw = (sel.t() @ d_s).reshape(w.shape)
        d_w = (sel.t() @ minus_d_big_w).neg_().reshape(w.shape).addcmul_(d_mw, mu)
        return None, d_w, d_mw.mul_(w), None


def subset_posteriors_loop(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    subsets: torch.Tensor,
    prior_expert: PriorExpert = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference implementation: one product of experts per subset, in a Python loop.

    This is how the official code and the peer libraries fuse subsets (a loop with a
    ``torch.cat`` per subset). It is kept to test and benchmark the batched version.
    """
    from .experts import product_of_experts

    subsets = check_subsets(subsets, mu.shape[0])
    flags = prior_flags(subsets, prior_expert).tolist()
    out_mu, out_lv = [], []
    for row, with_prior in zip(subsets.tolist(), flags, strict=True):
        idx = [m for m, on in enumerate(row) if on]
        m_k, lv_k = product_of_experts(mu[idx], logvar[idx], prior_expert=with_prior, dim=0)
        out_mu.append(m_k)
        out_lv.append(lv_k)
    return torch.stack(out_mu), torch.stack(out_lv)
