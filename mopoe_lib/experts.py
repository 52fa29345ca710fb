"""Diagonal Gaussian experts: densities, products, mixtures, KL to the prior.

Every unimodal posterior q(z | x_m) is N(mu_m, diag(exp(logvar_m))), the choice of
the paper (Appendix B). Tensors hold the latent dimension last. Log-variances are
the parameterization throughout because the product of experts is a sum of
precisions exp(-logvar).
"""

from __future__ import annotations

import contextlib
import math

import torch

LOG_2PI = math.log(2.0 * math.pi)

# (rank, world_size) while a data-parallel training step runs, else None; see batch_shard.
_SHARD: tuple[int, int] | None = None


@contextlib.contextmanager
def batch_shard(rank: int, world_size: int):
    """Within this context a batch of B samples is rank ``rank``'s contiguous share of a
    global batch of ``world_size * B``: every per-sample random draw of the objectives
    (:func:`batch_noise`, :func:`batch_uniform`) is made for the whole global batch from the
    (identically seeded) global RNG and this rank's rows are kept. Each rank therefore sees
    the noise that one process training on the global batch would draw for its samples, and
    the ranks' RNG streams stay equal. The trainer enters it under torchrun.
    """
    global _SHARD
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    previous, _SHARD = _SHARD, (rank, world_size) if world_size > 1 else None
    try:
        yield
    finally:
        _SHARD = previous


def current_shard() -> tuple[int, int] | None:
    """(rank, world_size) inside :func:`batch_shard` with more than one rank, else None."""
    return _SHARD


def _sharded(draw, shape, batch_dim: int) -> torch.Tensor:
    shape = tuple(shape)
    if _SHARD is None:
        return draw(shape)
    rank, world = _SHARD
    b = shape[batch_dim]
    full = shape[:batch_dim] + (b * world,) + shape[batch_dim + 1 :]
    return draw(full).narrow(batch_dim, rank * b, b)


def batch_noise(shape, batch_dim: int, *, like: torch.Tensor, generator=None) -> torch.Tensor:
    """N(0, I) noise of ``shape`` whose dimension ``batch_dim`` runs over the batch."""
    return _sharded(
        lambda s: torch.randn(s, dtype=like.dtype, device=like.device, generator=generator),
        shape,
        batch_dim,
    )


def batch_randint(high: int, batch: int, *, device, generator=None) -> torch.Tensor:
    """Integers uniform in [0, high), one per sample of the batch."""
    return _sharded(
        lambda s: torch.randint(high, s, device=device, generator=generator), (batch,), 0
    )


def batch_uniform(batch: int, *, device, generator=None) -> torch.Tensor:
    """U[0, 1) draws, one per sample of the batch (float32)."""
    return _sharded(lambda s: torch.rand(s, device=device, generator=generator), (batch,), 0)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last (latent) dimension.

    -1/2 sum_d [log 2 pi + logvar_d + (z_d - mu_d)^2 exp(-logvar_d)]; the arguments
    broadcast. Computed by :class:`_LogNormal`, whose backward pass is written out.
    """
    return _LogNormal.apply(z, mu, logvar)


class _LogNormal(torch.autograd.Function):
    """log_normal with its gradient written out. MoPoE's mixture density evaluates it for
    every subset at once, on (K, B, D) tensors whose CPU cost is memory traffic; autograd
    would record about twice as many passes over them. With s = (z - mu) exp(-logvar):
        d/dmu = s,  d/dz = -s,  d/dlogvar = (s (z - mu) - 1) / 2,
    each times the output's gradient, summed over broadcast dimensions.
    """

    @staticmethod
    def forward(ctx, z, mu, logvar):
        with torch.autocast(z.device.type, enabled=False):
            diff = z - mu
            scaled = diff * torch.exp(-logvar)
            quad = (scaled * diff).sum(-1)
            out = (quad + logvar.sum(-1)).add_(diff.shape[-1] * LOG_2PI).mul_(-0.5)
        ctx.save_for_backward(diff, scaled)
        ctx.shapes = (z.shape, mu.shape, logvar.shape)
        return out

    @staticmethod
    def backward(ctx, grad):
        diff, scaled = ctx.saved_tensors
        z_shape, mu_shape, lv_shape = ctx.shapes
        g = grad.unsqueeze(-1).to(scaled.dtype)
        d_z = d_mu = d_lv = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            gs = g * scaled
            if ctx.needs_input_grad[1]:
                d_mu = gs.sum_to_size(mu_shape)
            if ctx.needs_input_grad[0]:
                d_z = gs.sum_to_size(z_shape).neg()
        if ctx.needs_input_grad[2]:
            d_lv = (scaled * diff).sub_(1.0).mul_(0.5 * g).sum_to_size(lv_shape)
        return d_z, d_mu, d_lv


def log_std_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension: the prior p(z)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def kl_std_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form, summed over the last dim.

    KL = 1/2 * sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2).
    ``expm1`` keeps sigma^2 - 1 - log sigma^2 accurate when sigma^2 is near 1.
    """
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(-1)


def kl_normal(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) for diagonal Gaussians, summed over the last dim."""
    return 0.5 * (
        logvar_p
        - logvar_q
        + (torch.exp(logvar_q) + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p)
        - 1.0
    ).sum(-1)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I) (drawn when not given)."""
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def product_of_experts(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    prior_expert: bool = False,
    dim: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form product of Gaussian experts stacked along ``dim`` (Definition 1, part 1).

    The normalized product of N(mu_m, sigma_m^2) is Gaussian with precision
    Lambda = sum_m sigma_m^-2 and mean Lambda^-1 sum_m mu_m sigma_m^-2. With
    ``prior_expert`` the prior N(0, I) joins as one more expert (precision 1, mean 0),
    as in the MVAE. The computation is shifted by the largest precision so that
    log-variances far outside [-30, 30] neither overflow nor produce NaN.
    """
    neg = -logvar
    if prior_expert:
        zeros = torch.zeros_like(neg.select(dim, 0)).unsqueeze(dim)
        neg = torch.cat([neg, zeros], dim=dim)
        mu = torch.cat([mu, zeros], dim=dim)
    shift = neg.amax(dim=dim, keepdim=True).detach()
    w = torch.exp(neg - shift)  # precisions / exp(shift), in (0, 1]
    w_sum = w.sum(dim=dim)
    mu_out = (mu * w).sum(dim=dim) / w_sum
    logvar_out = -(shift.squeeze(dim) + torch.log(w_sum))
    return mu_out, logvar_out


def mixture_log_prob(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    log_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """log of a mixture of diagonal Gaussians at z (the joint posterior of Definition 1, part 2).

    ``mu`` and ``logvar`` are (K, ..., D) for K components; ``z`` is (..., D) and is
    evaluated under every component. ``log_weights`` (K, ...) default to uniform
    log(1/K). Returns (...).
    """
    k = mu.shape[0]
    comp = log_normal(z.unsqueeze(0), mu, logvar)  # (K, ...)
    if log_weights is None:
        return torch.logsumexp(comp, dim=0) - math.log(k)
    return torch.logsumexp(comp + log_weights, dim=0)


# ---------------------------------------------------------------------------
# Laplace experts (Shi et al.'s MMVAE): location mu and log-scale log b per dimension.
# Mixtures of them have no product in closed form, so they serve the mixture models only.

LOG_2 = math.log(2.0)


def log_laplace(z: torch.Tensor, mu: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """log Laplace(z; mu, b) = -sum_d [log 2 + log b_d + |z_d - mu_d| / b_d]; broadcasts."""
    return -(LOG_2 + log_b + (z - mu).abs() * torch.exp(-log_b)).sum(-1)


def laplace_noise(shape, batch_dim: int, *, like: torch.Tensor, generator=None) -> torch.Tensor:
    """Standard Laplace noise e = -sign(u) log(1 - |u|), u ~ U(-1, 1), as torch's rsample."""

    def draw(s):
        u = torch.rand(s, dtype=like.dtype, device=like.device, generator=generator)
        u = (2.0 * u - 1.0).clamp(min=torch.finfo(like.dtype).eps - 1.0)  # |u| < 1
        return -torch.sign(u) * torch.log1p(-u.abs())

    return _sharded(draw, shape, batch_dim)


def reparameterize_laplace(mu: torch.Tensor, log_b: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """z = mu + b * e for standard Laplace noise e (the reparameterized sample)."""
    return mu + torch.exp(log_b) * e


def kl_laplace(
    mu_q: torch.Tensor, log_b_q: torch.Tensor, mu_p: torch.Tensor, log_b_p: torch.Tensor
) -> torch.Tensor:
    """KL(Laplace(mu_q, b_q) || Laplace(mu_p, b_p)) in closed form, summed over the last dim:
    log(b_p / b_q) + |mu_q - mu_p| / b_p + (b_q / b_p) exp(-|mu_q - mu_p| / b_q) - 1."""
    d = (mu_q - mu_p).abs()
    return (
        log_b_p
        - log_b_q
        + d * torch.exp(-log_b_p)
        + torch.exp(log_b_q - log_b_p - d * torch.exp(-log_b_q))
        - 1.0
    ).sum(-1)


def kl_monte_carlo(log_q: torch.Tensor, log_p: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The Monte Carlo KL estimate mean(log q(z) - log p(z)) over samples z ~ q along ``dim``
    (for mixtures, which have no closed-form KL)."""
    return (log_q - log_p).mean(dim)


def laplace_mixture_log_prob(z, mu, log_b, log_weights=None) -> torch.Tensor:
    """log of a mixture of Laplace experts at z; shapes as :func:`mixture_log_prob`."""
    k = mu.shape[0]
    comp = log_laplace(z.unsqueeze(0), mu, log_b)
    if log_weights is None:
        return torch.logsumexp(comp, dim=0) - math.log(k)
    return torch.logsumexp(comp + log_weights, dim=0)
