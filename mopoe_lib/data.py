"""The one adapter between the prepared datasets and the trainer.

The trainer needs a :class:`TensorData`: per-modality tensors (N, ...) in storage format, the
labels, a ``decode`` that turns an indexed batch into model format (on whatever device the
tensors live), and a description of where the data came from. :func:`load` builds one from
:mod:`mopoe_lib.datasets` (prepared by ``python -m data_prep``), preparing the offline data at
a stated size when the root does not hold the dataset yet, and saying so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


class DataError(RuntimeError):
    """The requested data cannot be loaded (not prepared, or a stand-in where real was required)."""


def _identity(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


@dataclass
class TensorData:
    """A whole split as tensors: ``data[m]`` (N_m, ...), ``labels`` (N, ...).

    ``rows[m]`` (N,), when given, maps sample i to row ``rows[m][i]`` of ``data[m]``, so
    unique images are stored once (MNIST-SVHN-Text pairs). ``info`` describes the source
    (``source``, ``stand_in``, ``description``, ``manifest_id``, ...).
    """

    data: dict[str, torch.Tensor]
    labels: torch.Tensor
    decode: Callable[[dict], dict] = _identity
    info: dict = field(default_factory=dict)
    rows: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.data)

    def batch(self, idx: torch.Tensor, modalities=None) -> dict[str, torch.Tensor]:
        """Samples ``idx`` in model format (float tensors), optionally of some modalities."""
        out = {}
        for m, t in self.data.items():
            if modalities is not None and m not in modalities:
                continue
            r = self.rows.get(m)
            out[m] = t[idx if r is None else r[idx]]
        return self.decode(out)

    def to(self, device) -> TensorData:
        move = {m: t.to(device) for m, t in self.data.items()}
        rows = {m: r.to(device) for m, r in self.rows.items()}
        return TensorData(move, self.labels.to(device), self.decode, self.info, rows)

    def subset(self, n: int | None) -> TensorData:
        """The first n samples (all when n is None or larger)."""
        if n is None or n >= len(self):
            return self
        if self.rows:
            rows = {m: r[:n] for m, r in self.rows.items()}
            data = {m: t if m in rows else t[:n] for m, t in self.data.items()}
            return TensorData(data, self.labels[:n], self.decode, self.info, rows)
        data = {m: t[:n] for m, t in self.data.items()}
        return TensorData(data, self.labels[:n], self.decode, self.info)

    def data_id(self) -> str:
        """The manifest id when known, else a hash of the tensors (synthetic data)."""
        if self.info.get("manifest_id"):
            order = self.info.get("order")
            return self.info["manifest_id"] + (f"-{order}" if order else "")
        h = hashlib.sha256()
        for m in sorted(self.data):
            h.update(m.encode())
            h.update(self.data[m].detach().cpu().contiguous().numpy().tobytes())
        h.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
        return "tensors-" + h.hexdigest()[:16]


def from_tensors(data: dict[str, torch.Tensor], labels: torch.Tensor, **info) -> TensorData:
    """Wrap in-memory model-format tensors (tests, notebooks)."""
    return TensorData(dict(data), labels, _identity, dict(info, source="tensors", stand_in=False))


def _dataset_class(name: str):
    from . import datasets  # written by data_prep's author; imported only when loading from disk

    return {
        "polymnist": datasets.PolyMNIST,
        "mnist_svhn_text": datasets.MnistSvhnText,
        "celeba": datasets.BimodalCelebA,
    }[name]


def prepare_offline(name: str, root: str | Path, sizes: dict, log=print) -> None:
    """Prepare the offline data of ``name`` under ``root`` at ``sizes`` (announced)."""
    import importlib

    module = importlib.import_module(f"data_prep.{name}")
    described = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "default sizes"
    log(f"[data] {Path(root) / name} not found: preparing the OFFLINE {name} data ({described})")
    module.prepare(root, source="offline", quiet=True, **sizes)


def load(
    name: str,
    root: str | Path,
    split: str,
    *,
    prepare: dict | None = None,
    require_real: bool = False,
    log=print,
) -> TensorData:
    """Load one split of a prepared dataset as :class:`TensorData` (storage format, CPU).

    If ``root`` lacks the dataset and ``prepare`` is a dict (not None), the offline data is
    prepared first at those sizes; ``info["prepared_now"]`` records it. With
    ``require_real`` nothing is prepared and stand-ins are refused.
    """
    root = Path(root)
    prepared_now = False
    if not (root / name / "manifest.json").is_file() and prepare is not None and not require_real:
        prepare_offline(name, root, prepare, log)
        prepared_now = True
    try:
        ds = _dataset_class(name)(root, split=split, require_real=require_real)
    except (FileNotFoundError, ValueError) as err:  # DatasetNotPreparedError, stand-in refused
        raise DataError(str(err)) from err
    manifest_path = root / name / "manifest.json"
    manifest_id = hashlib.sha256(manifest_path.read_bytes()).hexdigest()[:16]
    if hasattr(ds, "pairs") and hasattr(ds, "unimodal_tensors"):
        # MNIST-SVHN-Text: keep unique images once and index them through the pairing.
        # The pairing is stored grouped by label (as rand_match_on_idx builds it), so a fixed
        # permutation makes the first n triples (TensorData.subset) a label-balanced random
        # sample rather than the lowest digits only.
        perm = torch.randperm(len(ds.labels), generator=torch.Generator().manual_seed(0))
        data = {"mnist": ds.mnist, "svhn": ds.svhn, "text": ds.text[perm]}
        pairs = ds.pairs.long()[perm]
        rows = {"mnist": pairs[:, 0], "svhn": pairs[:, 1]}
        labels = ds.labels[perm]
        order = "perm0"  # part of data_id: checkpoints and classifiers of the old order are stale
    else:
        data, labels = ds.tensors()
        rows, order = {}, None
    manifest = json.loads(manifest_path.read_text())
    info = {
        "dataset": name,
        "root": str(root),
        "split": split,
        "n": len(labels),
        "source": ds.source,
        "stand_in": ds.stand_in,
        "comparable_to_paper": ds.comparable_to_paper,
        "description": ds.description,
        "manifest_id": manifest_id,
        "order": order,
        "prepared_now": prepared_now,
        "prepare_args": manifest.get("args"),
        "attribute_names": list(getattr(ds, "attribute_names", []) or []),
    }
    if ds.stand_in:
        log(f"[data] NOTE: {name} is a STAND-IN ({ds.description})")
    return TensorData(dict(data), labels, ds.decode, info, rows)
