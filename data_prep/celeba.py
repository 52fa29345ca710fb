"""Bimodal CelebA (paper, Appendix E.1; Sutter et al. 2020): a face image and its attribute text.

Image: centre crop 148x148, bicubic resize to 64x64, RGB (as the official transform).

Text (as mmJSD's ``mainPreprocessLabelsToTextCelebA.py`` with random start, no shuffle): the
names of the positive attributes in file order, joined with ", "; trailing attributes are
dropped while the string is longer than 256; underscores become spaces and the string is
lowercased; if shorter than 255 it starts at a random offset uniform in 0..254-len, '*' fills
the rest on both sides up to exactly 256 characters ('*' is in the official alphabet). The
offset is drawn from ``--seed`` at preparation and saved.

Sources: ``real`` reads ``img_align_celeba/*.jpg``, ``list_attr_celeba.txt`` and
``list_eval_partition.txt`` (0 train, 1 valid, 2 test) from ``--source-dir`` (or its ``celeba/``
subfolder, torchvision's layout); ``offline`` (default) renders the
:class:`~data_prep.synthetic_celeba.SyntheticCelebA` STAND-IN (10,000 / 1,000 / 2,000).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mopoe_lib.datasets import CELEBA_TEXT_LENGTH, encode_text

from .common import DataPrepError, Writer, already_prepared, map_chunks, progress, rng
from .synthetic_celeba import SyntheticCelebA

SPLITS = ("train", "valid", "test")
OFFLINE_SIZES = {"train": 10_000, "valid": 1_000, "test": 2_000}
HOW_TO_GET = (
    "Get CelebA (Align&Cropped images, attribute and partition lists) from "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html or with "
    "torchvision.datasets.CelebA(DIR, download=True), which writes DIR/celeba/."
)


def attribute_text(positive: list[str], g: np.random.Generator, length=CELEBA_TEXT_LENGTH) -> str:
    """The official attribute string of one face (``positive``: names in file order)."""
    names = list(positive)
    text = ", ".join(names)
    while len(text) > length:
        names = names[:-1]
        text = ", ".join(names)
    text = text.replace("_", " ").lower()
    start = 0
    if len(text) < length - 1:
        start = int(g.integers(0, length - 1 - len(text)))  # as np.random.randint(0, 255 - len)
    return "*" * start + text + "*" * (length - len(text) - start)


def texts_for(attributes: np.ndarray, names, g: np.random.Generator) -> np.ndarray:
    out = np.empty((len(attributes), CELEBA_TEXT_LENGTH), dtype=np.uint8)
    for i, row in enumerate(attributes):
        positive = [n for n, v in zip(names, row, strict=True) if v]
        out[i] = encode_text(attribute_text(positive, g), CELEBA_TEXT_LENGTH)
    return out


# --- real files -------------------------------------------------------------------------------


def _base(source_dir: Path) -> Path:
    if not (source_dir / "list_attr_celeba.txt").is_file() and (source_dir / "celeba").is_dir():
        return source_dir / "celeba"
    return source_dir


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataPrepError(f"missing file {path}. {HOW_TO_GET}")
    return path


def read_attributes(path: str | Path):
    """``list_attr_celeba.txt`` -> (file names, attribute names, (N, 40) uint8 0/1)."""
    path = _need(Path(path))
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataPrepError(f"{path}: the first line must be the number of images")
    count, names = int(lines[0]), lines[1].split()
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise DataPrepError(f"{path}: header says {count} images, found {len(rows)} rows")
    files, values = [], []
    for k, row in enumerate(rows):
        if len(row) != len(names) + 1 or any(v not in ("1", "-1") for v in row[1:]):
            raise DataPrepError(
                f"{path}, line {k + 3}: expected a file name and {len(names)} values of 1/-1, "
                f"got {len(row)} fields: {' '.join(row[:6])} ..."
            )
        files.append(row[0])
        values.append([v == "1" for v in row[1:]])
    return files, names, np.array(values, dtype=np.uint8).reshape(len(rows), len(names))


def read_partition(path: str | Path) -> dict[str, int]:
    path = _need(Path(path))
    out = {}
    for k, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataPrepError(f"{path}, line {k + 1}: expected '<file> <0|1|2>', got {line!r}")
        out[fields[0]] = int(fields[1])
    return out


def load_image(path: Path) -> np.ndarray:
    """Centre crop 148, bicubic resize to 64 -> (3, 64, 64) uint8 (torchvision's CenterCrop)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            if min(w, h) < 148:
                raise DataPrepError(f"{path} is {w}x{h}, smaller than the 148x148 centre crop")
            left, top = int(round((w - 148) / 2)), int(round((h - 148) / 2))
            im = im.crop((left, top, left + 148, top + 148)).resize((64, 64), Image.BICUBIC)
            return np.asarray(im).transpose(2, 0, 1)
    except OSError as err:
        raise DataPrepError(f"cannot read image {path}: {err}") from err


def _load_images(paths: list[Path]) -> np.ndarray:
    return np.stack([load_image(p) for p in paths])


def read_real(source_dir, limits, workers, quiet):
    base = _base(Path(source_dir))
    files, names, values = read_attributes(base / "list_attr_celeba.txt")
    partition = read_partition(base / "list_eval_partition.txt")
    image_dir = base / "img_align_celeba"
    if not image_dir.is_dir():
        raise DataPrepError(f"missing folder {image_dir}. {HOW_TO_GET}")
    unlisted = [f for f in files if f not in partition]
    if unlisted:
        raise DataPrepError(f"{base / 'list_eval_partition.txt'} lacks {unlisted[:3]} ...")
    out = {}
    for code, split in enumerate(SPLITS):
        rows = [k for k, f in enumerate(files) if partition[f] == code][: limits.get(split)]
        paths = [image_dir / files[k] for k in rows]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise DataPrepError(
                f"{len(missing)} image(s) of the {split} split are missing from {image_dir}, "
                f"e.g. {', '.join(missing[:3])}. {HOW_TO_GET}"
            )
        chunks = [paths[s : s + 1000] for s in range(0, len(paths), 1000)]
        images = map_chunks(_load_images, chunks, workers, quiet, f"CelebA {split}")
        images = np.concatenate(images) if images else np.empty((0, 3, 64, 64), np.uint8)
        ids = np.array([files[k] for k in rows], dtype="S32")
        out[split] = (images, values[rows], ids)
    return names, out


# --- entry point ------------------------------------------------------------------------------


def prepare(
    root,
    source="offline",
    seed=0,
    n_train=None,
    n_valid=None,
    n_test=None,
    source_dir=None,
    workers=1,
    quiet=False,
    force=False,
):
    root = Path(root)
    if source not in ("offline", "real"):
        raise DataPrepError(f"CelebA --source must be offline or real, not {source}")
    if source == "real" and source_dir is None:
        raise DataPrepError("--source real needs --source-dir DIR (the CelebA files)")
    given = {"train": n_train, "valid": n_valid, "test": n_test}
    if source == "offline":
        n = {s: given[s] or OFFLINE_SIZES[s] for s in SPLITS}
    else:
        n = {s: v for s, v in given.items() if v}  # real: optional caps (first n of a split)
    args = {"source": source, "seed": seed, "n": n}
    if already_prepared(root, "celeba", args, force, quiet):
        return root / "celeba"

    writer = Writer(root, "celeba")
    try:
        if source == "offline":
            gen = SyntheticCelebA(seed)
            names = list(gen.attribute_names)
            data = {s: (*gen.generate(s, n[s], workers, quiet), None) for s in SPLITS}
        else:
            names, data = read_real(source_dir, n, workers, quiet)
        sizes = {}
        for split in progress(SPLITS, quiet, desc="CelebA text", unit="split"):
            images, attributes, ids = data[split]
            writer.save(f"{split}_img.npy", images)
            writer.save(f"{split}_attributes.npy", attributes)
            writer.save(
                f"{split}_text.npy", texts_for(attributes, names, rng(seed, "celeba-text", split))
            )
            if ids is not None:
                writer.save(f"{split}_image_ids.npy", ids)
            sizes[split] = len(attributes)
        stand_in = source == "offline"
        manifest = {
            "dataset": "celeba",
            "source": source,
            "args": args,
            "seed": seed,
            "stand_in": stand_in,
            "comparable_to_paper": not stand_in and not n,
            "modalities": ["img", "text"],
            "attribute_names": names,
            "splits": sizes,
            "description": (
                f"SyntheticCelebA, a STAND-IN for CelebA: procedurally drawn 64x64 cartoon faces "
                f"with {len(names)} of CelebA's 40 attributes (those the renderer controls); "
                "not comparable to published numbers."
                if stand_in
                else "Bimodal CelebA from the real files (crop 148, bicubic 64, attribute text)."
            ),
        }
        return writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
