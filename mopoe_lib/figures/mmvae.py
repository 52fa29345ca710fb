"""MMVAE on bimodal MNIST-SVHN (chapter 11): Shi et al.'s log-likelihood table and traversals.

``loglik_table`` estimates the marginal likelihood of one modality, log p(x_m), by importance
sampling with three proposals (the slides' "log p(x_m | x_m, x_n)", "log p(x_m | x_m)" and
"log p(x_m | x_n)"): the joint mixture posterior q(z | x_m, x_n), the modality's own posterior
q(z | x_m), and the other modality's posterior q(z | x_n). All three estimate the same
quantity; a better proposal gives a higher (tighter) value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from .. import subsets as S
from ..experiment import Claim

NAMES = {"mnist": "MNIST", "svhn": "SVHN"}
COLUMNS = ("log p(x_m|x_m,x_n)", "log p(x_m|x_m)", "log p(x_m|x_n)")


def row_name(m: str, n: str) -> str:
    return f"m={NAMES[m]}, n={NAMES[n]}"


@torch.no_grad()
def marginal_loglik(model, x, target: str, subset, num_samples: int) -> torch.Tensor:
    """log p(x_target) per sample (B,), proposal q(z | X_subset) with num_samples draws."""
    post = model.posterior(x, subset)
    z = post.sample(num_samples)  # (K, 1, B, D)
    k, _, b, d = z.shape
    log_w = model.prior_log_prob(z) - post.log_prob(z)  # (K, 1, B)
    ll = model.decode_loglik(x, z.reshape(k, b, d))  # (M, K, B)
    log_w = log_w[:, 0] + ll[model.modalities.index(target)]
    return torch.logsumexp(log_w, dim=0) - math.log(k)


@torch.no_grad()
def loglik_table(model, test, *, n: int = 200, num_samples: int = 100, batch_size: int = 50,
                 seed: int = 0) -> dict[tuple[str, str], float]:  # fmt: skip
    """The slides' table: {(row, column): mean over n test pairs of log p(x_m) estimates}."""
    mods = model.modalities
    torch.manual_seed(seed)
    sums: dict[tuple[str, str], float] = {}
    n = min(n, len(test))
    for i in range(0, n, batch_size):
        idx = torch.arange(i, min(i + batch_size, n)).to(test.labels.device)
        x = model.complete({m: v.to(model.device) for m, v in test.batch(idx, mods).items()})
        for m in mods:
            other = next(o for o in mods if o != m)
            for col, names in zip(COLUMNS, ([m, other], [m], [other]), strict=True):
                sub = S.from_names([names], mods)
                v = marginal_loglik(model, x, m, sub, num_samples).sum().item()
                key = (row_name(m, other), col)
                sums[key] = sums.get(key, 0.0) + v
    return {k: v / n for k, v in sums.items()}


def claims(table: Mapping[tuple[str, str], float]) -> list[Claim]:
    """The slides' claim (joint >= single marginal likelihood), and both above cross-modal."""
    out = []
    rows = sorted({r for r, _ in table})
    joint_ge = {r: table[(r, COLUMNS[0])] - table[(r, COLUMNS[1])] for r in rows}
    out.append(Claim(
        "log p(x_m | x_m, x_n) >= log p(x_m | x_m): the joint posterior is at least as good a "
        "proposal as the modality's own (for m = MNIST and m = SVHN)",
        all(v >= 0 for v in joint_ge.values()),
        "; ".join(f"{r}: {v:+.2f} nats" for r, v in joint_ge.items()),
        "slides (Shi et al. 2019)",
    ))  # fmt: skip
    above = {r: min(table[(r, COLUMNS[0])], table[(r, COLUMNS[1])]) - table[(r, COLUMNS[2])]
             for r in rows}  # fmt: skip
    out.append(Claim(
        "both are above the cross-modal log p(x_m | x_n) (for m = MNIST and m = SVHN)",
        all(v > 0 for v in above.values()),
        "; ".join(f"{r}: margin {v:+.1f} nats" for r, v in above.items()),
        "slides (Shi et al. 2019)",
    ))  # fmt: skip
    return out


# ---------------------------------------------------------------------------
# latent traversals


def _mosaic(images: torch.Tensor) -> np.ndarray:
    """(R, C, ch, H, W) in [0, 1] -> one (R*H, C*W[, 3]) image with 1-pixel gaps."""
    r, c, ch, h, w = images.shape
    pad = torch.ones(r, c, ch, h + 1, w + 1)
    pad[..., :h, :w] = images.clamp(0, 1).cpu()
    grid = pad.permute(0, 3, 1, 4, 2).reshape(r * (h + 1), c * (w + 1), ch).numpy()
    return grid[..., 0] if ch == 1 else grid


@torch.no_grad()
def traversals(model, pair: Mapping[str, torch.Tensor], values=None, threshold: float = 0.5):
    """Decode z with one dimension moved at a time, from the joint posterior mean of a pair.

    Returns (images {modality: (D, V, ...)}, effect {modality: (D,)}, kinds [str] * D):
    ``effect`` is the mean absolute change of the decoded mean across the traversal,
    relative to the dimension with the largest effect on that modality; a dimension
    "affects" a modality when its relative effect exceeds ``threshold``.
    """
    values = torch.linspace(-3, 3, 7) if values is None else torch.as_tensor(values)
    mods = model.modalities
    x = model.complete({m: v.to(model.device) for m, v in pair.items() if m in mods})
    z0 = model.posterior(x, S.full(len(mods))).mean()[0, 0]  # (D,)
    d = z0.shape[0]
    z = z0.repeat(d, len(values), 1)  # (D, V, D)
    for i in range(d):
        z[i, :, i] = z0[i] + values.to(z.device)
    out = model.decode(z)
    effect, kinds = {}, []
    for m in mods:
        img = out[m]  # (D, V, ...)
        change = (img - img.mean(1, keepdim=True)).abs().flatten(2).mean(-1).mean(1)  # (D,)
        effect[m] = (change / change.max().clamp_min(1e-12)).cpu()
    for i in range(d):
        hit = [NAMES.get(m, m) for m in mods if effect[m][i] > threshold]
        kinds.append(" & ".join(hit) if hit else "neither")
    return out, effect, kinds


def plot_traversals(model, pair, values=None, threshold: float = 0.5, title: str = ""):
    """Per-dimension traversals of MNIST and SVHN side by side, dimensions labelled by effect."""
    import matplotlib.pyplot as plt

    values = torch.linspace(-3, 3, 7) if values is None else torch.as_tensor(values)
    out, effect, kinds = traversals(model, pair, values, threshold)
    mods = model.modalities
    d = len(kinds)
    fig, axes = plt.subplots(1, len(mods), figsize=(3.2 * len(mods) + 2, 0.42 * d + 1.2))
    for j, (ax, m) in enumerate(zip(np.atleast_1d(axes), mods, strict=True)):
        mosaic = _mosaic(out[m].float())
        ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None)
        h = out[m].shape[-1] + 1
        ax.set_xticks([(i + 0.5) * h for i in range(len(values))])
        ax.set_xticklabels([f"{v:+.0f}" for v in values.tolist()], fontsize=7)
        ax.set_xlabel("offset of z_d from its posterior mean")
        ax.set_yticks([(i + 0.5) * h for i in range(d)])
        if j == 0:
            ax.set_yticklabels([f"z{i}: {k}" for i, k in enumerate(kinds)], fontsize=7)
            ax.set_ylabel("latent dimension: modalities it changes")
        else:
            ax.set_yticklabels([" / ".join(f"{float(effect[k][i]):.2f}" for k in mods)
                                for i in range(d)], fontsize=7)  # fmt: skip
            ax.yaxis.tick_right()
            ax.yaxis.set_label_position("right")
            ax.set_ylabel("relative effect " + " / ".join(NAMES.get(k, k) for k in mods))
        ax.set_title(NAMES.get(m, m))
    fig.suptitle(title or "Per-dimension latent traversals for a pair of data points")
    fig.tight_layout()
    return fig, effect, kinds
