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


def learning_curves(curves_by_model: Mapping[str, Sequence[Mapping]], *, chance: float | None = None,
                    title: str = "", probe_label: str = "latent probe accuracy"):  # fmt: skip
    """The learning curve of each model (``metrics["train"]["curve"]``, see
    :mod:`mopoe_lib.evaluation.curve`): left the linear probe of the unimodal posteriors
    (solid; mean over modalities) and of the joint posterior (dashed), right the objective on
    test tuples, both against minutes of training. Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (name, points) in enumerate(curves_by_model.items()):
        colour = f"C{i}"
        minutes = [p["train_s"] / 60 for p in points]
        axes[0].plot(minutes, [p["probe_unimodal"] for p in points], "o-", ms=3, color=colour,
                     label=f"{name}: q(z | x_m)")  # fmt: skip
        axes[0].plot(minutes, [p["probe_joint"] for p in points], "s--", ms=3, color=colour,
                     alpha=0.7, label=f"{name}: q(z | X)")  # fmt: skip
        axes[1].plot(minutes, [p["objective"] for p in points], "o-", ms=3, color=colour,
                     label=name)  # fmt: skip
    if chance is not None:
        axes[0].axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_ylabel(probe_label)
    axes[1].set_ylabel("objective on test tuples (nats)")
    # the untrained model's objective is far below the rest: start the axis at the second point
    later = [p["objective"] for pts in curves_by_model.values() for p in pts[1:]]
    if later:
        low, high = min(later), max(later)
        axes[1].set_ylim(low - 0.05 * (high - low + 1), high + 0.05 * (high - low + 1))
    for ax in axes:
        ax.set_xlabel("minutes of training")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def learning_curve_rows(curves_by_model: Mapping[str, Sequence[Mapping]], *,
                        per_modality: bool = False) -> tuple[list[str], list[list]]:  # fmt: skip
    """(headers, rows) of a table of each learning curve's first and last point: the
    unimodal probe (mean over modalities; with ``per_modality`` also each modality's at the
    end), the joint probe, the updates and the minutes of training."""
    headers = ["model", "unimodal probe: start", "end"]
    modalities = []
    if per_modality:
        for points in curves_by_model.values():
            for m in points[-1]["probe_per_modality"] if points else ():
                if m not in modalities:
                    modalities.append(m)
        headers += [f"end: {m}" for m in modalities]
    headers += ["joint probe: start", "end", "updates", "minutes"]
    rows = []
    for name, points in curves_by_model.items():
        if not points:
            continue
        first, last = points[0], points[-1]
        row = [name, f"{first['probe_unimodal']:.3f}", f"{last['probe_unimodal']:.3f}"]
        row += [f"{last['probe_per_modality'][m]:.3f}" for m in modalities]
        row += [f"{first['probe_joint']:.3f}", f"{last['probe_joint']:.3f}",
                last["global_step"], f"{last['train_s'] / 60:.1f}"]  # fmt: skip
        rows.append(row)
    return headers, rows
