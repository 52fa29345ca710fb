"""A tiny training run in its own process, for the fault-injection and torchrun tests.

    python tests/train_driver.py OUT [--resume] [--steps] [--set KEY=VALUE ...]
    torchrun --standalone --nproc_per_node 2 tests/train_driver.py OUT ...

Trains through :func:`mopoe_lib.train.run` on synthetic MNIST-SVHN-Text-shaped tensors
(``helpers.mst_like``) with a small smoke configuration, without evaluation. ``--steps``
prints ``step N`` (the global step, flushed) after every optimizer step so that a test can
kill the process at a chosen step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from helpers import mst_like  # noqa: E402

from mopoe_lib import train  # noqa: E402
from mopoe_lib.config import make_config, parse_value  # noqa: E402

BASE = {
    "model.latent_dim": 8,
    "train.batch_size": 8,
    "train.epochs": 3,
    "train.checkpoint_every": 1,
    "eval.enabled": False,
}


def config(method: str = "mopoe", overrides: dict | None = None):
    return make_config("mnist_svhn_text", method, "smoke", {**BASE, **(overrides or {})})


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--steps", action="store_true")
    p.add_argument("--method", default="mopoe")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    cfg = config(args.method, overrides)
    if args.steps:
        step = train.Trainer.train_step

        def announcing(self, batch, mask):
            result = step(self, batch, mask)
            print(f"step {self.global_step}", flush=True)
            return result

        train.Trainer.train_step = announcing
    train.run(cfg, args.out, train_data=mst_like(args.n, seed=0), resume=args.resume,
              device="cpu", progress=False, evaluate=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
