"""Latent classification, coherence and mean average precision.

All subsets are evaluated at once: one encoder pass per batch, then
:meth:`MultimodalVAE.posterior` over the (K, M) subset table (batched through
:func:`mopoe_lib.fusion.subset_posteriors`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import TensorData
from ..model import MultimodalVAE
from .classifiers import is_multilabel, predict


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield torch.arange(i, min(i + size, n))


def _mask(data: TensorData, rows: torch.Tensor, device) -> torch.Tensor | None:
    mask = data.batch_mask(rows)
    return None if mask is None else mask.to(device)


def _labels_np(labels: torch.Tensor) -> np.ndarray:
    return labels.detach().cpu().numpy()


# ---------------------------------------------------------------------------
# Latent representations (Appendix B: logistic regression on 500 training encodings)


@torch.no_grad()
def posterior_means(model: MultimodalVAE, data: TensorData, idx: torch.Tensor, subsets,
                    batch_size: int = 256) -> torch.Tensor:  # fmt: skip
    """Means of q(z | X_k) for samples ``idx``: (K, N, D) on the CPU. With a presence mask
    on ``data`` each sample's subset posterior fuses only the modalities it has."""
    out = []
    for chunk in idx.split(batch_size):
        rows = chunk.to(data.labels.device)
        x = {m: v.to(model.device) for m, v in data.batch(rows).items()}
        mask = _mask(data, rows, model.device)
        out.append(model.posterior(x, subsets, mask).mean().cpu())
    return torch.cat(out, dim=1)


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean over attributes (columns) that have a positive and a negative of sklearn's AP."""
    from sklearn.metrics import average_precision_score

    aps = [
        average_precision_score(y_true[:, a], scores[:, a])
        for a in range(y_true.shape[1])
        if 0 < y_true[:, a].sum() < len(y_true)
    ]
    return float(np.mean(aps)) if aps else float("nan")


def linear_classification(train_feats, train_labels, test_feats, test_labels, seed: int = 0):
    """Accuracy (single label) or mean average precision (attributes) of a logistic
    regression (lbfgs, max_iter 1000) fitted on the training features."""
    from sklearn.linear_model import LogisticRegression

    xtr, xte = train_feats.double().numpy(), test_feats.double().numpy()
    ytr, yte = _labels_np(train_labels), _labels_np(test_labels)
    if ytr.ndim == 1:
        clf = LogisticRegression(max_iter=1000, random_state=seed).fit(xtr, ytr)
        return float((clf.predict(xte) == yte).mean())
    scores = np.zeros(yte.shape)
    usable = np.zeros(yte.shape[1], dtype=bool)
    for a in range(ytr.shape[1]):
        if 0 < ytr[:, a].sum() < len(ytr):  # an attribute constant in the 500 cannot be fitted
            clf = LogisticRegression(max_iter=1000, random_state=seed).fit(xtr, ytr[:, a])
            scores[:, a] = clf.predict_proba(xte)[:, 1]
            usable[a] = True
    # Probabilities rank the test set; the official code scored hard predictions.
    return average_precision(yte[:, usable], scores[:, usable])


def latent_classification(model, train: TensorData, test: TensorData, subsets, *,
                          n_train: int = 500, batch_size: int = 256, seed: int = 0) -> list[float]:  # fmt: skip
    """One score per subset: a linear classifier on the posterior means of X_k.

    The ``n_train`` training samples are drawn without replacement (the official code drew
    with replacement).
    """
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=gen)[: min(n_train, len(train))]
    f_tr = posterior_means(model, train, idx, subsets, batch_size)
    f_te = posterior_means(model, test, torch.arange(len(test)), subsets, batch_size)
    y_tr, y_te = train.labels[idx.to(train.labels.device)].cpu(), test.labels.cpu()
    return [linear_classification(f_tr[k], y_tr, f_te[k], y_te, seed) for k in range(len(f_tr))]


# ---------------------------------------------------------------------------
# Coherence (Appendix B): generated samples classified by the pretrained classifiers


@torch.no_grad()
def conditional_coherence(model, test: TensorData, subsets, classifiers, *,
                          batch_size: int = 256, include_inputs: bool = True) -> np.ndarray:  # fmt: skip
    """(K, M): for every subset k and target modality m, the accuracy (or mean AP for
    attributes) of classifying x_m ~ p(x_m | z), z ~ q(z | X_k), against the test label.
    Input modalities are included here unless ``include_inputs=False`` (then their entries
    are NaN and never classified, which halves the classifier's work on PolyMNIST);
    :func:`by_num_inputs` excludes them. A presence mask on ``test`` restricts each sample's
    inputs to the modalities it has."""
    multilabel = is_multilabel(test.labels)
    num_sub, num_mod = subsets.shape[0], len(model.modalities)
    # (K, M): the (subset, target) pairs whose generations are classified
    classified = np.ones((num_sub, num_mod), bool) if include_inputs else ~subsets.cpu().numpy()
    rows = [torch.from_numpy(np.flatnonzero(classified[:, j])) for j in range(num_mod)]
    correct = np.zeros((num_sub, num_mod))
    scores = [[[] for _ in range(num_mod)] for _ in range(num_sub)]
    for idx in _batches(len(test), batch_size):
        at = idx.to(test.labels.device)
        x = {m: v.to(model.device) for m, v in test.batch(at).items()}
        y = test.labels[at].to(model.device)
        mask = _mask(test, at, model.device)
        gen = model.conditional_generate(x, subsets, n=1, mask=mask)  # m -> (1, K, B, ...)
        for j, m in enumerate(model.modalities):
            ks = rows[j]
            if len(ks) == 0:
                continue
            samples = gen[m][0][ks.to(gen[m].device)]
            logits = predict(classifiers[m], samples.reshape(-1, *samples.shape[2:]))
            logits = logits.view(len(ks), len(idx), -1)
            if multilabel:
                for i, k in enumerate(ks.tolist()):
                    scores[k][j].append(torch.sigmoid(logits[i]).cpu())
            else:
                correct[ks.numpy(), j] += (logits.argmax(-1) == y).sum(1).cpu().numpy()
    out = np.full((num_sub, num_mod), np.nan)
    if multilabel:
        y_all = _labels_np(test.labels)
        for k, j in zip(*np.nonzero(classified), strict=True):
            out[k, j] = average_precision(y_all, torch.cat(scores[k][j]).numpy())
    else:
        out[classified] = correct[classified] / len(test)
    return out


@torch.no_grad()
def joint_agreement(model, classifiers, n: int, *, batch_size: int = 256):
    """Joint coherence and, per label, how many prior samples all classifiers agreed on.

    A coherent sample counts for the label its modalities share, so a joint coherence that
    rests on classifiers agreeing on one default label (blurry samples read as one digit)
    shows as counts piled on that label.
    """
    agree, counts = 0, None
    for i in range(0, n, batch_size):
        gen = model.sample(min(batch_size, n - i))
        logits = [predict(classifiers[m], gen[m]) for m in model.modalities]
        preds = torch.stack([lg.argmax(-1) for lg in logits])
        same = (preds == preds[0]).all(0)
        agree += int(same.sum())
        batch_counts = torch.bincount(preds[0][same].cpu(), minlength=logits[0].shape[-1])
        counts = batch_counts if counts is None else counts + batch_counts
    return agree / n, counts.tolist()


def joint_coherence(model, classifiers, n: int, *, batch_size: int = 256) -> float:
    """Fraction of prior samples whose modalities all receive the same predicted label."""
    return joint_agreement(model, classifiers, n, batch_size=batch_size)[0]


@torch.no_grad()
def classifier_scores(classifiers, test: TensorData, batch_size: int = 512) -> dict[str, float]:
    """Each classifier on the real test data: accuracy, or mean AP for attributes."""
    out = {}
    for m, clf in classifiers.items():
        device = next(clf.parameters()).device
        logits = []
        for idx in _batches(len(test), batch_size):
            x = test.batch(idx.to(test.labels.device), (m,))[m].to(device)
            logits.append(predict(clf, x).cpu())
        logits = torch.cat(logits)
        y = test.labels.cpu()
        if is_multilabel(test.labels):
            out[m] = average_precision(y.numpy(), torch.sigmoid(logits).numpy())
        else:
            out[m] = float((logits.argmax(-1) == y).float().mean())
    return out


def by_num_inputs(values, subsets: torch.Tensor, exclude_inputs: bool = False) -> dict[str, float]:
    """Average over subsets of each size n (Figure 3). ``values`` is (K,) or, with
    ``exclude_inputs``, (K, M), averaged over the target modalities not in the subset."""
    sizes = subsets.sum(1).tolist()
    rows = subsets.tolist()
    groups: dict[int, list[float]] = {}
    for k, n in enumerate(sizes):
        if exclude_inputs:
            targets = [values[k][j] for j, inside in enumerate(rows[k]) if not inside]
            if not targets:
                continue  # all modalities given: nothing left to generate
            groups.setdefault(n, []).append(float(np.mean(targets)))
        else:
            groups.setdefault(n, []).append(float(values[k]))
    return {str(n): float(np.mean(v)) for n, v in sorted(groups.items())}
