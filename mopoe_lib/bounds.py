"""Exact gaps and importance-weighted bounds for the linear-Gaussian chapters.

Two helpers that the objectives do not need but the theory chapters do: the KL divergence
from a diagonal Gaussian q(z|X) to a full-covariance Gaussian (the true posterior of the
linear-Gaussian model), which is the gap of Eq. (1), and the importance-weighted bound of
Burda et al. for a single diagonal Gaussian proposal.
"""

from __future__ import annotations

import math

import torch

from .experts import log_normal, log_std_normal


def kl_to_gaussian(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, cov_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, diag exp(logvar_q)) || N(mu_p, cov_p)), the gap of Eq. (1) in closed form.

    With p = p(z|X) this is log p(X) - ELBO. ``mu_q, logvar_q, mu_p`` are (..., D) and
    ``cov_p`` is (D, D):

        1/2 [ tr(S_p^-1 S_q) + (mu_p - mu_q)^T S_p^-1 (mu_p - mu_q) - D + log|S_p| - log|S_q| ].
    """
    dim = mu_q.shape[-1]
    prec_p = torch.linalg.inv(cov_p)
    diff = mu_p - mu_q
    trace = (torch.diagonal(prec_p) * torch.exp(logvar_q)).sum(-1)
    maha = ((diff @ prec_p) * diff).sum(-1)
    logdet_p = torch.linalg.slogdet(cov_p)[1]
    return 0.5 * (trace + maha - dim + logdet_p - logvar_q.sum(-1))


def log_weights(model, xs, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor):
    """log w = log p(X|z) + log p(z) - log q(z|X) at z = mu + sigma * eps.

    ``mu, logvar`` are (N, D) and ``eps`` is (K, N, D); returns (K, N).
    """
    z = mu + torch.exp(0.5 * logvar) * eps
    return model.log_lik(xs, z).sum(0) + log_std_normal(z) - log_normal(z, mu, logvar)


def importance_weighted_bound(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The importance-weighted bound of Burda et al.: log (1/K) sum_k w_k along ``dim``.

    A single-draw estimate of L_K = E[log (1/K) sum_k w_k], with K = log_w.shape[dim];
    L_1 is the ELBO, L_K <= L_{K+1} <= log p(X).
    """
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])
