"""Generic figure helpers shared by the experiment chapters: image grids and curves.

Images are tensors (or arrays) in model format: (N, C, H, W) floats in [0, 1] (values
outside are clipped; decoders of Laplace likelihoods are unbounded) or (N, H, W) grey.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_hwc(img) -> np.ndarray:
    """One image (C, H, W) or (H, W) -> (H, W, C) or (H, W) numpy in [0, 1] for imshow."""
    a = img.detach().float().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    return np.clip(a, 0.0, 1.0)


def tile(rows: Sequence, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Rows of images (each a sequence of (C, H, W) of one size) -> one (H', W', 3) array."""
    cells = [[to_hwc(img) for img in row] for row in rows]
    h, w = cells[0][0].shape[:2]
    ncol = max(len(r) for r in cells)
    out = np.full((len(cells) * (h + pad) - pad, ncol * (w + pad) - pad, 3), fill)
    for i, row in enumerate(cells):
        for j, a in enumerate(row):
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, axis=-1)
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = a
    return out


def image_grid(rows: Sequence, row_labels: Sequence[str] | None = None, *, ax=None,
               title: str | None = None, cell_inches: float = 0.5, pad: int = 1):  # fmt: skip
    """Draw rows of images as one grid, with optional labels on the left; returns the axes."""
    grid = tile(rows, pad=pad)
    if ax is None:
        ncol = max(len(r) for r in rows)
        _, ax = plt.subplots(figsize=(1.2 + cell_inches * ncol, 0.3 + cell_inches * len(rows)))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    h = (grid.shape[0] + pad) / len(rows)
    if row_labels is not None:
        ax.set_yticks([h * i + (h - pad) / 2 for i in range(len(rows))], list(row_labels))
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def curves(ax, series: Mapping[str, Mapping], *, xlabel: str, ylabel: str, title: str = "",
           markers: Mapping[str, str] | None = None, chance: float | None = None):  # fmt: skip
    """Plot named curves {name: {x: y}} with x the dict keys (numbers or numeric strings)."""
    for name, points in series.items():
        xs = [float(k) for k in points]
        ys = [float(v) for v in points.values()]
        marker = (markers or {}).get(name, "o")
        ax.plot(xs, ys, marker=marker, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    xs = sorted({float(k) for p in series.values() for k in p})
    if xs and all(x.is_integer() for x in xs):
        ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    return ax
