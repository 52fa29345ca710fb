"""A learning curve: how much of the shared factor the latent space holds, during training.

Every ``train.curve_every_steps`` optimizer steps the trainer records one point:

- ``probe_unimodal``: the linear latent classification of Appendix B (logistic regression on
  posterior means) averaged over the M unimodal posteriors q(z | x_m), the quantity that
  Figure 3 starts from; ``probe_joint`` the same for the joint posterior q(z | X);
- ``objective``: the value of the model's own objective (its bound, with the full beta) per
  test tuple; under a KL warm-up the optimizer minimises a smaller beta's loss for a while,
  which is why the curve does not use the training loss;
- ``train_s``: training seconds so far, excluding the time spent on the curve itself.

A point uses ``eval.curve_samples`` training tuples to fit and as many test tuples to score,
fixed for the whole run, under its own RNG (so recording a curve does not change training).
"""

from __future__ import annotations

import torch

from .. import subsets as S
from ..data import TensorData
from ..model import MultimodalVAE
from .metrics import latent_classification


@torch.no_grad()
def curve_point(model: MultimodalVAE, train: TensorData, test: TensorData, n: int,
                seed: int = 0, batch_size: int = 256) -> dict:  # fmt: skip
    was_training = model.training
    model.eval()
    devices = [torch.device(model.device)] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            num_mod = len(model.modalities)
            subsets = torch.cat([S.unimodal(num_mod), S.full(num_mod)])
            test = test.subset(n)  # the same first n test tuples at every point
            idx_te = torch.arange(len(test))
            scores = latent_classification(model, train, test, subsets, n_train=n,
                                           batch_size=batch_size, seed=seed)  # fmt: skip
            objective = 0.0
            for rows in idx_te.split(batch_size):
                rows = rows.to(test.labels.device)
                x = {m: v.to(model.device) for m, v in test.batch(rows).items()}
                mask = test.batch_mask(rows)
                mask = None if mask is None else mask.to(model.device)
                objective += float(model.objective(x, mask).value.sum())
    finally:
        model.train(was_training)
    return {
        "probe_unimodal": sum(scores[:num_mod]) / num_mod,
        "probe_per_modality": dict(zip(model.modalities, scores[:num_mod], strict=True)),
        "probe_joint": scores[num_mod],
        "objective": objective / len(idx_te),
    }
