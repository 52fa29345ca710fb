"""The paper's metrics (Appendix B) for a trained :class:`~mopoe_lib.model.MultimodalVAE`.

:func:`evaluate` computes, for every non-empty subset of modalities: linear latent
classification, conditional coherence per target modality, and the importance-sampled test
log-likelihood; plus joint coherence from prior samples and the joint log-likelihood. Scores
are also aggregated by the number of input modalities (Figure 3; coherence excludes the
inputs). For multi-label attributes (CelebA) accuracies become mean average precisions.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .. import subsets as S
from ..data import TensorData
from ..model import MultimodalVAE
from . import classifiers as classifiers_mod
from .likelihood import joint_posterior, log_likelihood
from .metrics import (
    by_num_inputs,
    classifier_scores,
    conditional_coherence,
    joint_agreement,
    latent_classification,
)

__all__ = ["evaluate", "log_likelihood", "joint_posterior", "test_log_likelihoods"]


@torch.no_grad()
def test_log_likelihoods(model, test: TensorData, subsets, *, num_samples=15, batch_size=64):
    """Mean over the test samples of log p(X) per subset proposal (K,), and with the joint.
    With a presence mask on ``test``, X is each sample's observed modalities."""
    per_subset, joint = [], []
    for i in range(0, len(test), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(test))).to(test.labels.device)
        x = {m: v.to(model.device) for m, v in test.batch(idx).items()}
        mask = test.batch_mask(idx)
        mask = None if mask is None else mask.to(model.device)
        per_subset.append(
            log_likelihood(model, x, subsets, num_samples=num_samples, mask=mask).cpu()
        )
        joint.append(log_likelihood(model, x, num_samples=num_samples, joint=True, mask=mask).cpu())
    return torch.cat(per_subset, 1).mean(1).double(), float(torch.cat(joint, 1).mean())


def evaluate(
    model: MultimodalVAE,
    train: TensorData,
    test: TensorData,
    classifiers: dict | None,
    cfg,
    *,
    seed: int = 0,
    log=print,
) -> dict:
    """All metrics as a JSON-ready dict; ``cfg`` is an :class:`~mopoe_lib.config.EvalConfig`.

    Runs in eval mode under its own RNG (seeded by ``seed``), so evaluating does not change
    the random stream of training. ``classifiers`` (modality -> frozen network) may be None
    to skip coherence.
    """
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    mods = model.modalities
    subsets = S.powerset(len(mods))
    names = S.names(subsets, mods)
    test_c = test.subset(cfg.n_test)
    multilabel = classifiers_mod.is_multilabel(test.labels)
    metric = "mean_average_precision" if multilabel else "accuracy"
    out: dict = {"subsets": names, "metric": metric}
    devices = [torch.device(model.device)] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            t = time.perf_counter()
            lat = latent_classification(model, train, test_c, subsets, n_train=cfg.lr_train_samples,
                                        batch_size=cfg.batch_size, seed=seed)  # fmt: skip
            out["latent_classification"] = {
                "per_subset": dict(zip(names, lat, strict=True)),
                "by_num_inputs": by_num_inputs(lat, subsets),
                "n_train": min(cfg.lr_train_samples, len(train)),
                "n_test": len(test_c),
                "seconds": time.perf_counter() - t,
            }
            log(f"[eval] latent classification ({metric}) by inputs: "
                f"{_fmt(out['latent_classification']['by_num_inputs'])}")  # fmt: skip
            if classifiers is not None:
                t = time.perf_counter()
                # Only cross-modal generation is a coherence of the paper (Figure 3, Tables
                # 3 and 5), so a subset's own modalities are not classified.
                coh = conditional_coherence(model, test_c, subsets, classifiers,
                                            batch_size=cfg.batch_size, include_inputs=False)  # fmt: skip
                joint, agreed = (None, None) if multilabel else joint_agreement(
                    model, classifiers, cfg.joint_samples, batch_size=cfg.batch_size)  # fmt: skip
                out["coherence"] = {
                    "conditional": {
                        names[k]: {m: float(coh[k, j]) for j, m in enumerate(mods)
                                   if not np.isnan(coh[k, j])}
                        for k in range(len(names))
                    },
                    "by_num_inputs": by_num_inputs(coh, subsets, exclude_inputs=True),
                    "joint": joint,
                    # per label: the prior samples on which all classifiers agreed
                    "joint_agreed_labels": agreed,
                    "classifiers_on_test_data": classifier_scores(classifiers, test_c),
                    "n_test": len(test_c),
                    "joint_samples": cfg.joint_samples,
                    "seconds": time.perf_counter() - t,
                }  # fmt: skip
                log(f"[eval] conditional coherence by inputs: "
                    f"{_fmt(out['coherence']['by_num_inputs'])}, joint {out['coherence']['joint']}")  # fmt: skip
            t = time.perf_counter()
            test_ll = test.subset(cfg.ll_n_test)
            ll, joint = test_log_likelihoods(model, test_ll, subsets, num_samples=cfg.ll_samples,
                                             batch_size=cfg.ll_batch_size)  # fmt: skip
            out["log_likelihood"] = {
                "per_subset": dict(zip(names, ll.tolist(), strict=True)),
                "by_num_inputs": by_num_inputs(ll.numpy(), subsets),
                "joint": joint,
                "importance_samples": cfg.ll_samples,
                "n_test": len(test_ll),
                "seconds": time.perf_counter() - t,
            }
            log(f"[eval] log-likelihood by inputs: {_fmt(out['log_likelihood']['by_num_inputs'])}"
                f", joint {joint:.1f}")  # fmt: skip
    finally:
        model.train(was_training)
    out["seconds"] = time.perf_counter() - start
    return out


def _fmt(d: dict) -> str:
    return ", ".join(f"{k}: {v:.3f}" if isinstance(v, float) and np.isfinite(v) else f"{k}: {v}"
                     for k, v in d.items())  # fmt: skip
