"""Figures of the PolyMNIST chapter: the data (Figure 2), Figure 3 and Figures 8-11.

Every function takes trained models (:class:`~mopoe_lib.model.MultimodalVAE`) and test
tuples in model format (``{"m0": (N, 3, 28, 28), ...}``) and draws with matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch

from .. import subsets as S
from .common import curves, image_grid

MODEL_NAMES = {"mvae": "MVAE", "mmvae": "MMVAE", "mopoe": "MoPoE"}
MARKERS = {"MVAE": "s", "MMVAE": "o", "MoPoE": "^"}


def tuples_grid(x: Mapping[str, torch.Tensor], n: int = 10, *, ax=None, title=None):
    """Figure 2: each column one tuple, each row one modality."""
    mods = list(x)
    return image_grid([x[m][:n] for m in mods], mods, ax=ax, title=title)


def figure3_curves(evals: Mapping[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{metric: {model: {n_inputs: value}}} from each run's ``metrics["eval"]``.

    Metrics: ``latent`` (linear accuracy of the posterior mean), ``coherence``
    (conditional, input modalities excluded) and ``loglik`` (log p(X) with q(z | X_S)
    as proposal), each averaged over the subsets of each size.
    """
    out: dict = {"latent": {}, "coherence": {}, "loglik": {}}
    for name, ev in evals.items():
        out["latent"][name] = dict(ev["latent_classification"]["by_num_inputs"])
        out["coherence"][name] = dict(ev["coherence"]["by_num_inputs"])
        out["loglik"][name] = dict(ev["log_likelihood"]["by_num_inputs"])
    return out


def figure3(evals: Mapping[str, dict], title: str = ""):
    """Figure 3: latent classification, coherence and log-likelihood against the number of
    input modalities, one curve per model; returns the figure."""
    c = figure3_curves(evals)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    xl = "number of input modalities"
    curves(axes[0], c["latent"], xlabel=xl, ylabel="accuracy", markers=MARKERS, chance=0.1,
           title="latent classification")  # fmt: skip
    curves(axes[1], c["coherence"], xlabel=xl, ylabel="accuracy", markers=MARKERS, chance=0.1,
           title="conditional coherence (inputs excluded)")  # fmt: skip
    curves(axes[2], c["loglik"], xlabel=xl, ylabel="log-likelihood (nats)", markers=MARKERS,
           title="log-likelihood of all modalities")  # fmt: skip
    for ax in axes[:2]:
        ax.set_ylim(0, 1.02)  # the full accuracy range, so that chance looks like chance
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _rows(t: torch.Tensor) -> list:
    return list(t.detach().cpu())


@torch.no_grad()
def reconstructions(models: Mapping[str, torch.nn.Module], x: Mapping[str, torch.Tensor],
                    n: int = 10):  # fmt: skip
    """Figure 8: per model, for each modality a row of test images and a row of their
    reconstructions from the joint posterior's mean."""
    mods = list(x)
    x = {m: v[:n] for m, v in x.items()}
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 5.0))
    for ax, (name, model) in zip(axes, models.items(), strict=True):
        rec = model.reconstruct({m: v.to(model.device) for m, v in x.items()})
        rows, labels = [], []
        for m in mods:
            rows += [_rows(x[m]), _rows(rec[m])]
            labels += [f"{m} test", f"{m} rec."]
        image_grid(rows, labels, ax=ax, title=name)
    fig.tight_layout()
    return fig


@torch.no_grad()
def unconditional(models: Mapping[str, torch.nn.Module], n: int = 10, seed: int = 0):
    """Figure 9: n prior samples z ~ N(0, I) decoded into every modality; a column shares z."""
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 2.8))
    for ax, (name, model) in zip(axes, models.items(), strict=True):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, model.latent_dim, generator=g).to(model.device)
        gen = model.decode(z)
        image_grid([_rows(gen[m]) for m in model.modalities], list(model.modalities), ax=ax,
                   title=name)  # fmt: skip
    fig.tight_layout()
    return fig


@torch.no_grad()
def conditional(models: Mapping[str, torch.nn.Module], x: Mapping[str, torch.Tensor],
                given: list[str], target: str = "m0", n: int = 10, samples: int = 5,
                seed: int = 0):  # fmt: skip
    """Figures 10 and 11: ``target`` generated from the test examples of ``given`` (shown in
    the first rows); each further row is another draw z ~ q(z | given), column by column."""
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models),
                                                      0.5 * (len(given) + samples) + 0.6))  # fmt: skip
    for ax, (name, model) in zip(axes, models.items(), strict=True):
        subset = S.from_names([given], model.modalities)
        xin = {m: x[m][:n].to(model.device) for m in given}
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            gen = model.conditional_generate(xin, subset, n=samples)[target]  # (S, 1, n, ...)
        rows = [_rows(x[m][:n]) for m in given] + [_rows(gen[s, 0]) for s in range(samples)]
        labels = [f"{m} (given)" for m in given] + [
            f"{target} draw {s + 1}" for s in range(samples)
        ]
        image_grid(rows, labels, ax=ax, title=name)
    fig.tight_layout()
    return fig
