"""Bimodal CelebA (chapter 10): Table 5, per-attribute precision, claims, Figure 4 analogue.

Table 5's columns from a run's ``eval``: mean average precision (over attributes) of a
logistic regression on the latent representation of the image (I), the text (T) and both
(joint), and of the pretrained attribute classifiers on generated samples: text generated
from the image ("T<-I", the paper's I->T) and images generated from the text ("I<-T").
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import torch

from .. import subsets as S
from ..experiment import Claim, Run

MODELS = ("MVAE", "MMVAE", "MoPoE")
METHOD = {"MVAE": "mvae", "MMVAE": "mmvae", "MoPoE": "mopoe"}
LATENT = {"latent_I": "img", "latent_T": "text", "latent_joint": "img,text"}


def table5_values(runs: Mapping[str, Run]) -> dict[tuple[str, str], float]:
    out = {}
    for model, run in runs.items():
        ev = run.eval
        for col, subset in LATENT.items():
            out[(model, col)] = float(ev["latent_classification"]["per_subset"][subset])
        cond = ev["coherence"]["conditional"]
        out[(model, "T<-I")] = float(cond["img"]["text"])
        out[(model, "I<-T")] = float(cond["text"]["img"])
    return out


@torch.no_grad()
def attribute_precision(run: Run, train, test, n_train: int = 500, n_test: int = 500,
                        seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Average precision per attribute of a logistic regression on the joint posterior mean."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    from ..evaluation.metrics import posterior_means

    model = run.model
    full = S.full(len(model.modalities))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=gen)[: min(n_train, len(train))]
    f_tr = posterior_means(model, train, idx, full)[0].double().numpy()
    te = torch.arange(min(n_test, len(test)))
    f_te = posterior_means(model, test, te, full)[0].double().numpy()
    y_tr = train.labels[idx].cpu().numpy()
    y_te = test.labels[te].cpu().numpy()
    names = run.metrics["data"]["train"].get("attribute_names") or [
        f"attr{a}" for a in range(y_tr.shape[1])
    ]
    out = {}
    for a, name in enumerate(names):
        if 0 < y_tr[:, a].sum() < len(y_tr) and 0 < y_te[:, a].sum() < len(y_te):
            clf = LogisticRegression(max_iter=1000, random_state=seed).fit(f_tr, y_tr[:, a])
            out[name] = float(average_precision_score(y_te[:, a], clf.predict_proba(f_te)[:, 1]))
    return out


def claims(t5: Mapping, per_attribute: Mapping[str, float] | None = None,
           tol: float = 0.02) -> list[Claim]:  # fmt: skip
    """Every qualitative claim of Section 4.3 and Table 5, checked."""
    out = []
    lat = list(LATENT)
    gap = {c: t5[("MoPoE", c)] - max(t5[("MVAE", c)], t5[("MMVAE", c)]) for c in lat}
    out.append(Claim(
        f"MoPoE's latent representations (I, T, joint) match the baselines (within {tol} of "
        "the best baseline or better)",
        all(v >= -tol for v in gap.values()),
        "MoPoE minus the best baseline: " + ", ".join(f"{c} {v:+.3f}" for c, v in gap.items()),
        "Table 5, Section 4.3",
    ))  # fmt: skip
    g = t5[("MoPoE", "I<-T")] - max(t5[("MVAE", "I<-T")], t5[("MMVAE", "I<-T")])
    out.append(Claim(
        f"MoPoE's image generation from text (I<-T) matches the baselines (within {tol} or "
        "better)",
        g >= -tol,
        f"MoPoE minus the best baseline: {g:+.3f}",
        "Table 5, Section 4.3",
    ))  # fmt: skip
    ti = {m: t5[(m, "T<-I")] for m in MODELS}
    out.append(Claim(
        "Text generated from images (T<-I) is weaker for MMVAE and MoPoE than for MVAE",
        ti["MMVAE"] < ti["MVAE"] and ti["MoPoE"] < ti["MVAE"],
        ", ".join(f"{m} {v:.3f}" for m, v in ti.items()),
        "Table 5",
    ))  # fmt: skip
    both = {m: (t5[(m, "I<-T")], t5[(m, "T<-I")]) for m in ("MMVAE", "MoPoE")}
    out.append(Claim(
        "For MMVAE and MoPoE, images from text (I<-T) are more coherent than text from images "
        "(T<-I)",
        all(a > b for a, b in both.values()),
        ", ".join(f"{m} I<-T {a:.3f} vs T<-I {b:.3f}" for m, (a, b) in both.items()),
        "Table 5",
    ))  # fmt: skip
    if per_attribute:
        med = float(np.median(list(per_attribute.values())))
        shown = {k: per_attribute[k] for k in ("Male", "Smiling") if k in per_attribute}
        out.append(Claim(
            "Attributes like gender (Male) and Smiling are identified from MoPoE's latent "
            "representation better than the median attribute",
            bool(shown) and all(v > med for v in shown.values()),
            ", ".join(f"{k} {v:.3f}" for k, v in shown.items()) + f"; median {med:.3f}",
            "Section 4.3, Figure 4",
        ))  # fmt: skip
    return out


def plot_attribute_precision(per_attribute: Mapping[str, float], ax=None, title: str = ""):
    """Bar chart of average precision per attribute (sorted)."""
    import matplotlib.pyplot as plt

    items = sorted(per_attribute.items(), key=lambda kv: kv[1])
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.18 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], label="average precision")
    ax.axvline(np.median([v for _, v in items]), color="k", ls="--", lw=1, label="median")
    ax.set_xlabel("average precision (logistic regression on the joint latent)")
    ax.set_ylabel("attribute")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right")
    ax.set_title(title or "Per-attribute average precision of the latent representation")
    return ax


@torch.no_grad()
def images_from_text(run: Run, test, n: int = 6, samples: int = 2, seed: int = 0,
                     title: str = ""):  # fmt: skip
    """Figure 4 analogue: images generated from the text of n test examples.

    The text of each column is printed above it; rows are independent samples (a new content
    code from q(z | text) and a new image style from the prior).
    """
    import matplotlib.pyplot as plt

    from ..datasets import decode_text

    model = run.model
    idx = torch.arange(n)
    x = {m: v.to(model.device) for m, v in test.batch(idx).items()}
    torch.manual_seed(seed)
    only_text = S.from_names([["text"]], model.modalities)
    gen = model.conditional_generate(x, only_text, n=samples)["img"]  # (samples, 1, n, 3, H, W)
    fig, axes = plt.subplots(samples + 1, n, figsize=(1.9 * n, 1.9 * (samples + 1) + 1.2))
    for c in range(n):
        words = decode_text(x["text"][c].cpu()).strip("*").strip()
        axes[0, c].imshow(x["img"][c].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        axes[0, c].set_title("\n".join(textwrap.wrap(words, 22)[:6]), fontsize=6)
        for r in range(samples):
            img = gen[r, 0, c].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
            axes[r + 1, c].imshow(img)
        for r in range(samples + 1):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    axes[0, 0].set_ylabel("test image", fontsize=8)
    for r in range(samples):
        axes[r + 1, 0].set_ylabel(f"from text,\nsample {r + 1}", fontsize=8)
    fig.suptitle(title or "Images generated from the attribute text above each column")
    fig.tight_layout()
    return fig
