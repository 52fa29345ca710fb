"""Per-modality classifiers that label generated samples (coherence), cached on disk.

A classifier is trained once per dataset (keyed by the data's manifest id and the training
settings) on the training split and saved; later runs load it. Classifiers are returned in
eval mode with gradients off: the official code never called ``.eval()``, so its dropout was
active while it measured coherence (reference-implementations §6).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import networks
from .. import progress as progress_mod
from ..data import TensorData

SCHEDULES = ("constant", "cosine")  # the classifiers' learning-rate schedules


def is_multilabel(labels: torch.Tensor) -> bool:
    return labels.dim() == 2


def num_outputs(labels: torch.Tensor) -> int:
    return labels.shape[1] if is_multilabel(labels) else 10


def cache_key(dataset: str, modality: str, data_id: str, settings: dict) -> str:
    blob = json.dumps({"dataset": dataset, "modality": modality, "data": data_id, **settings},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_classifier(
    dataset: str,
    modality: str,
    train: TensorData,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 256,
    width: int = 128,
    device="cpu",
    seed: int = 0,
    progress: bool = False,
    arch: str = "official",
    shift: int = 0,
    schedule: str = "constant",
) -> nn.Module:
    """Supervised training (cross-entropy, or binary cross-entropy for attributes).

    ``shift > 0``: each batch of images is translated by a random offset of up to ``shift``
    pixels per axis (a circular shift), an augmentation for small training sets; other
    modalities (text) are left as they are. ``schedule``: ``"constant"`` (Adam at ``lr``, as
    the official code) or ``"cosine"`` (``lr`` annealed to 0 over all steps).
    """
    from tqdm.auto import tqdm

    multilabel = is_multilabel(train.labels)
    torch.manual_seed(seed)
    clf = networks.classifier(dataset, modality, num_outputs(train.labels), width, arch)
    clf = clf.to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(train)
    if schedule not in SCHEDULES:
        raise ValueError(f"classifier schedule must be one of {SCHEDULES}, got {schedule!r}")
    steps = epochs * -(-n // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if schedule == "cosine" else None
    clf.train()
    bar = tqdm(range(epochs), desc=f"classifier {modality}", disable=not progress, leave=False)
    for epoch in bar:
        # the chapter runner's live view (rate-limited; a no-op outside the runner)
        progress_mod.tick(f"[eval] {dataset} {modality} classifier: epoch {epoch + 1}/{epochs}")
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size].to(train.labels.device)
            x = train.batch(idx, (modality,))[modality].to(device)
            if shift and x.dim() == 4:  # images only (text is (B, length, alphabet))
                dy, dx = torch.randint(-shift, shift + 1, (2,), generator=gen).tolist()
                x = torch.roll(x, (dy, dx), (-2, -1))
            y = train.labels[idx].to(device)
            logits = clf(x)
            if multilabel:
                loss = F.binary_cross_entropy_with_logits(logits, y.float())
            else:
                loss = F.cross_entropy(logits, y.long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    return freeze(clf)


def freeze(clf: nn.Module) -> nn.Module:
    clf.eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    return clf


def load_or_train(
    dataset: str,
    train: TensorData,
    cache_dir: str | Path,
    *,
    epochs: int,
    lr: float = 1e-3,
    width: int = 128,
    n_train: int | None = None,
    device="cpu",
    seed: int = 0,
    log=print,
    progress: bool = False,
    arch: str = "official",
    shift: int = 0,
    schedule: str = "constant",
) -> dict[str, nn.Module]:
    """One frozen classifier per modality, from ``cache_dir`` or trained now and saved."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = train.subset(n_train)
    settings = {"epochs": epochs, "lr": lr, "width": width, "n_train": len(data), "seed": seed,
                "outputs": num_outputs(data.labels), "version": 1}  # fmt: skip
    if arch != "official" or shift:  # keys of earlier caches stay valid
        settings.update(arch=arch, shift=shift)
    if schedule != "constant":
        settings.update(schedule=schedule)
    if arch == "cnn":  # ClassifierCNN's layers changed in version 2: older files do not load
        settings.update(cnn_version=2)
    out = {}
    for m in data.modalities:
        path = cache_dir / f"{dataset}_{m}_{cache_key(dataset, m, data.data_id(), settings)}.pt"
        clf = networks.classifier(dataset, m, num_outputs(data.labels), width, arch)
        if path.is_file():
            clf.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            out[m] = freeze(clf.to(device))
            continue
        log(f"[eval] training the {m} classifier ({epochs} epochs on {len(data)} samples)")
        clf = train_classifier(dataset, m, data, epochs=epochs, lr=lr, width=width,
                               device=device, seed=seed, progress=progress, arch=arch,
                               shift=shift, schedule=schedule)  # fmt: skip
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({k: v.cpu() for k, v in clf.state_dict().items()}, tmp)
        os.replace(tmp, path)
        out[m] = clf
    return out


@torch.no_grad()
def predict(clf: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits for x (N, ...), in chunks; the classifier stays in eval mode."""
    clf.eval()
    return torch.cat([clf(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
