"""Figures of the PolyMNIST chapter: the data (Figure 2), Figure 3 and Figures 8-11.

Every function takes trained models (:class:`~mopoe_lib.model.MultimodalVAE`) and test
tuples in model format (``{"m0": (N, 3, 28, 28), ...}``) and draws with matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import subsets as S
from ..experiment import Claim
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


def seed_statistics(evals_by_seed: Sequence[Mapping[str, dict]]):
    """Mean and standard deviation over seeds of :func:`figure3_curves`: two dicts
    {metric: {model: {n_inputs: value}}} (the std is 0 for a single seed)."""
    per_seed = [figure3_curves(e) for e in evals_by_seed]
    mean: dict = {}
    std: dict = {}
    for metric, models in per_seed[0].items():
        mean[metric], std[metric] = {}, {}
        for name, points in models.items():
            values = {n: np.array([c[metric][name][n] for c in per_seed]) for n in points}
            mean[metric][name] = {n: float(v.mean()) for n, v in values.items()}
            std[metric][name] = {n: float(v.std(ddof=1)) if len(v) > 1 else 0.0
                                 for n, v in values.items()}  # fmt: skip
    return mean, std


def figure3(evals: Mapping[str, dict] | Sequence[Mapping[str, dict]], title: str = ""):
    """Figure 3: latent classification, coherence and log-likelihood against the number of
    input modalities, one curve per model; returns the figure. ``evals`` is one run's
    {model: eval} or a list of them (one per seed): then each point is the mean over seeds
    with an error bar of one standard deviation, as in the paper."""
    runs = [evals] if isinstance(evals, Mapping) else list(evals)
    mean, std = seed_statistics(runs)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    xl = "number of input modalities"
    panels = (("latent", "accuracy", "latent classification"),
              ("coherence", "accuracy", "conditional coherence (inputs excluded)"),
              ("loglik", "log-likelihood (nats)", "log-likelihood of all modalities"))  # fmt: skip
    for ax, (metric, ylabel, panel_title) in zip(axes, panels, strict=True):
        curves(ax, mean[metric], xlabel=xl, ylabel=ylabel, markers=MARKERS, title=panel_title,
               chance=0.1 if metric != "loglik" else None)  # fmt: skip
        if len(runs) > 1:
            for line, (name, points) in zip(ax.get_lines(), mean[metric].items(), strict=False):
                xs = [float(n) for n in points]
                ax.errorbar(xs, list(points.values()), yerr=list(std[metric][name].values()),
                            fmt="none", ecolor=line.get_color(), capsize=3, lw=1)  # fmt: skip
    for ax in axes[:2]:
        ax.set_ylim(0, 1.02)  # the full accuracy range, so that chance looks like chance
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def claims(curves: Mapping, joint: Mapping[str, float], n_test: int) -> list[Claim]:
    """Every qualitative claim of Section 4.2 and Figure 3, checked on one run's numbers.

    ``curves`` is :func:`figure3_curves` of the run, ``joint`` the joint coherence in %
    per model and ``n_test`` the number of test tuples behind the accuracies. An accuracy
    difference counts only beyond ``delta = 2 sqrt(0.1 * 0.9 / n_test)``, twice the binomial
    standard error at chance level (0.019 for 1,000 tuples).
    """
    lat, coh, ll = curves["latent"], curves["coherence"], curves["loglik"]
    delta = 2 * (0.1 * 0.9 / n_test) ** 0.5
    ns_lat, ns_coh = [str(n) for n in range(1, 6)], [str(n) for n in range(1, 5)]

    def fmt_curve(points, f="{:.3f}"):
        return ", ".join(f"{n}: {f.format(v)}" for n, v in points.items())

    def spread(points):
        return max(points.values()) - min(points.values())

    out = []
    for name in ("MoPoE", "MVAE"):
        for metric, points, last, f, margin in (
                ("latent classification", lat[name], "5", "{:.3f}", delta),
                ("coherence", coh[name], "4", "{:.3f}", delta),
                ("log-likelihood", ll[name], "5", "{:.1f}", 0.0)):  # fmt: skip
            out.append(Claim(
                f"{name}'s {metric} improves with more input modalities",
                points[last] - points["1"] > margin, fmt_curve(points, f),
                "Sec. 4.2: 'both the MVAE and MoPoE-VAE benefit from more input modalities'"))  # fmt: skip
    for metric, points, tol, f in (
            ("latent classification", lat["MMVAE"], max(0.05, delta), "{:.3f}"),
            ("coherence", coh["MMVAE"], max(0.05, delta), "{:.3f}"),
            ("log-likelihood", ll["MMVAE"], 0.25 * spread(ll["MoPoE"]), "{:.1f}")):  # fmt: skip
        out.append(Claim(
            f"MMVAE's {metric} stays flat across the number of inputs",
            spread(points) <= tol,
            f"spread {spread(points):.3g} (at most {tol:.3g}); " + fmt_curve(points, f),
            "Sec. 4.2 ('the MVAE stays flat', meaning the MMVAE) and Figure 3"))  # fmt: skip
    for metric, points, ns in (("latent classification", lat, ns_lat), ("coherence", coh, ns_coh)):
        diff = {n: points["MoPoE"][n] - points["MVAE"][n] for n in ns}
        out.append(Claim(
            f"MoPoE is above MVAE in {metric} for every number of inputs",
            all(d > delta for d in diff.values()), "MoPoE - MVAE: " + fmt_curve(diff, "{:+.3f}"),
            "Sec. 4.2: 'clearly superior in terms of both latent classification as well as "
            "conditional coherence across any subset'"))  # fmt: skip
    for metric, points, ns in (("latent classification", lat, ns_lat[1:]),
                               ("coherence", coh, ns_coh[1:])):  # fmt: skip
        diff = {n: points["MoPoE"][n] - points["MMVAE"][n] for n in ns}
        out.append(Claim(
            f"MoPoE is above MMVAE in {metric} with 2 or more inputs",
            all(d > delta for d in diff.values()), "MoPoE - MMVAE: " + fmt_curve(diff, "{:+.3f}"),
            "Sec. 4.2: 'superior for most subsets of modalities'; Figure 3"))  # fmt: skip
    for metric, points, tol, f in (
            ("latent classification", lat, max(0.05, delta), "{:.3f}"),
            ("coherence", coh, max(0.05, delta), "{:.3f}"),
            ("log-likelihood", ll, 0.01 * abs(ll["MMVAE"]["1"]), "{:.1f}")):  # fmt: skip
        a, b = points["MoPoE"]["1"], points["MMVAE"]["1"]
        out.append(Claim(
            f"With one input, MoPoE matches MMVAE in {metric}",
            abs(a - b) <= tol, f"MoPoE {f.format(a)}, MMVAE {f.format(b)} (tolerance {tol:.3g})",
            "Sec. 4.2: 'in the limit of a single input modality, MoPoE-VAE matches the "
            "performance of MMVAE'"))  # fmt: skip
    a, b = ll["MoPoE"]["5"], ll["MVAE"]["5"]
    out.append(Claim(
        "With all five inputs, MoPoE's log-likelihood is on par with MVAE's",
        abs(a - b) <= 0.01 * abs(b),
        f"MoPoE {a:.1f}, MVAE {b:.1f} (tolerance 1 %: {0.01 * abs(b):.1f})",
        "Sec. 4.2: 'the log-likelihood of MoPoE-VAE is on par with MVAE'"))  # fmt: skip
    out.append(Claim(
        "Joint coherence: MMVAE > MoPoE > MVAE",
        joint["MMVAE"] > joint["MoPoE"] > joint["MVAE"],
        ", ".join(f"{n} {v:.1f} %" for n, v in joint.items()),
        "Figure 3 caption: 3.6, 20.0, 12.1 % for MVAE, MMVAE, MoPoE"))  # fmt: skip
    best = max(ll, key=lambda n: ll[n]["5"])
    out.append(Claim(
        "(hypothesis) MVAE has the best log-likelihood with all modalities present",
        best == "MVAE", ", ".join(f"{n} {ll[n]['5']:.1f}" for n in ll),
        "Sec. 4.2: 'we hypothesize that the MVAE will achieve the best generative performance "
        "when all modalities are present'"))  # fmt: skip
    out.append(Claim(
        "(hypothesis) MVAE struggles with missing modalities: below MoPoE in log-likelihood "
        "with one input", ll["MVAE"]["1"] < ll["MoPoE"]["1"],
        f"MVAE {ll['MVAE']['1']:.1f}, MoPoE {ll['MoPoE']['1']:.1f}",
        "Sec. 4.2: '... but that it will struggle with an increasing number of missing "
        "modalities'"))  # fmt: skip
    return out


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
