"""CUB-200-2011 images with the captions of Reed et al. (2016), as Shi et al. (2019) used them.

Real files (``--source real --source-dir DIR``): the folder of Shi et al.'s ``cub.zip``
(http://www.robots.ox.ac.uk/~yshi/mmdgm/datasets/cub.zip), ``DIR`` or ``DIR/cub``:

- ``text_trainvalclasses.txt`` and ``text_testclasses.txt``: ten captions per image, one per
  line, in the order of the images;
- ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``: the CUB-200-2011 images in torchvision's
  ``ImageFolder`` layout, split by class as Reed et al. (150 train+val classes, 50 test).

Images: ``ImageFolder`` order (class folders sorted, files sorted within each), RGB,
``Resize([64, 64])`` (bilinear), as Shi et al.'s pixel model; stored as uint8 (N, 3, 64, 64).
Caption ``i`` describes image ``i // 10`` (their ``resampler``).

Captions: lowercased and split into words and punctuation as nltk's ``word_tokenize`` splits
these captions (:func:`tokenize`). The vocabulary is built on the training captions as Shi et
al.'s ``CUBSentences``: ``<exc>`` 0, ``<pad>`` 1, ``<eos>`` 2, then every word seen more than
``MIN_OCC`` = 3 times (their ``occ > min_occ``), in order of first occurrence; other words
become ``<exc>``. A caption is its first 31 tokens, ``<eos>``, and ``<pad>`` up to 32.
One difference, stated: their code splits the whole file into sentences with nltk's
``sent_tokenize``, so a line holding two sentences becomes two captions and shifts the pairing
of every later caption; here one line is one caption (Reed et al.'s unit).

Image features: Shi et al. also model images as the 2048-d output of an ImageNet ResNet-101
(the image's shorter side resized to 224, no normalisation, the network without its last
layer), shown decoded by the nearest training feature. ``--features resnet101 --resnet-weights FILE`` computes them with the
torchvision ResNet-101 weights the user has (:data:`RESNET_WEIGHTS`); nothing is downloaded.

Offline (default): the :class:`~data_prep.synthetic_cub.SyntheticCUB` STAND-IN, procedurally
drawn birds whose attributes are known, with captions from a grammar.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from mopoe_lib.captions import EOS, EXC, PAD

from .common import DataPrepError, Writer, already_prepared, map_chunks, progress
from .synthetic_cub import SyntheticCUB

SPLITS = ("train", "test")
TEXT_FILES = {"train": "text_trainvalclasses.txt", "test": "text_testclasses.txt"}
CAPTIONS_PER_IMAGE = 10
MAX_LENGTH = 32
MIN_OCC = 3
SPECIAL = ("<exc>", "<pad>", "<eos>")  # indices EXC, PAD, EOS of mopoe_lib.captions
IMAGE_SIZE = 64
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
OFFLINE_SIZES = {"train": 2000, "test": 500}
HOW_TO_GET = (
    "Get Shi et al.'s CUB folder (CUB-200-2011 images split by class, with Reed et al.'s "
    "captions) from http://www.robots.ox.ac.uk/~yshi/mmdgm/datasets/cub.zip and unzip it; "
    "pass the folder that holds cub/ (or cub/ itself) as --source-dir."
)
RESNET_WEIGHTS = (
    "torchvision's ImageNet ResNet-101 weights (resnet101-63fe2227.pth from "
    "https://download.pytorch.org/models/resnet101-63fe2227.pth, or any state dict of "
    "torchvision.models.resnet101)"
)

# nltk's word_tokenize on CUB's captions: words (with inner hyphens), the clitics 's, 're,
# 've, 'll, 'd, 'm and n't split off the word before them, and every other character that is
# not a letter, digit or space a token of its own.
_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?=n't)|n't|'(?:s|re|ve|ll|d|m)\b|"
                    r"[a-z0-9]+(?:-[a-z0-9]+)*|[^\sa-z0-9]")  # fmt: skip


def tokenize(line: str) -> list[str]:
    """One caption -> lowercased tokens (see the module docstring)."""
    return _TOKEN.findall(line.lower())


def build_vocabulary(captions: list[list[str]], min_occ: int = MIN_OCC) -> list[str]:
    """The index -> word list: the special tokens, then the words seen more than ``min_occ``
    times, in order of first occurrence."""
    counts = Counter(t for tokens in captions for t in tokens)
    seen = dict.fromkeys(t for tokens in captions for t in tokens)  # first-occurrence order
    return [*SPECIAL, *(w for w in seen if counts[w] > min_occ and w not in SPECIAL)]


def encode_captions(captions: list[list[str]], words: list[str], length: int = MAX_LENGTH):
    """Token lists -> (N, length) int16 word indices (``<eos>``, ``<pad>``, ``<exc>``) and
    the (N,) lengths including ``<eos>``."""
    index = {w: i for i, w in enumerate(words)}
    out = np.full((len(captions), length), PAD, dtype=np.int16)
    lengths = np.empty(len(captions), dtype=np.int16)
    for i, tokens in enumerate(captions):
        ids = [index.get(t, EXC) for t in tokens[: length - 1]] + [EOS]
        out[i, : len(ids)] = ids
        lengths[i] = len(ids)
    return out, lengths


# --- real files -------------------------------------------------------------------------------


def _base(source_dir: Path) -> Path:
    if not (source_dir / TEXT_FILES["train"]).is_file() and (source_dir / "cub").is_dir():
        return source_dir / "cub"
    return source_dir


def image_folder(directory: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """torchvision ``ImageFolder``'s order: (files, class index per file, class names)."""
    if not directory.is_dir():
        raise DataPrepError(f"missing folder {directory} (one subfolder per class). {HOW_TO_GET}")
    classes = sorted(d.name for d in directory.iterdir() if d.is_dir())
    if not classes:
        raise DataPrepError(f"{directory} holds no class folders. {HOW_TO_GET}")
    files, labels = [], []
    for c, name in enumerate(classes):
        for p in sorted((directory / name).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(p)
                labels.append(c)
    return files, np.array(labels, dtype=np.int16), classes


def load_image(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB, bilinear resize to size x size (torchvision's Resize([size, size]) on PIL)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(im).transpose(2, 0, 1)
    except OSError as err:
        raise DataPrepError(f"cannot read image {path}: {err}") from err


def _load_images(paths: list[Path]) -> np.ndarray:
    return np.stack([load_image(p) for p in paths])


def read_real(source_dir, limits: dict, workers: int, quiet: bool):
    """{split: (images, class labels, token lists, files)}, class names; ``limits``: the
    first n images of a split (and their captions)."""
    base = _base(Path(source_dir))
    missing = [base / f for f in TEXT_FILES.values() if not (base / f).is_file()]
    missing += [base / s for s in SPLITS if not (base / s).is_dir()]
    if missing:
        raise DataPrepError("missing " + ", ".join(str(m) for m in missing) + f". {HOW_TO_GET}")
    out, class_names = {}, {}
    for split in SPLITS:
        files, labels, classes = image_folder(base / split)
        lines = [x for x in (base / TEXT_FILES[split]).read_text().splitlines() if x.strip()]
        if len(lines) != CAPTIONS_PER_IMAGE * len(files):
            raise DataPrepError(
                f"{base / TEXT_FILES[split]} has {len(lines)} captions for the {len(files)} "
                f"images of {base / split}; Shi et al.'s files hold exactly "
                f"{CAPTIONS_PER_IMAGE} per image, in the images' order. {HOW_TO_GET}"
            )
        n = limits.get(split) or len(files)
        files, labels = files[:n], labels[:n]
        chunks = [files[s : s + 500] for s in range(0, len(files), 500)]
        images = map_chunks(_load_images, chunks, workers, quiet, f"CUB {split}")
        images = np.concatenate(images) if images else np.empty((0, 3, 64, 64), np.uint8)
        captions = [tokenize(x) for x in lines[: CAPTIONS_PER_IMAGE * n]]
        out[split] = (images, labels, captions, files)
        class_names[split] = classes
    return out, class_names


def _shorter_side(im: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) for an int: the shorter side to ``size``, bilinear."""
    w, h = im.size
    if w <= h:
        return im.resize((size, int(size * h / w)), Image.BILINEAR)
    return im.resize((int(size * w / h), size), Image.BILINEAR)


def resnet_features(files: list[Path], weights: str | Path, quiet: bool = True) -> np.ndarray:
    """(N, 2048) float32 image features as Shi et al. computed them: each image file
    resized so that its shorter side is 224 (bilinear), scaled to [0, 1] without
    normalisation, through an ImageNet ResNet-101 without its last layer."""
    import torch
    import torchvision

    path = Path(weights)
    if not path.is_file():
        raise DataPrepError(f"--resnet-weights {path} does not exist; pass {RESNET_WEIGHTS}")
    net = torchvision.models.resnet101()
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        raise DataPrepError(f"{path} is not a ResNet-101 state dict ({str(err)[:200]}); pass "
                            f"{RESNET_WEIGHTS}") from None  # fmt: skip
    net.fc = torch.nn.Identity()
    net.eval()
    out = np.empty((len(files), 2048), dtype=np.float32)
    with torch.no_grad():
        for i, f in enumerate(progress(files, quiet, desc="CUB ResNet-101 features")):
            with Image.open(f) as im:  # one at a time: the images differ in size
                x = np.asarray(_shorter_side(im.convert("RGB"), 224), dtype=np.float32)
            out[i] = net(torch.from_numpy(x / 255.0).permute(2, 0, 1)[None].float())[0].numpy()
    return out


# --- entry point ------------------------------------------------------------------------------


def prepare(
    root,
    source="offline",
    seed=0,
    n_train=None,
    n_test=None,
    source_dir=None,
    features=None,
    resnet_weights=None,
    workers=1,
    quiet=False,
    force=False,
):
    root = Path(root)
    if source not in ("offline", "real"):
        raise DataPrepError(f"CUB --source must be offline or real, not {source}")
    if source == "real" and source_dir is None:
        raise DataPrepError(f"--source real needs --source-dir DIR. {HOW_TO_GET}")
    if features not in (None, "resnet101"):
        raise DataPrepError(f"--features must be resnet101 (or omitted), not {features}")
    if features and resnet_weights is None:
        raise DataPrepError(f"--features resnet101 needs --resnet-weights FILE: {RESNET_WEIGHTS}")
    if features and source != "real":
        raise DataPrepError("--features resnet101 reads the original CUB images: use it with "
                            "--source real (the stand-in's birds are drawn at 64x64)")  # fmt: skip
    if features and not Path(resnet_weights).is_file():  # before hours of image reading
        raise DataPrepError(f"--resnet-weights {resnet_weights} does not exist; pass "
                            f"{RESNET_WEIGHTS}")  # fmt: skip
    given = {"train": n_train, "test": n_test}
    if source == "offline":
        n = {s: given[s] or OFFLINE_SIZES[s] for s in SPLITS}
    else:
        n = {s: v for s, v in given.items() if v}
    args = {"source": source, "seed": seed, "n": n, "features": features}
    if already_prepared(root, "cub", args, force, quiet):
        return root / "cub"

    writer = Writer(root, "cub")
    try:
        if source == "offline":
            gen = SyntheticCUB(seed)
            data = {s: gen.generate(s, n[s], workers, quiet) for s in SPLITS}
            extra = {"attribute_names": list(gen.attribute_names),
                     "attribute_values": {k: list(v) for k, v in gen.attribute_values.items()}}  # fmt: skip
        else:
            data, classes = read_real(source_dir, n, workers, quiet)
            extra = {"class_names": classes}
        words = build_vocabulary(data["train"][2])
        sizes = {}
        for split in progress(SPLITS, quiet, desc="CUB captions", unit="split"):
            images, labels, captions = data[split][:3]
            ids, lengths = encode_captions(captions, words)
            writer.save(f"{split}_img.npy", images)
            writer.save(f"{split}_labels.npy", labels)
            writer.save(f"{split}_captions.npy", ids)
            writer.save(f"{split}_lengths.npy", lengths)
            if features:
                writer.save(f"{split}_features.npy",
                            resnet_features(data[split][3], resnet_weights, quiet))  # fmt: skip
            sizes[split] = len(images)
        stand_in = source == "offline"
        manifest = {
            "dataset": "cub",
            "source": source,
            "args": args,
            "seed": seed,
            "stand_in": stand_in,
            "comparable_to_paper": not stand_in and not n,
            "modalities": ["img", "sent"],
            "captions_per_image": CAPTIONS_PER_IMAGE,
            "max_length": MAX_LENGTH,
            "vocabulary": words,
            "features": features,
            "splits": sizes,
            **extra,
            "description": (
                "SyntheticCUB, a STAND-IN for CUB with captions: procedurally drawn 64x64 birds "
                f"with {len(SyntheticCUB.attribute_names)} known attributes and ten captions "
                "each from a grammar; not comparable to published numbers."
                if stand_in
                else "CUB-200-2011 with Reed et al.'s captions, as Shi et al. (64x64, "
                f"vocabulary of {len(words)} words)."
            ),
        }
        return writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
