"""Datasets of the paper, loaded from directories that ``python -m data_prep`` prepared.

Three multimodal datasets, each returning ``(dict modality name -> float tensor, label)``:

- :class:`PolyMNIST`: five 3x28x28 image modalities ``m0..m4``, label an ``int`` digit.
- :class:`MnistSvhnText`: ``mnist`` (1x28x28), ``svhn`` (3x32x32), ``text`` (8 x 71 one-hot),
  label an ``int`` digit.
- :class:`BimodalCelebA`: ``img`` (3x64x64), ``text`` (256 x 71 one-hot), label a float tensor of
  0/1 attributes (40 for the real CelebA, fewer for the stand-in), see ``attribute_names``.
- :class:`CubCaptions`: ``img`` (3x64x64) and ``sent`` (32 words one-hot over the vocabulary),
  one sample per caption; label the image's class (real CUB) or its attributes (the stand-in).

Everything is held in memory as uint8 tensors (images) and uint8 character indices (text);
``__getitem__`` converts one item to the model format, ``tensors()`` returns the whole split in
storage format so a trainer can move it to a GPU once and convert batches there with
``decode()``. Offline preparations may contain *stand-ins* (procedurally rendered SVHN-like digits,
CelebA-like faces); ``stand_in`` and ``comparable_to_paper`` say so, and ``require_real=True``
refuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "ALPHABET",
    "BimodalCelebA",
    "CubCaptions",
    "CELEBA_ATTRIBUTES",
    "CELEBA_TEXT_LENGTH",
    "DIGIT_WORDS",
    "DatasetNotPreparedError",
    "FORMAT_VERSION",
    "MST_TEXT_LENGTH",
    "MnistSvhnText",
    "PolyMNIST",
    "decode_text",
    "encode_text",
    "one_hot_text",
    "sha256_file",
]

# The character set of the official ``alphabet.json`` (MoPoE / mmJSD), in its order: a-z, 0-9,
# 33 punctuation characters, space and newline, 71 entries. The official file lists "-" twice
# (indices 36 and 59); encoding uses the first occurrence (as the official ``str.find`` does),
# so index 59 is never hot. It is kept so the one-hot width stays 71 as in the released networks.
# '*' (index 56) is the CelebA padding character, so no extension is needed.
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"\\/|_@#$%^&*~`+-=<>()[]{} \n"
assert len(ALPHABET) == 71
_CHAR_INDEX = {c: ALPHABET.index(c) for c in ALPHABET}

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MST_TEXT_LENGTH = 8
CELEBA_TEXT_LENGTH = 256

# The 40 attributes of ``list_attr_celeba.txt``, in file order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

# Layout of a prepared directory: ROOT/<DIRS[name]>/manifest.json plus .npy files.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DIRS = {"polymnist": "polymnist", "mnist_svhn_text": "mnist_svhn_text", "celeba": "celeba",
        "cub": "cub"}  # fmt: skip


def encode_text(text: str, length: int | None = None) -> np.ndarray:
    """Character indices into :data:`ALPHABET` (uint8); every character must be in it."""
    if length is not None and len(text) != length:
        raise ValueError(f"text must have exactly {length} characters, got {len(text)}: {text!r}")
    try:
        return np.array([_CHAR_INDEX[c] for c in text], dtype=np.uint8)
    except KeyError as err:
        raise ValueError(f"character {err.args[0]!r} of {text!r} is not in ALPHABET") from None


def one_hot_text(indices: torch.Tensor) -> torch.Tensor:
    """(..., L) character indices -> (..., L, 71) float one-hot, as the official ``one_hot_encode``."""
    return torch.nn.functional.one_hot(indices.long(), len(ALPHABET)).float()


def decode_text(x: torch.Tensor | np.ndarray) -> str:
    """Inverse of the encoding: (L,) indices or (L, 71) one-hot/probabilities -> string (argmax)."""
    x = torch.as_tensor(x)
    if x.ndim == 2:
        x = x.argmax(dim=-1)
    return "".join(ALPHABET[int(i)] for i in x)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class DatasetNotPreparedError(FileNotFoundError):
    """The prepared directory is missing, incomplete or from another format version."""


class _Prepared(Dataset):
    """Common part: manifest checks, uint8 storage, model-format conversion."""

    dataset_name: str = ""
    modalities: tuple[str, ...] = ()
    _text_modalities: frozenset[str] = frozenset()

    def __init__(self, root, split, require_real, verify):
        self.root = Path(root)
        self.dir = self.root / DIRS[self.dataset_name]
        self.manifest = _read_manifest(self.dir, self.root, self.dataset_name, verify)
        splits = self.manifest["splits"]
        if split not in splits:
            raise ValueError(f"split must be one of {sorted(splits)} for {self.dir}, got {split!r}")
        self.split = split
        self.stand_in = bool(self.manifest["stand_in"])
        self.comparable_to_paper = bool(self.manifest["comparable_to_paper"])
        self.source = self.manifest["source"]
        self.description = self.manifest["description"]
        if require_real and self.stand_in:
            raise ValueError(
                f"{self.dir} holds a stand-in ({self.description}); real data was required. "
                f"Prepare it with: {_command(self.dataset_name, self.root, real=True)}"
            )

    def _load(self, name: str) -> torch.Tensor:
        path = self.dir / f"{self.split}_{name}.npy"
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (ValueError, OSError, EOFError) as err:  # a damaged header or body
            raise DatasetNotPreparedError(
                f"{path} cannot be read as a .npy array ({err}); prepare again with: "
                f"{_command(self.dataset_name, self.root)} --force"
            ) from None

    def decode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Storage format -> model format: images uint8 -> float in [0, 1], text -> one-hot."""
        return {
            k: one_hot_text(v) if k in self._text_modalities else v.float().div_(255.0)
            for k, v in batch.items()
        }

    def __repr__(self) -> str:
        kind = "STAND-IN, " if self.stand_in else ""
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, {kind}"
            f"source={self.source!r}, dir={str(self.dir)!r})"
        )


class PolyMNIST(_Prepared):
    """PolyMNIST tuples: ``({"m0": 3x28x28, ..., "m4": ...}, digit)``.

    ``modalities`` selects a subset (in the given order), e.g. ``("m0", "m1")``.
    """

    dataset_name = "polymnist"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        modalities: Sequence[str] | None = None,
        require_real: bool = False,
        verify: bool = False,
    ):
        super().__init__(root, split, require_real, verify)
        available = tuple(self.manifest["modalities"])
        chosen = tuple(modalities) if modalities is not None else available
        unknown = [m for m in chosen if m not in available]
        if unknown or not chosen:
            raise ValueError(f"modalities must be a non-empty subset of {available}, got {chosen}")
        self.modalities = chosen
        self.num_classes = 10
        self.data = {m: self._load(m) for m in chosen}
        self.labels = self._load("labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.decode({m: x[i] for m, x in self.data.items()}), int(self.labels[i])

    def tensors(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """All tuples in storage format: ``({m: (N, 3, 28, 28) uint8}, (N,) int64)``."""
        return dict(self.data), self.labels


class MnistSvhnText(_Prepared):
    """MNIST-SVHN-Text triples ``({"mnist", "svhn", "text"}, digit)``.

    The label-matched pairing (with its data multiplications) and the text offsets were drawn
    once at preparation and are read from disk, so every construction sees the same triples.
    Unique images are stored once; ``pairs`` holds the (mnist, svhn) row of each triple.
    """

    dataset_name = "mnist_svhn_text"
    modalities = ("mnist", "svhn", "text")
    _text_modalities = frozenset({"text"})

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        require_real: bool = False,
        verify: bool = False,
    ):
        super().__init__(root, split, require_real, verify)
        self.num_classes = 10
        self.mnist = self._load("mnist")
        self.mnist_labels = self._load("mnist_labels")
        self.svhn = self._load("svhn")
        self.svhn_labels = self._load("svhn_labels")
        self.pairs = self._load("pairs")
        self.text = self._load("text")
        self.labels = self._load("labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        m, s = self.pairs[i]
        item = {"mnist": self.mnist[m], "svhn": self.svhn[s], "text": self.text[i]}
        return self.decode(item), int(self.labels[i])

    def tensors(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """All triples in storage format (images uint8, text (N, 8) character indices).

        This materializes the pairing: about 3.9 kB per triple (4.3 GB for the full paper
        training set). ``unimodal_tensors`` plus ``pairs`` is the memory-light alternative.
        """
        data = {"mnist": self.mnist[self.pairs[:, 0]], "svhn": self.svhn[self.pairs[:, 1]]}
        data["text"] = self.text
        return data, self.labels

    def unimodal_tensors(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The unique images of one modality and their labels (e.g. to train a classifier)."""
        if modality == "mnist":
            return self.mnist, self.mnist_labels
        if modality == "svhn":
            return self.svhn, self.svhn_labels
        raise ValueError(f"modality must be 'mnist' or 'svhn', got {modality!r}")


class BimodalCelebA(_Prepared):
    """Bimodal CelebA: ``({"img": 3x64x64, "text": 256 x 71}, attributes)``.

    ``attributes`` is a float 0/1 tensor over ``attribute_names`` (40 for the real CelebA; the
    stand-in covers only the attributes its renderer controls).
    """

    dataset_name = "celeba"
    modalities = ("img", "text")
    _text_modalities = frozenset({"text"})

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        require_real: bool = False,
        verify: bool = False,
    ):
        super().__init__(root, split, require_real, verify)
        self.attribute_names = tuple(self.manifest["attribute_names"])
        self.img = self._load("img")
        self.text = self._load("text")
        self.labels = self._load("attributes")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.decode({"img": self.img[i], "text": self.text[i]}), self.labels[i].float()

    def tensors(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``({"img": (N, 3, 64, 64) uint8, "text": (N, 256) uint8}, (N, K) uint8 0/1)``."""
        return {"img": self.img, "text": self.text}, self.labels


class CubCaptions(_Prepared):
    """CUB image-caption pairs: ``({"img": 3x64x64, "sent": 32 x V one-hot words}, label)``.

    One sample per caption, ten per image (caption ``i`` with image ``i // 10``), as Shi et
    al. train. ``words`` is the vocabulary (``<exc>`` 0, ``<pad>`` 1, ``<eos>`` 2, ...), and
    :meth:`caption` turns indices back into text. The label is the image's class (real CUB)
    or its attributes (the stand-in; ``attribute_names``, ``attribute_values``).
    """

    dataset_name = "cub"
    modalities = ("img", "sent")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        require_real: bool = False,
        verify: bool = False,
    ):
        super().__init__(root, split, require_real, verify)
        self.words = tuple(self.manifest["vocabulary"])
        self.per_image = int(self.manifest["captions_per_image"])
        self.attribute_names = tuple(self.manifest.get("attribute_names") or ())
        values = self.manifest.get("attribute_values") or {}  # JSON keys come back sorted
        self.attribute_values = {a: tuple(values[a]) for a in self.attribute_names}
        self.img = self._load("img")
        self.captions = self._load("captions")
        self.lengths = self._load("lengths")
        self.image_labels = self._load("labels")
        self.features = self._load("features") if self.manifest.get("features") else None
        self.image_index = torch.arange(len(self.captions)) // self.per_image

    def __len__(self) -> int:
        return len(self.captions)

    def decode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Storage -> model format: images uint8 -> float in [0, 1], words -> one-hot over
        the vocabulary (32, V) float, like the library's other text; features as they are."""
        v = len(self.words)
        return {k: torch.nn.functional.one_hot(t.long(), v).float() if k == "sent"
                else t.float() if k == "feat" else t.float().div_(255.0)
                for k, t in batch.items()}  # fmt: skip

    def __getitem__(self, i: int):
        j = int(self.image_index[i])
        x = self.decode({"img": self.img[j], "sent": self.captions[i]})
        return x, self.image_labels[j].long()

    def caption(self, ids) -> str:
        """Word indices (32,) or one-hot (32, V) -> the caption up to its first ``<eos>``."""
        from .captions import to_text

        return to_text(ids, self.words)

    def tensors(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``({"img": (N_img, 3, 64, 64) uint8, "sent": (N, 32) int16[, "feat": (N_img,
        2048) float32]}, labels of the N captions)``; ``image_index`` (N,) maps each caption
        to its image row (of ``img`` and ``feat``)."""
        data = {"img": self.img, "sent": self.captions}
        if self.features is not None:
            data["feat"] = self.features
        return data, self.image_labels[self.image_index]


def _command(dataset: str, root: Path, real: bool = False) -> str:
    command = f"python -m data_prep {dataset} --root {root}"
    if real:
        source = "official" if dataset == "polymnist" else "real"
        command += f" --source {source} --source-dir DIR"
    return command


def _read_manifest(directory: Path, root: Path, dataset: str, verify: bool) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise DatasetNotPreparedError(
            f"{dataset} is not prepared: {path} does not exist. "
            f"Run: {_command(dataset, root)}  (offline; see `python -m data_prep --help` "
            "for the real data)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetNotPreparedError(
            f"{path} is not valid JSON ({err}); the preparation was damaged. Prepare again "
            f"with: {_command(dataset, root)} --force"
        ) from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format_version") != FORMAT_VERSION
        or manifest.get("dataset") != dataset
    ):
        raise DatasetNotPreparedError(
            f"{path} is not a format-{FORMAT_VERSION} {dataset} manifest; prepare again with: "
            f"{_command(dataset, root)} --force"
        )
    _check_files(directory, manifest["files"].items(), verify, dataset, root)
    return manifest


def _check_files(directory: Path, files: Iterable, verify: bool, dataset: str, root: Path):
    for name, info in files:
        f = directory / name
        problem = None
        if not f.is_file():
            problem = "is missing"
        elif f.stat().st_size != info["bytes"]:
            problem = f"has {f.stat().st_size} bytes, the manifest says {info['bytes']}"
        elif verify and sha256_file(f) != info["sha256"]:
            problem = "does not match its sha256 in the manifest"
        if problem:
            raise DatasetNotPreparedError(
                f"{f} {problem}; prepare again with: {_command(dataset, root)} --force"
            )
