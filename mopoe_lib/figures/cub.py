"""CUB image-caption (chapter 12): the slides' generation in four directions, captions from
prior samples, and the stand-in's attribute-coherence table and claims."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import torch

from .. import captions as C
from .. import subsets as S
from ..experiment import Claim
from .common import to_hwc

DIRECTIONS = ("img->sent", "sent->img", "sent->sent", "img->img", "prior")
LABELS = {"img->sent": "vision → language", "sent->img": "language → vision",
          "sent->sent": "language → language", "img->img": "vision → vision",
          "prior": "prior samples (image and caption agree)"}  # fmt: skip


def _wrap(text: str, width: int = 26) -> str:
    return "\n".join(textwrap.wrap(text, width)) or "(empty)"


@torch.no_grad()
def generations(model, x: Mapping[str, torch.Tensor], words) -> dict:
    """The four directions for a batch x: images (B, 3, 64, 64) and captions (texts)."""
    model.eval()
    subsets = S.from_names([["img"], ["sent"]], model.modalities).to(model.device)
    x = {m: v.to(model.device) for m, v in x.items()}
    gen = model.conditional_generate(x, subsets, n=1)  # m -> (1, 2, B, ...)
    text = lambda sent: [C.to_text(s, words) for s in sent.cpu()]  # noqa: E731
    return {"img->img": gen["img"][0, 0].cpu(), "sent->img": gen["img"][0, 1].cpu(),
            "img->sent": text(gen["sent"][0, 0]), "sent->sent": text(gen["sent"][0, 1]),
            "input_caption": text(x["sent"])}  # fmt: skip


def four_way(models: Mapping[str, object], x: Mapping[str, torch.Tensor], words, title=""):
    """One row per test bird and model: the input image and caption, then vision → vision,
    language → vision (images) and vision → language, language → language (captions)."""
    import matplotlib.pyplot as plt

    n = len(x["img"])
    gens = {name: generations(m, x, words) for name, m in models.items()}
    cols = ["input", "vision → vision", "language → vision", "vision → language",
            "language → language"]  # fmt: skip
    fig, axes = plt.subplots(n * len(models), 5, figsize=(12, 2.1 * n * len(models)),
                             squeeze=False)  # fmt: skip
    for r, (name, g) in enumerate((name, g) for i in range(n) for name, g in gens.items()):
        i = r // len(models)
        row = axes[r]
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].imshow(to_hwc(x["img"][i]))
        row[0].set_xlabel(_wrap(g["input_caption"][i], 30), fontsize=7)
        row[0].set_ylabel(name, fontsize=9)
        row[1].imshow(to_hwc(g["img->img"][i]))
        row[2].imshow(to_hwc(g["sent->img"][i]))
        for j, key in ((3, "img->sent"), (4, "sent->sent")):
            row[j].text(0.03, 0.5, _wrap(g[key][i]), fontsize=8, va="center", wrap=True)
            row[j].set_frame_on(False)
        if r == 0:
            for ax, c in zip(row, cols, strict=True):
                ax.set_title(c, fontsize=9)
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


@torch.no_grad()
def prior_samples(models: Mapping[str, object], words, n: int = 6, seed: int = 0, title=""):
    """Images and captions decoded from the same prior samples z ~ p(z), per model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), n, figsize=(2.0 * n, 2.6 * len(models)),
                             squeeze=False)  # fmt: skip
    for r, (name, model) in enumerate(models.items()):
        torch.manual_seed(seed)
        out = model.decode(model.prior_sample(n))
        for k in range(n):
            ax = axes[r, k]
            ax.imshow(to_hwc(out["img"][k].cpu()))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(_wrap(C.to_text(out["sent"][k].cpu(), words), 24), fontsize=7)
            if k == 0:
                ax.set_ylabel(name)
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def coherence_rows(evals: Mapping[str, dict]) -> list[list[str]]:
    """Rows "direction | model ... | chance" of the stand-in's attribute coherence."""
    rows = []
    for d in DIRECTIONS:
        cells = [evals[m]["attribute_coherence"][d] for m in evals]
        known = [c["chance"] for c in cells if np.isfinite(c["chance"])]  # nan: none stated
        chance = float(np.mean(known)) if known else float("nan")
        rows.append([LABELS[d], *(f"{c['coherence']:.3f}" for c in cells), f"{chance:.3f}"])
    return rows


def above_chance(cell: dict) -> tuple[bool, float]:
    """Whether a coherence exceeds its chance by more than two standard errors of a share
    of ``count`` attributes at the chance level (False when nothing was stated)."""
    n, p = cell.get("count", 0), cell["chance"]
    if not n or not np.isfinite(cell["coherence"]):
        return False, float("nan")
    se = float(np.sqrt(p * (1 - p) / n))
    return bool(cell["coherence"] - p > 2 * se), se


def claims(ev: dict, model: str = "MMVAE") -> list[Claim]:
    """What the slides show, as checks on the stand-in's numbers for ``model``: each
    direction's coherence above chance by more than two standard errors."""
    c = ev["attribute_coherence"]
    source = "MMVAE slides, Caltech-UCSD Birds"

    def above(direction, text):
        v, ch = c[direction]["coherence"], c[direction]["chance"]
        held, se = above_chance(c[direction])
        return Claim(text, held, f"{model}: {v:.3f} against chance {ch:.3f} (2 s.e. "
                     f"{2 * se:.3f}, {c[direction].get('count', 0)} attributes)", source)  # fmt: skip

    return [
        above("img->sent", "vision → language: generated captions describe the input bird"),
        above("sent->img", "language → vision: generated birds show what the caption says"),
        above("sent->sent", "language → language: the caption's content survives"),
        above("img->img", "vision → vision: the bird's attributes survive"),
        above("prior", "from prior samples, caption and image describe the same bird"),
        Claim("captions from prior samples are sentences (end with a full stop, state an "
              "attribute) more often than not",
              bool(c["prior"]["well_formed"] > 0.5),
              f"{model}: {c['prior']['well_formed']:.2f} well formed", source),
    ]  # fmt: skip
