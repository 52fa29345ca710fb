"""Abstract means of densities (Section 3.3) and the pure callback of the chapter-4 explorer.

The abstract mean of P positive numbers (or densities evaluated pointwise) with an
injective function f is

    M_f(p) = f^{-1}( (1/P) sum_k f(p_k) ),

f(p) = a p + b gives the arithmetic mean (the mixture of experts) and f(p) = log p the
geometric mean, which, once normalized, is a product of the experts raised to 1/P.
Everything here is float64 NumPy, so that the explorer's callback can be tested
without a browser and without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import subsets as S

SUBSET_CHOICES = ("all subsets", "unimodal", "full set", "unimodal + full set")


def f_mean(
    values: np.ndarray, f: Callable[[np.ndarray], np.ndarray], f_inv: Callable, axis: int = 0
) -> np.ndarray:
    """The abstract mean M_f(p) = f^{-1}((1/P) sum_k f(p_k)) along ``axis``.

    ``values`` holds the P numbers p_k along ``axis`` (e.g. P densities on a grid).
    """
    values = np.asarray(values, dtype=np.float64)
    return f_inv(np.mean(f(values), axis=axis))


def normal_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """The density of N(mu, sigma^2) at x."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi))


def gaussian_product(mus: Sequence[float], sigmas: Sequence[float]) -> tuple[float, float]:
    """Normalized product of 1-D Gaussian experts: precisions add, means are precision-weighted.

    sigma*^-2 = sum_k sigma_k^-2,  mu* = sigma*^2 sum_k mu_k sigma_k^-2.
    Returns (mu*, sigma*).
    """
    mus, prec = np.asarray(mus, dtype=np.float64), np.asarray(sigmas, dtype=np.float64) ** -2.0
    if mus.size == 0:
        raise ValueError("a product of experts needs at least one expert")
    total = prec.sum()
    return float((mus * prec).sum() / total), float(total**-0.5)


def geometric_mean_gaussian(mus: Sequence[float], sigmas: Sequence[float]) -> tuple[float, float]:
    """The normalized geometric mean (the abstract mean with f = log) of 1-D Gaussians.

    (prod_k N(mu_k, sigma_k^2))^(1/P), normalized, is Gaussian with precision
    (1/P) sum_k sigma_k^-2 and the same mean as the product of experts: it is the
    product of experts with every variance multiplied by P. Returns (mu, sigma).
    """
    mu, sigma = gaussian_product(mus, sigmas)
    return mu, sigma * np.sqrt(len(mus))


def mixture_pdf(x: np.ndarray, mus: Sequence[float], sigmas: Sequence[float]) -> np.ndarray:
    """The uniform mixture (1/P) sum_k N(x; mu_k, sigma_k^2), the arithmetic mean of the experts."""
    return np.mean([normal_pdf(x, m, s) for m, s in zip(mus, sigmas, strict=True)], axis=0)


def mixture_moments(mus: Sequence[float], sigmas: Sequence[float]) -> tuple[float, float]:
    """Mean and variance of the uniform mixture of 1-D Gaussians.

    Var = (1/P) sum_k sigma_k^2 + (1/P) sum_k (mu_k - mean)^2 >= min_k sigma_k^2.
    """
    mus, sig = np.asarray(mus, dtype=np.float64), np.asarray(sigmas, dtype=np.float64)
    mean = mus.mean()
    return float(mean), float((sig**2).mean() + ((mus - mean) ** 2).mean())


def subset_rows(choice: str, num_experts: int) -> np.ndarray:
    """The subsets of the explorer's dropdown as a boolean (K, P) array."""
    if choice == "all subsets":
        rows = S.powerset(num_experts)
    elif choice == "unimodal":
        rows = S.unimodal(num_experts)
    elif choice == "full set":
        rows = S.full(num_experts)
    elif choice == "unimodal + full set":
        rows = S.unimodal(num_experts)
        if num_experts > 1:
            rows = np.concatenate([rows.numpy(), S.full(num_experts).numpy()])
    else:
        raise ValueError(f"subset choice must be one of {SUBSET_CHOICES}, got {choice!r}")
    return np.asarray(rows, dtype=bool)


def explore(
    mu1: float = -1.5,
    sigma1: float = 1.0,
    mu2: float = 1.0,
    sigma2: float = 0.7,
    mu3: float = 2.5,
    sigma3: float = 1.5,
    num_experts: int = 2,
    subsets: str = "all subsets",
    grid: np.ndarray | None = None,
) -> dict:
    """The explorer's pure callback: densities and moments of the experts and their means.

    Returns a dict with the grid ``x``, the expert densities ``experts`` (P, n), the
    product of experts ``poe`` (normalized; Gaussian), the mixture of experts ``moe``,
    the MoPoE mixture of the subset products ``mopoe``, the ``subsets`` used (K, P),
    the subset products ``subset_params`` [(mu_k, sigma_k)], and ``stats``: the mean
    and variance of each of poe, moe and mopoe, and the experts' smallest variance.
    """
    if num_experts not in (1, 2, 3):
        raise ValueError(f"num_experts must be 1, 2 or 3, got {num_experts}")
    mus = [mu1, mu2, mu3][:num_experts]
    sigmas = [sigma1, sigma2, sigma3][:num_experts]
    if min(sigmas) <= 0:
        raise ValueError("standard deviations must be positive")
    x = np.linspace(-6.0, 6.0, 1201) if grid is None else np.asarray(grid, dtype=np.float64)
    experts = np.stack([normal_pdf(x, m, s) for m, s in zip(mus, sigmas, strict=True)])
    poe_mu, poe_sigma = gaussian_product(mus, sigmas)
    rows = subset_rows(subsets, num_experts)
    params = [
        gaussian_product(
            [mus[i] for i in np.flatnonzero(r)], [sigmas[i] for i in np.flatnonzero(r)]
        )
        for r in rows
    ]
    comp_mus, comp_sigmas = [p[0] for p in params], [p[1] for p in params]
    moe_mean, moe_var = mixture_moments(mus, sigmas)
    mopoe_mean, mopoe_var = mixture_moments(comp_mus, comp_sigmas)
    return {
        "x": x,
        "experts": experts,
        "poe": normal_pdf(x, poe_mu, poe_sigma),
        "moe": mixture_pdf(x, mus, sigmas),
        "mopoe": mixture_pdf(x, comp_mus, comp_sigmas),
        "subsets": rows,
        "subset_params": params,
        "stats": {
            "poe_mean": poe_mu,
            "poe_var": poe_sigma**2,
            "moe_mean": moe_mean,
            "moe_var": moe_var,
            "mopoe_mean": mopoe_mean,
            "mopoe_var": mopoe_var,
            "min_expert_var": float(min(sigmas)) ** 2,
        },
    }


def draw(result: dict, ax=None):
    """Plot what :func:`explore` returned: each expert, the PoE, the MoE and the MoPoE."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.8))
    x = result["x"]
    for k, density in enumerate(result["experts"]):
        ax.plot(x, density, lw=1.2, ls="--", label=f"expert {k + 1}")
    ax.plot(x, result["poe"], lw=2.2, color="black", label="product (PoE)")
    ax.plot(x, result["moe"], lw=2.2, color="tab:red", label="mixture (MoE)")
    ax.plot(x, result["mopoe"], lw=2.2, color="tab:purple", ls=":", label="MoPoE")
    ax.set_xlabel("z")
    ax.set_ylabel("density")
    ax.legend(loc="upper left", fontsize="small")
    return ax
