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
    """The requested data cannot be loaded or used (not prepared, corrupt, a stand-in where
    real was required, or tensors that do not fit the model)."""


def _identity(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


@dataclass
class TensorData:
    """A whole split as tensors: ``data[m]`` (N_m, ...), ``labels`` (N, ...).

    ``rows[m]`` (N,), when given, maps sample i to row ``rows[m][i]`` of ``data[m]``, so
    unique images are stored once (MNIST-SVHN-Text pairs). ``info`` describes the source
    (``source``, ``stand_in``, ``description``, ``manifest_id``, ...). ``mask`` (N, M) bool,
    when given, marks which modalities (in the order of ``data``) each sample has; the
    values of a missing modality are never read by the model (see :func:`drop_modalities`).
    """

    data: dict[str, torch.Tensor]
    labels: torch.Tensor
    decode: Callable[[dict], dict] = _identity
    info: dict = field(default_factory=dict)
    rows: dict[str, torch.Tensor] = field(default_factory=dict)
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.data)

    def batch(self, idx: torch.Tensor, modalities=None) -> dict[str, torch.Tensor]:
        """Samples ``idx`` in model format (float tensors), optionally of some modalities."""
        if modalities is not None:
            unknown = [m for m in modalities if m not in self.data]
            if unknown:
                raise DataError(f"unknown modalities {unknown}; this data holds {list(self.data)}")
        out = {}
        for m, t in self.data.items():
            if modalities is not None and m not in modalities:
                continue
            r = self.rows.get(m)
            out[m] = t[idx if r is None else r[idx]]
        return self.decode(out)

    def batch_mask(self, idx: torch.Tensor) -> torch.Tensor | None:
        """The (B, M) presence mask of samples ``idx`` (None when every sample is complete)."""
        return None if self.mask is None else self.mask[idx]

    def to(self, device) -> TensorData:
        move = {m: t.to(device) for m, t in self.data.items()}
        rows = {m: r.to(device) for m, r in self.rows.items()}
        mask = None if self.mask is None else self.mask.to(device)
        return TensorData(move, self.labels.to(device), self.decode, self.info, rows, mask)

    def select(self, modalities) -> TensorData:
        """The same samples restricted to ``modalities`` (e.g. MNIST-SVHN out of MNIST-SVHN-Text)."""
        modalities = tuple(modalities)
        unknown = [m for m in modalities if m not in self.data]
        if unknown:
            raise DataError(f"unknown modalities {unknown}; this data holds {list(self.data)}")
        if modalities == self.modalities:
            return self
        data = {m: self.data[m] for m in modalities}
        rows = {m: r for m, r in self.rows.items() if m in modalities}
        mask = None
        if self.mask is not None:
            cols = [self.modalities.index(m) for m in modalities]
            mask = self.mask[:, cols]
        info = dict(self.info, modalities=list(modalities))
        return TensorData(data, self.labels, self.decode, info, rows, mask)

    def subset(self, n: int | None) -> TensorData:
        """The first n samples (all when n is None or larger)."""
        if n is None or n >= len(self):
            return self
        mask = None if self.mask is None else self.mask[:n]
        if self.rows:
            rows = {m: r[:n] for m, r in self.rows.items()}
            data = {m: t if m in rows else t[:n] for m, t in self.data.items()}
            return TensorData(data, self.labels[:n], self.decode, self.info, rows, mask)
        data = {m: t[:n] for m, t in self.data.items()}
        return TensorData(data, self.labels[:n], self.decode, self.info, mask=mask)

    def data_id(self) -> str:
        """The manifest id (with the data order, if any) when known, else a hash of the
        tensors (synthetic data); a presence mask is part of the id."""
        if self.info.get("manifest_id"):
            order = self.info.get("order")
            base = self.info["manifest_id"] + (f"-{order}" if order else "")
            if self.mask is None:
                return base
        h = hashlib.sha256()
        if self.info.get("manifest_id"):
            h.update(base.encode())
        else:
            for m in sorted(self.data):
                h.update(m.encode())
                h.update(self.data[m].detach().cpu().contiguous().numpy().tobytes())
            h.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
        if self.mask is not None:
            h.update(b"mask")
            h.update(self.mask.detach().cpu().contiguous().numpy().tobytes())
            return "masked-" + h.hexdigest()[:16]
        return "tensors-" + h.hexdigest()[:16]


def from_tensors(
    data: dict[str, torch.Tensor], labels: torch.Tensor, mask: torch.Tensor | None = None, **info
) -> TensorData:
    """Wrap in-memory model-format tensors (tests, notebooks); ``mask`` as in TensorData."""
    info = dict(info, source="tensors", stand_in=False)
    return TensorData(dict(data), labels, _identity, info, mask=mask)


def missing_mask(n: int, num_modalities: int, missing_ratio: float, seed: int = 0) -> torch.Tensor:
    """A (n, M) presence mask: each modality of each sample is missing independently with
    probability ``missing_ratio``, and a sample that would lose every modality keeps one
    chosen uniformly. Drawn once from its own seeded generator (the same for every call
    with the same arguments, whatever the global RNG)."""
    if not 0.0 <= missing_ratio < 1.0:
        raise ValueError(f"missing_ratio must be in [0, 1), got {missing_ratio!r}")
    if num_modalities < 1:
        raise ValueError(f"num_modalities must be >= 1, got {num_modalities}")
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, num_modalities, generator=g) >= missing_ratio
    keep = torch.randint(num_modalities, (n,), generator=g)
    empty = ~mask.any(1)
    mask[empty, keep[empty]] = True
    return mask


def drop_modalities(data: TensorData, missing_ratio: float, seed: int = 0) -> TensorData:
    """``data`` with a share of its modalities removed per sample (see :func:`missing_mask`).

    The tensors are shared, not copied; the returned data carries the mask, which the
    trainer passes with every batch to ``model.objective(x, mask)`` and the evaluation to
    the posteriors. A mask already present is combined (a modality stays missing).

    >>> d = from_tensors({"a": torch.zeros(4, 2), "b": torch.ones(4, 2)}, torch.zeros(4))
    >>> drop_modalities(d, 0.5, seed=1).mask.any(1).all().item()
    True
    """
    mask = missing_mask(len(data), len(data.data), missing_ratio, seed).to(data.labels.device)
    if data.mask is not None:
        mask &= data.mask
        mask[~mask.any(1)] = data.mask[~mask.any(1)]
    info = dict(data.info, missing_ratio=missing_ratio, missing_seed=seed)
    return TensorData(data.data, data.labels, data.decode, info, data.rows, mask)


def validate(data: TensorData, modalities, shapes: dict, dtype=torch.float32) -> None:
    """Check, once per dataset, that ``data`` fits a model with ``modalities`` whose inputs
    have ``shapes`` (per sample) and ``dtype``; raises :class:`DataError` saying what is wrong
    and how to fix it. Checks: the modality names, sample counts, real (not meta) devices,
    the model-format shape and dtype of one decoded sample, and that no present value is NaN
    or infinite (a chunked pass over floating-point storage; integer storage cannot hold them).
    """
    names = list(data.data)
    if sorted(names) != sorted(modalities):
        missing = [m for m in modalities if m not in names]
        unknown = [m for m in names if m not in modalities]
        raise DataError(
            f"the data's modalities {names} do not match the model's {list(modalities)}"
            f" (missing {missing}, unknown {unknown}); name the tensors as the model's "
            "modalities (a sample that lacks one is marked in TensorData.mask)"
        )
    n = len(data)
    if n == 0:
        raise DataError("the data holds no samples")
    tensors = {
        **data.data,
        "labels": data.labels,
        **{f"rows[{m}]": r for m, r in data.rows.items()},
    }
    if data.mask is not None:
        tensors["mask"] = data.mask
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise DataError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type == "meta":
            raise DataError(
                f"{name} is a 'meta' tensor (shape only, no values); load the real data "
                "(e.g. tensor.to('cpu') from the source) before training"
            )
    for m, t in data.data.items():
        rows = data.rows.get(m)
        count = len(rows) if rows is not None else t.shape[0] if t.dim() else 0
        if count != n:
            raise DataError(
                f"modality {m!r} has {count} samples but there are {n} labels; every "
                "modality needs one entry per sample (or a rows index)"
            )
    if data.mask is not None:
        if data.mask.dtype != torch.bool or tuple(data.mask.shape) != (n, len(names)):
            raise DataError(
                f"mask must be a bool tensor of shape (N, M) = ({n}, {len(names)}), got "
                f"{data.mask.dtype} {tuple(data.mask.shape)}; build one with missing_mask"
            )
        empty = int((~data.mask.any(1)).sum())
        if empty:
            raise DataError(
                f"{empty} samples have no modality at all in the mask; keep at least one"
            )
    first = data.batch(torch.zeros(1, dtype=torch.long, device=data.labels.device))
    for m in modalities:
        x = first[m]
        if tuple(x.shape[1:]) != tuple(shapes[m]):
            raise DataError(
                f"modality {m!r}: a sample has shape {tuple(x.shape[1:])} in model format, "
                f"the model expects {tuple(shapes[m])}; reshape the tensors (N, "
                f"{', '.join(map(str, shapes[m]))}) or use the model of this dataset"
            )
        if x.dtype != dtype:
            raise DataError(
                f"modality {m!r} is {x.dtype} in model format but the model computes in "
                f"{dtype}; convert it (e.g. tensor.to({dtype}))"
            )
    for i, (m, t) in enumerate(data.data.items()):
        if not (t.is_floating_point() or t.is_complex()):
            continue
        present_rows = None
        if data.mask is not None:
            present = data.mask[:, i]
            rows = data.rows.get(m)
            present_rows = rows[present] if rows is not None else present.nonzero().squeeze(1)
        bad = _count_non_finite(t, present_rows)
        if bad:
            raise DataError(
                f"modality {m!r} holds {bad[0]} NaN or infinite values (first at sample "
                f"{bad[1]}); clean the data, or mark those samples' {m!r} as missing in "
                "TensorData.mask"
            )


def _count_non_finite(t: torch.Tensor, rows: torch.Tensor | None, chunk: int = 4096):
    """(count, first row) of non-finite values in rows of t (all rows when None), or None."""
    total, first = 0, None
    n = t.shape[0] if rows is None else len(rows)
    for start in range(0, n, chunk):
        part = t[start : start + chunk] if rows is None else t[rows[start : start + chunk]]
        bad_rows = ~torch.isfinite(part).reshape(len(part), -1).all(1)
        count = int(bad_rows.sum())
        if count:
            if first is None:
                local = int(bad_rows.nonzero()[0, 0])
                first = start + local if rows is None else int(rows[start + local])
            total += int((~torch.isfinite(part)).sum())
    return (total, first) if total else None


def cub_vocab_size(root: str | Path) -> int:
    """The number of words of the prepared CUB vocabulary under ``root`` (its manifest)."""
    path = Path(root) / "cub" / "manifest.json"
    try:
        return len(json.loads(path.read_text())["vocabulary"])
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"CUB is not prepared in {root} ({path}: {err}); the vocabulary size "
                        f"comes from it. Run: python -m data_prep cub --root {root} --source "
                        "real --source-dir DIR (or without --source for the offline stand-in)"
                        ) from None  # fmt: skip


def _dataset_class(name: str):
    from . import datasets  # written by data_prep's author; imported only when loading from disk

    return {
        "polymnist": datasets.PolyMNIST,
        "mnist_svhn_text": datasets.MnistSvhnText,
        "celeba": datasets.BimodalCelebA,
        "cub": datasets.CubCaptions,
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
    verify: bool = False,
    log=print,
) -> TensorData:
    """Load one split of a prepared dataset as :class:`TensorData` (storage format, CPU).

    If ``root`` lacks the dataset and ``prepare`` is a dict (not None), the offline data is
    prepared first at those sizes; ``info["prepared_now"]`` records it. With
    ``require_real`` nothing is prepared and stand-ins are refused. Files are checked
    against the manifest's sizes (a truncated file is refused); ``verify`` also checks
    their sha256. Every failure is a :class:`DataError` that names the file and the fix.
    """
    root = Path(root)
    prepared_now = False
    if not (root / name / "manifest.json").is_file() and prepare is not None and not require_real:
        prepare_offline(name, root, prepare, log)
        prepared_now = True
    try:
        ds = _dataset_class(name)(root, split=split, require_real=require_real, verify=verify)
    except (FileNotFoundError, ValueError) as err:  # not prepared, corrupt, stand-in refused
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
    elif name == "cub":  # one sample per caption; each image stored once (ten captions each)
        data, labels = ds.tensors()
        rows, order = {m: ds.image_index for m in data if m != "sent"}, None
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
    if name == "cub":
        info.update(vocabulary=list(ds.words), attribute_values=ds.attribute_values,
                    captions_per_image=ds.per_image)  # fmt: skip
    if ds.stand_in:
        log(f"[data] NOTE: {name} is a STAND-IN ({ds.description})")
    return TensorData(dict(data), labels, ds.decode, info, rows)
