"""Training: a seeded, resumable trainer and the command line.

    python -m mopoe_lib.train --dataset polymnist --model mopoe --profile smoke --out runs/x

The whole training split lives on the device as tensors and batches are drawn with a seeded
permutation (no DataLoader). A checkpoint (model, optimizer, every RNG state, epoch, config,
data id) is written atomically every ``checkpoint_every`` epochs and at the end; ``--resume``
continues from it to the same parameters as an uninterrupted run (bitwise on the CPU). Each
epoch appends a line to ``log.jsonl``; the final metrics go to ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from . import data as data_mod
from .config import Config, ConfigError, make_config, parse_value
from .data import DataError, TensorData
from .model import MultimodalVAE, build_model

CHECKPOINT = "checkpoint.pt"
# Settings that may change between a run and its resumption: they do not change the
# training trajectory (more epochs extend it).
RESUMABLE = ("train.epochs", "train.checkpoint_every", "train.eval_every", "train.compile")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the term."""


class CheckpointMismatchError(ValueError):
    """A checkpoint from another configuration or other data."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but CUDA is not available")
    return device


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("model", "train", "data", "eval"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, current: dict) -> dict:
    """Keys whose values differ and that matter for resuming (evaluation settings do not)."""
    a, b = _flat(saved), _flat(current)
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and k not in RESUMABLE and not k.startswith("eval.")
    }


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same directory, then os.replace."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


class Trainer:
    """Adam on ``model.objective(batch).loss()`` over a :class:`TensorData` on ``device``."""

    def __init__(
        self,
        cfg: Config,
        train_data: TensorData,
        out_dir: str | Path,
        *,
        device: str | torch.device = "auto",
        progress: bool = True,
        log=print,
    ):
        self.cfg, self.out, self.log = cfg, Path(out_dir), log
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.progress = progress
        torch.manual_seed(cfg.seed)  # parameter initialization
        self.model: MultimodalVAE = build_model(cfg).to(self.device)
        tc = cfg.train
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=tc.lr, betas=tuple(tc.adam_betas)
        )
        self.generator = torch.Generator().manual_seed(cfg.seed)  # the data order
        self.data = train_data.to(self.device)
        self.data_id = train_data.data_id()
        self.epoch = 0
        self.global_step = 0
        self.bf16 = tc.bf16 and self.device.type == "cuda"
        if tc.bf16 and not self.bf16:
            log("[train] bf16 autocast is for CUDA; training in float32")
        if tc.compile:
            for module in (*self.model.encoders.values(), *self.model.decoders.values()):
                module.compile()  # in place: the state dict keeps its keys

    # -- checkpoints ------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "config": self.cfg.to_dict(),
            "data_id": self.data_id,
            "torch_version": torch.__version__,
        }

    def save_checkpoint(self) -> Path:
        atomic_save(self.state_dict(), self.checkpoint_path)
        return self.checkpoint_path

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        path = Path(path or self.checkpoint_path)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        diff = config_differences(ckpt["config"], self.cfg.to_dict())
        if diff:
            lines = "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise CheckpointMismatchError(
                f"{path} was written by another configuration ({lines}). Resume with the same "
                "settings, or train into another --out directory."
            )
        if ckpt["data_id"] != self.data_id:
            raise CheckpointMismatchError(
                f"{path} was trained on other data (id {ckpt['data_id']}, now {self.data_id}); "
                "use the same data root and sizes, or another --out directory."
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.global_step = ckpt["epoch"], ckpt["global_step"]
        self.generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])

    # -- training ---------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        n, b = len(self.data), self.cfg.train.batch_size
        full = max(1, n // b)  # the last incomplete batch is dropped (one batch if n < b)
        cap = self.cfg.train.steps_per_epoch
        return min(full, cap) if cap else full

    def _check_finite(self, loss, obj) -> None:
        if torch.isfinite(loss):
            return
        rec = obj.rec.detach().mean(1)
        terms = {f"rec[{m}]": float(rec[i]) for i, m in enumerate(self.model.modalities)}
        terms["kl"] = float(obj.kl.detach().mean())
        if obj.surrogate is not None:
            terms["surrogate"] = float(obj.surrogate.detach().mean())
        bad = {k: v for k, v in terms.items() if not torch.isfinite(torch.tensor(v))}
        raise NonFiniteLossError(
            f"non-finite loss {float(loss.detach())} at epoch {self.epoch + 1}, step {self.global_step + 1} "
            f"(global): non-finite term(s) {bad or terms}. The last checkpoint is intact; "
            "try a lower learning rate or float32 (no --bf16)."
        )

    def train_epoch(self) -> dict:
        """One pass over a fresh permutation; returns the epoch's averages."""
        from tqdm.auto import tqdm

        self.model.train()
        b, steps = self.cfg.train.batch_size, self.steps_per_epoch()
        n = len(self.data)
        perm = torch.randperm(n, generator=self.generator)
        num_mod = len(self.model.modalities)
        sums = torch.zeros(2 + num_mod, dtype=torch.float64, device=self.device)
        start = time.perf_counter()
        bar = tqdm(range(steps), desc=f"epoch {self.epoch + 1}/{self.cfg.train.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)  # fmt: skip
        for step in bar:
            idx = perm[step * b : (step + 1) * b].to(self.device, non_blocking=True)
            batch = self.data.batch(idx)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                obj = self.model.objective(batch)
                loss = obj.loss()
            self._check_finite(loss, obj)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.global_step += 1
            with torch.no_grad():
                sums += torch.cat([loss.detach().view(1), obj.kl.detach().mean().view(1),
                                   obj.rec.detach().mean(1)]).double()  # fmt: skip
            if self.progress and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{float(loss):.1f}")
        bar.close()
        self.epoch += 1
        avg = (sums / steps).tolist()
        seconds = time.perf_counter() - start
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "loss": avg[0],
            "kl": avg[1],
            "rec": dict(zip(self.model.modalities, avg[2:], strict=True)),
            "seconds": seconds,
            "samples_per_second": steps * b / seconds,
        }

    def fit(self, on_epoch=None) -> list[dict]:
        """Train up to ``cfg.train.epochs``, logging and checkpointing; returns the epoch logs."""
        tc = self.cfg.train
        writer = _tensorboard(self.out)
        logs = []
        try:
            while self.epoch < tc.epochs:
                entry = self.train_epoch()
                logs.append(entry)
                with open(self.out / "log.jsonl", "a") as f:
                    f.write(json.dumps(entry) + "\n")
                if writer is not None:
                    writer.add_scalar("train/loss", entry["loss"], self.epoch)
                    writer.add_scalar("train/kl", entry["kl"], self.epoch)
                    for m, v in entry["rec"].items():
                        writer.add_scalar(f"train/rec_{m}", v, self.epoch)
                self.log(f"[train] epoch {self.epoch}/{tc.epochs}: loss {entry['loss']:.2f}, "
                         f"kl {entry['kl']:.2f}, {entry['seconds']:.1f} s")  # fmt: skip
                if self.epoch % tc.checkpoint_every == 0 or self.epoch == tc.epochs:
                    self.save_checkpoint()
                if on_epoch is not None:
                    on_epoch(self, entry)
        finally:
            if writer is not None:
                writer.close()
        return logs


# ---------------------------------------------------------------------------


def load_data(cfg: Config, root: str | Path, log=print) -> tuple[TensorData, TensorData]:
    """Train and test splits of ``cfg.dataset`` through :mod:`mopoe_lib.data`."""
    prepare = None if cfg.data.require_real or cfg.data.prepare is None else dict(cfg.data.prepare)
    kwargs = {"prepare": prepare, "require_real": cfg.data.require_real, "log": log}
    train = data_mod.load(cfg.dataset, root, "train", **kwargs).subset(cfg.data.n_train)
    test = data_mod.load(cfg.dataset, root, "test", **kwargs)
    return train, test


def run(
    cfg: Config,
    out_dir: str | Path,
    *,
    data_root: str | Path = "data",
    train_data: TensorData | None = None,
    test_data: TensorData | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    evaluate: bool = True,
    log=print,
) -> dict:
    """Train (or resume) and evaluate one model; writes and returns ``metrics.json``.

    Pass ``train_data``/``test_data`` to bypass the prepared datasets (tests, notebooks).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    if train_data is None:
        train_data, test_data = load_data(cfg, data_root, log)
    t_data = time.perf_counter() - t0
    trainer = Trainer(cfg, train_data, out, device=device, progress=progress, log=log)
    test_dev = test_data.to(trainer.device) if test_data is not None else None
    if trainer.checkpoint_path.is_file():
        if not resume:
            raise FileExistsError(
                f"{trainer.checkpoint_path} exists; pass --resume (resume=True) to continue it, "
                "or choose another --out directory"
            )
        trainer.load_checkpoint()
        _truncate_log(out / "log.jsonl", trainer.epoch)
        log(f"[train] resumed from {trainer.checkpoint_path} at epoch {trainer.epoch}")
    elif resume:
        log(f"[train] no checkpoint in {out}: starting from scratch")
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    log(f"[train] {cfg.dataset} {cfg.method} ({cfg.profile}) on {trainer.device}: "
        f"{len(trainer.data)} training samples, {trainer.steps_per_epoch()} steps per epoch")  # fmt: skip

    def periodic_eval(tr: Trainer, entry: dict) -> None:
        every = cfg.train.eval_every
        if not (evaluate and cfg.eval.enabled and every and test_data is not None):
            return
        if tr.epoch % every == 0 and tr.epoch < cfg.train.epochs:
            res = run_evaluation(tr, tr.data, test_dev, data_root, progress, log)
            (out / "eval").mkdir(exist_ok=True)
            path = out / "eval" / f"epoch_{tr.epoch:04d}.json"
            path.write_text(json.dumps(res, indent=2, default=float) + "\n")

    t1 = time.perf_counter()
    trainer.fit(on_epoch=periodic_eval)
    t_train = time.perf_counter() - t1

    results = {}
    t2 = time.perf_counter()
    if evaluate and cfg.eval.enabled and test_data is not None:
        results = run_evaluation(trainer, trainer.data, test_dev, data_root, progress, log)
    t_eval = time.perf_counter() - t2
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    metrics = {
        "dataset": cfg.dataset,
        "method": cfg.method,
        "profile": cfg.profile,
        "seed": cfg.seed,
        "device": str(trainer.device),
        "device_name": torch.cuda.get_device_name(trainer.device)
        if trainer.device.type == "cuda"
        else "cpu",
        "torch": torch.__version__,
        "wall_time_s": {
            "data": t_data,
            "train": t_train,
            "eval": t_eval,
            "total": time.perf_counter() - t0,
        },  # fmt: skip
        "data": {
            "train": train_data.info,
            "test": test_data.info if test_data else None,
            "data_id": trainer.data_id,
            "n_train_used": len(train_data),
        },  # fmt: skip
        "train": {
            "epochs": trainer.epoch,
            "global_step": trainer.global_step,
            "final": history[-1] if history else None,
        },  # fmt: skip
        "eval": results,
        "config": cfg.to_dict(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    log(f"[train] wrote {out / 'metrics.json'} ({metrics['wall_time_s']['total']:.1f} s)")
    return metrics


def _truncate_log(path: Path, epoch: int) -> None:
    """Drop log lines of epochs after the checkpoint (they will be trained again)."""
    if path.is_file():
        keep = [
            line for line in path.read_text().splitlines() if json.loads(line)["epoch"] <= epoch
        ]
        path.write_text("".join(line + "\n" for line in keep))


def run_evaluation(trainer: Trainer, train_data, test_data, data_root, progress, log) -> dict:
    from .evaluation import classifiers as clf_mod
    from .evaluation import evaluate

    cfg, device = trainer.cfg, trainer.device
    ec = cfg.eval
    cache = Path(ec.classifier_dir) if ec.classifier_dir else Path(data_root) / "classifiers"
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # classifiers must not shift training RNG
        classifiers = clf_mod.load_or_train(
            cfg.dataset, train_data.to(device), cache, epochs=ec.classifier_epochs,
            lr=ec.classifier_lr, width=ec.classifier_width, n_train=ec.classifier_n_train,
            device=device, seed=cfg.seed, log=log, progress=progress,
        )  # fmt: skip
    return evaluate(trainer.model, train_data.to(device), test_data.to(device), classifiers, ec,
                    seed=cfg.seed, log=log)  # fmt: skip


# ---------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    from .config import DATASETS, METHODS, PROFILES_NAMES

    p = argparse.ArgumentParser(
        prog="python -m mopoe_lib.train",
        description="Train and evaluate MVAE / MMVAE / MoPoE-VAE on a dataset of the paper.",
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--model", required=True, choices=METHODS, help="the objective")
    p.add_argument("--profile", default="cpu", choices=PROFILES_NAMES)
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, metrics)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--epochs", type=int, help="override the profile's number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-root", default="data", help="prepared data (python -m data_prep)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-eval", action="store_true", help="train only")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile encoders/decoders")
    p.add_argument("--require-real", action="store_true",
                   help="refuse stand-in data and never prepare offline data")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.beta=5 (repeatable)")  # fmt: skip
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict = {"seed": args.seed}
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.bf16:
        overrides["train.bf16"] = True
    if args.compile:
        overrides["train.compile"] = True
    if args.require_real:
        overrides["data.require_real"] = True
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value)
    return make_config(args.dataset, args.model, args.profile, overrides)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
        run(cfg, args.out, data_root=args.data_root, resume=args.resume, device=args.device,
            progress=not args.no_progress, evaluate=not args.no_eval)  # fmt: skip
    except (
        ConfigError,
        CheckpointMismatchError,
        DataError,
        NonFiniteLossError,
        FileExistsError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
