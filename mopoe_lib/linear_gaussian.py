"""A multimodal linear-Gaussian model whose evidence and posteriors are closed-form.

    z ~ N(0, I_D),    x_m = W_m z + b_m + e_m,    e_m ~ N(0, sigma_m^2 I),  m = 1..M.

For any subset X_k of the modalities, X_k is Gaussian with mean b_k and covariance
W_k W_k^T + Sigma_k, so log p(X_k) is exact, and p(z | X_k) is Gaussian with

    precision  Lambda_k = I + sum_{m in k} W_m^T W_m / sigma_m^2
    mean       Lambda_k^-1 sum_{m in k} W_m^T (x_m - b_m) / sigma_m^2.

With ``diagonal=True`` each W_m has orthogonal columns, so every W_m^T W_m is
diagonal and every true posterior is a diagonal Gaussian, the family of the
encoders. Then the "likelihood expert" of modality m, the Gaussian in z proportional
to p(x_m | z), makes the product of experts with the prior expert equal the true
posterior: the MVAE's choice is exact here. Everything runs in float64.
"""

from __future__ import annotations

import math

import torch

from .experts import LOG_2PI


class LinearGaussianModel:
    """The generative model and its exact quantities; data dicts map m -> (N, d_m)."""

    def __init__(
        self,
        latent_dim: int = 2,
        data_dims: tuple[int, ...] = (3, 3, 3),
        noise_std: tuple[float, ...] | float = 0.5,
        *,
        diagonal: bool = True,
        seed: int = 0,
    ):
        if diagonal and any(d < latent_dim for d in data_dims):
            raise ValueError("diagonal=True needs every data dimension >= latent_dim")
        g = torch.Generator().manual_seed(seed)
        self.latent_dim = latent_dim
        self.data_dims = tuple(data_dims)
        self.num_modalities = len(data_dims)
        if isinstance(noise_std, float | int):
            noise_std = (float(noise_std),) * self.num_modalities
        self.sigma = torch.tensor(noise_std, dtype=torch.float64)
        self.W, self.b = [], []
        for d in data_dims:
            if diagonal:
                q, _ = torch.linalg.qr(torch.randn(d, latent_dim, generator=g, dtype=torch.float64))
                scales = 0.5 + 1.5 * torch.rand(latent_dim, generator=g, dtype=torch.float64)
                w = q * scales  # orthogonal columns: W^T W = diag(scales^2)
            else:
                w = torch.randn(d, latent_dim, generator=g, dtype=torch.float64)
            self.W.append(w)
            self.b.append(0.5 * torch.randn(d, generator=g, dtype=torch.float64))
        self.diagonal = diagonal

    # -- sampling ---------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None):
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=torch.float64)
        xs = [
            z @ w.T + b + s * torch.randn(n, w.shape[0], generator=generator, dtype=torch.float64)
            for w, b, s in zip(self.W, self.b, self.sigma, strict=True)
        ]
        return z, xs

    # -- exact quantities -------------------------------------------------------
    def _members(self, subset) -> list[int]:
        if subset is None:
            return list(range(self.num_modalities))
        members = [m for m, on in enumerate(torch.as_tensor(subset).tolist()) if on]
        if not members:
            raise ValueError("the subset is empty")
        return members

    def log_evidence(self, xs, subset=None) -> torch.Tensor:
        """log p(X_k) for each of the N samples (all modalities when subset is None)."""
        ms = self._members(subset)
        w = torch.cat([self.W[m] for m in ms])
        b = torch.cat([self.b[m] for m in ms])
        noise = torch.cat(
            [self.sigma[m] ** 2 * torch.ones(self.data_dims[m], dtype=torch.float64) for m in ms]
        )
        cov = w @ w.T + torch.diag(noise)
        x = torch.cat([xs[m] for m in ms], dim=1)
        dist = torch.distributions.MultivariateNormal(b, covariance_matrix=cov)
        return dist.log_prob(x)

    def posterior(self, xs, subset=None):
        """The true p(z | X_k): (mean (N, D), covariance (D, D))."""
        ms = self._members(subset)
        prec = torch.eye(self.latent_dim, dtype=torch.float64)
        lin = 0.0
        for m in ms:
            w, s2 = self.W[m], self.sigma[m] ** 2
            prec = prec + w.T @ w / s2
            lin = lin + (xs[m] - self.b[m]) @ w / s2
        cov = torch.linalg.inv(prec)
        return lin @ cov, cov

    def likelihood_experts(self, xs):
        """Diagonal Gaussians in z proportional to p(x_m | z): (mu, logvar) of shape (M, N, D).

        Requires ``diagonal=True``. Their product with the prior expert is p(z | X).
        """
        if not self.diagonal:
            raise ValueError("likelihood experts are diagonal only for diagonal=True")
        mus, lvs = [], []
        for m in range(self.num_modalities):
            w, s2 = self.W[m], self.sigma[m] ** 2
            prec = torch.diagonal(w.T @ w) / s2  # (D,)
            mus.append(((xs[m] - self.b[m]) @ w / s2) / prec)
            lvs.append((-torch.log(prec)).expand(xs[m].shape[0], -1))
        return torch.stack(mus), torch.stack(lvs)

    def log_lik(self, xs, z: torch.Tensor) -> torch.Tensor:
        """log p(x_m | z) for codes z of shape (..., N, D); returns (M, ..., N)."""
        out = []
        for m in range(self.num_modalities):
            mean = z @ self.W[m].T + self.b[m]
            s = self.sigma[m]
            lp = -0.5 * (LOG_2PI + 2 * torch.log(s) + (xs[m] - mean).pow(2) / s**2)
            out.append(lp.sum(-1))
        return torch.stack(out)

    def decode_loglik(self, xs):
        """A callback for :mod:`mopoe_lib.objectives`: z (T, N, D) -> (M, T, N)."""
        return lambda z, need=None: self.log_lik(xs, z)

    def expected_log_lik(self, xs, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """E_{N(mu, diag exp(logvar))}[log p(x_m | z)] in closed form; (M, ..., N)."""
        var = torch.exp(logvar)
        out = []
        for m in range(self.num_modalities):
            w, s2 = self.W[m], self.sigma[m] ** 2
            resid = xs[m] - (mu @ w.T + self.b[m])
            trace = (var * (w * w).sum(0)).sum(-1)  # tr(W diag(var) W^T)
            d = w.shape[0]
            out.append(
                -0.5 * (d * (LOG_2PI + math.log(float(s2))) + (resid.pow(2).sum(-1) + trace) / s2)
            )
        return torch.stack(out)

    def elbo(self, xs, mu, logvar, members=None) -> torch.Tensor:
        """Exact ELBO (Eq. (2); Eq. (4) when q = q(z|X_k)) of a diagonal Gaussian q.

        ``members`` are the modalities whose likelihood enters (all by default).

        E_q[sum_{m in members} log p(x_m | z)] - KL(q || N(0, I)), no Monte Carlo.
        """
        from .experts import kl_std_normal

        ell = self.expected_log_lik(xs, mu, logvar)
        ms = self._members(members)
        return ell[ms].sum(0) - kl_std_normal(mu, logvar)
