"""Training: a seeded, resumable trainer and the command line.

    python -m mopoe_lib.train --dataset polymnist --model mopoe --profile smoke --out runs/x

The whole training split lives on the device as tensors and batches are drawn with a seeded
permutation (no DataLoader). A checkpoint (model, optimizer, every RNG state, epoch, config,
data id) is written atomically every ``checkpoint_every`` epochs and at the end, and with
``train.checkpoint_every_steps = N`` also every N optimizer steps within an epoch (with the
epoch's permutation and position, so an interrupted long epoch loses at most N steps).
``--resume`` continues from it to the same parameters as an uninterrupted run (bitwise on
the CPU), also after the process was killed at any point: a checkpoint is written to a
temporary file, synced and renamed over the previous one, so a kill mid-write leaves the
previous checkpoint intact, and leftover temporary files are never read (they are removed
when the next run starts). Each epoch appends a line to ``log.jsonl``; the final metrics go
to ``metrics.json``.

Incomplete data: ``--set data.missing_ratio=0.3`` removes each modality of each training
sample with probability 0.3 (at least one kept; :func:`mopoe_lib.data.drop_modalities`); the
mask travels with every batch into ``model.objective(x, mask)`` and the evaluation respects
masks that the test data carries.

Several processes (DistributedDataParallel): launch the same command under torchrun, e.g.

    torchrun --standalone --nproc_per_node 2 -m mopoe_lib.train --dataset polymnist \
        --model mopoe --profile cpu --out runs/ddp

NCCL on GPUs (rank r uses ``cuda:LOCAL_RANK``), gloo on CPUs. Every rank draws the same
permutation and takes its contiguous share of each global batch of ``train.batch_size``
(which must be divisible by the number of processes); the objectives' per-sample noise is
drawn for the whole global batch and sliced (:func:`mopoe_lib.experts.batch_shard`), and
gradients are averaged, so N processes follow the 1-process trajectory up to the order of
float additions (for networks without dropout or batch norm; with them each rank draws its
own dropout masks and normalizes over its share). Only rank 0 writes checkpoints, logs,
metrics and evaluates; ``--resume`` works as for one process (all ranks read rank 0's
checkpoint).

Test hook: with the environment variable ``MOPOE_TEST_SLOW_CHECKPOINT=SECONDS``,
:func:`atomic_save` announces ``[checkpoint] writing PATH`` on stderr, writes half of the
file, sleeps SECONDS and writes the rest, so a test can kill the process mid-write. It is
inert unless set.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from . import data as data_mod
from . import progress as progress_mod
from .config import Config, ConfigError, make_config, parse_value
from .data import DataError, TensorData, drop_modalities
from .experts import batch_shard
from .model import MultimodalVAE, build_model

CHECKPOINT = "checkpoint.pt"
CURVE = "curve.jsonl"
# Settings that may change between a run and its resumption: they do not change the
# training trajectory (more epochs extend it).
RESUMABLE = (
    "train.epochs",
    "train.checkpoint_every",
    "train.checkpoint_every_steps",
    "train.eval_every",
    "train.compile",
    "train.curve_every_steps",
)
SLOW_CHECKPOINT_ENV = "MOPOE_TEST_SLOW_CHECKPOINT"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the term."""


class CheckpointMismatchError(ValueError):
    """A checkpoint from another configuration or other data, or one that cannot be read."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but CUDA is not available")
    return device


# -- several processes ------------------------------------------------------------


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str = "auto") -> bool:
    """Join the process group that torchrun describes (WORLD_SIZE > 1 in the environment):
    NCCL when training on CUDA, else gloo. Returns True if this call created the group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return False
    cuda = device != "cpu" and torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def _rank_device(name: str) -> torch.device:
    device = resolve_device(name)
    rank, size = world()
    if size > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
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
    """torch.save to a temporary file in the same directory, fsync, then os.replace: a
    reader sees the previous file or the new one, never a partial one (see the test hook
    in the module docstring)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pause = float(os.environ.get(SLOW_CHECKPOINT_ENV) or 0)
    try:
        with open(tmp, "wb") as f:
            if pause > 0:
                buf = io.BytesIO()
                torch.save(obj, buf)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                print(f"[checkpoint] writing {path}", file=sys.stderr, flush=True)
                time.sleep(pause)
                f.write(data[len(data) // 2 :])
            else:
                torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stale_temporaries(out: Path, name: str = CHECKPOINT) -> list[Path]:
    """Temporary checkpoint files that a killed process left behind (never read)."""
    return sorted(Path(out).glob(f".{name}.tmp*"))


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
        self.rank, self.world_size = world()
        self.is_main = self.rank == 0
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = _rank_device(device) if isinstance(device, str) else device
        self.progress = progress and self.is_main
        tc = cfg.train
        if tc.batch_size % self.world_size:
            raise ConfigError(
                f"train.batch_size {tc.batch_size} is not divisible by the {self.world_size} "
                "processes; every process takes an equal share of each global batch"
            )
        torch.manual_seed(cfg.seed)  # parameter initialization
        self.model: MultimodalVAE = build_model(cfg).to(self.device)
        param = next(self.model.parameters())
        data_mod.validate(train_data, self.model.modalities, self.model.data_shapes, param.dtype)
        if cfg.data.missing_ratio:
            train_data = drop_modalities(train_data, cfg.data.missing_ratio, seed=cfg.seed)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=tc.lr, betas=tuple(tc.adam_betas)
        )
        self.generator = torch.Generator().manual_seed(cfg.seed)  # the data order
        self.data = train_data.to(self.device)
        self.data_id = train_data.data_id()
        self.epoch = 0
        self.global_step = 0
        self._resume_in_epoch: dict | None = None  # position inside an interrupted epoch
        self._in_epoch: dict | None = None  # the running epoch's position, for checkpoints
        self._earlier_seconds = 0.0  # training time of earlier sessions (from the checkpoint)
        self._session_start: float | None = None  # when fit() of this session began
        self.ddp = None
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        if self.is_main:
            for tmp in stale_temporaries(self.out):
                log(f"[train] removing {tmp.name}, a checkpoint write that was interrupted")
                tmp.unlink(missing_ok=True)
        # bfloat16 autocast on CUDA and on the CPU (tests run it there)
        self.bf16 = tc.bf16 and self.device.type in ("cuda", "cpu")
        if tc.bf16 and not self.bf16:
            log(f"[train] bf16 autocast is not available on {self.device.type}; float32")
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
            "world_size": self.world_size,
            # mid-epoch checkpoints: the epoch's permutation, next step and running sums
            "in_epoch": self._in_epoch,
            # training time of every session so far, so a resumed run reports its full cost
            "train_seconds": self.train_seconds(),
        }

    def save_checkpoint(self) -> Path:
        """Write the checkpoint (rank 0 only; other ranks do nothing)."""
        if self.is_main:
            atomic_save(self.state_dict(), self.checkpoint_path)
        return self.checkpoint_path

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        path = Path(path or self.checkpoint_path)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except (RuntimeError, EOFError, OSError, ValueError) as err:
            raise CheckpointMismatchError(
                f"{path} cannot be read as a checkpoint ({type(err).__name__}: {err}); it was "
                "not written by this trainer's atomic save. Move it away to start afresh, or "
                "train into another --out directory."
            ) from None
        if not isinstance(ckpt, dict) or not {"config", "data_id", "model"} <= set(ckpt):
            raise CheckpointMismatchError(
                f"{path} is not a trainer checkpoint (no config, data id and model state); "
                "train into another --out directory"
            )
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
        self._resume_in_epoch = ckpt.get("in_epoch")
        self._earlier_seconds = float(ckpt.get("train_seconds", 0.0))
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
        """Stop before the optimizer step if the loss or any gradient is NaN or infinite.

        One host sync per step: a flag pair (loss, largest |gradient|) is read together.
        Checking the gradients too stops a run at the step that produced them, with the
        parameters (and the last checkpoint) untouched: inputs far outside the data range
        can give a finite loss whose float32 gradients overflow.
        """
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        gmax = (torch.stack(torch._foreach_norm(grads, float("inf"))).max() if grads
                else loss.new_zeros(()))  # fmt: skip
        total = torch.stack([loss.detach().float(), gmax.detach().float()])
        if self.world_size > 1:  # every rank stops together, whichever rank saw it
            dist.all_reduce(total)
        if torch.isfinite(total).all():
            return
        where = f" on rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        at = f"at epoch {self.epoch + 1}, step {self.global_step + 1} (global){where}"
        if torch.isfinite(loss.detach()):
            bad = [n for n, p in self.model.named_parameters()
                   if p.grad is not None and not torch.isfinite(p.grad).all()]  # fmt: skip
            raise NonFiniteLossError(
                f"non-finite gradients ({self.cfg.method}) {at}, from a finite loss "
                f"{float(loss.detach()):.4g}, in {len(bad)} parameter tensor(s), first "
                f"{bad[:3]}. The step was not applied and the last checkpoint is intact. "
                "This happens when inputs are far outside the data's range (images belong "
                "in [0, 1]: divide 8-bit values by 255) or the learning rate is too high."
            )
        rec = obj.rec.detach().mean(1)
        terms = {f"rec[{m}]": float(rec[i]) for i, m in enumerate(self.model.modalities)}
        terms["kl"] = float(obj.kl.detach().mean())
        if obj.surrogate is not None:
            terms["surrogate"] = float(obj.surrogate.detach().mean())
        bad = {k: v for k, v in terms.items() if not torch.isfinite(torch.tensor(v))}
        raise NonFiniteLossError(
            f"non-finite loss {float(loss.detach())} ({self.cfg.method}) {at}: non-finite "
            f"term(s) {bad or terms}. The step was not applied and the last checkpoint is "
            "intact; try a lower learning rate or float32 (no --bf16)."
        )

    def train_step(self, batch: dict, mask: torch.Tensor | None) -> tuple:
        """One optimizer step on this process's share of a global batch; (loss, objective)."""
        model = self.ddp if self.ddp is not None else self.model
        self.model.beta = self.beta_at(self.global_step)
        with (
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16),
            batch_shard(self.rank, self.world_size),
        ):
            obj = model(batch, mask)
            loss = obj.loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._check_finite(loss, obj)
        self.optimizer.step()
        self.global_step += 1
        return loss, obj

    def beta_at(self, step: int) -> float:
        """beta of optimizer step ``step`` (0-based): the KL warm-up, then model.beta."""
        warmup, beta = self.cfg.train.beta_warmup_steps, self.cfg.model.beta
        return beta if not warmup else beta * min(1.0, (step + 1) / warmup)

    def train_epoch(self, on_step=None) -> dict:
        """One pass over a fresh permutation (or the rest of an interrupted one); returns
        the epoch's averages."""
        from tqdm.auto import tqdm

        self.model.train()
        b, steps = self.cfg.train.batch_size, self.steps_per_epoch()
        share = b // self.world_size
        every = self.cfg.train.checkpoint_every_steps
        num_mod = len(self.model.modalities)
        resume = self._resume_in_epoch
        self._resume_in_epoch = None
        if resume is not None:
            perm, first = resume["perm"], resume["step"]
            sums = resume["sums"].to(self.device)
        else:
            perm = torch.randperm(len(self.data), generator=self.generator)
            first = 0
            sums = torch.zeros(2 + num_mod, dtype=torch.float64, device=self.device)
        steps = min(steps, first + self.steps_left())  # train.max_steps may cut it short
        start = time.perf_counter()
        bar = tqdm(range(first, steps), desc=f"epoch {self.epoch + 1}/{self.cfg.train.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)  # fmt: skip
        for step in bar:
            idx = perm[step * b : (step + 1) * b][self.rank * share : (self.rank + 1) * share]
            idx = idx.to(self.device, non_blocking=True)
            loss, obj = self.train_step(self.data.batch(idx), self.data.batch_mask(idx))
            with torch.no_grad():
                sums += torch.cat([loss.detach().view(1), obj.kl.detach().mean().view(1),
                                   obj.rec.detach().mean(1)]).double()  # fmt: skip
            if self.progress and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{float(loss):.1f}")
            if self.is_main:  # the chapter runner's live view (no-op outside it)
                progress_mod.tick(lambda s=step, v=loss: f"[train] {self.cfg.dataset} "
                                  f"{self.cfg.method}: epoch {self.epoch + 1}/"
                                  f"{self.cfg.train.epochs}, step {s + 1}/{steps}, loss "
                                  f"{float(v.detach()):.1f}")  # fmt: skip
            if on_step is not None and self.is_main:
                on_step(self)
            if every and self.global_step % every == 0 and step + 1 < steps:
                self._in_epoch = {"perm": perm, "step": step + 1, "sums": sums.cpu()}
                self.save_checkpoint()
                self._in_epoch = None
        bar.close()
        self.epoch += 1
        if self.world_size > 1:
            dist.all_reduce(sums)
            sums /= self.world_size
        avg = (sums / steps).tolist()
        seconds = time.perf_counter() - start
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "loss": avg[0],
            "kl": avg[1],
            "rec": dict(zip(self.model.modalities, avg[2:], strict=True)),
            "seconds": seconds,
            "samples_per_second": (steps - first) * b / seconds,
        }

    def steps_left(self) -> int:
        """Optimizer steps before ``train.max_steps`` (a large number when unbounded)."""
        bound = self.cfg.train.max_steps
        return max(0, bound - self.global_step) if bound is not None else 1 << 62

    def done(self) -> bool:
        return self.epoch >= self.cfg.train.epochs or self.steps_left() == 0

    def train_seconds(self) -> float:
        """Wall time spent in :meth:`fit`, over this and every earlier (resumed) session."""
        now = 0.0 if self._session_start is None else time.perf_counter() - self._session_start
        return self._earlier_seconds + now

    def fit(self, on_epoch=None, on_step=None) -> list[dict]:
        """Train up to ``cfg.train.epochs``, logging and checkpointing; returns the epoch logs.

        ``on_step(trainer)`` runs on rank 0 after every optimizer step (the learning curve).
        """
        tc = self.cfg.train
        self._session_start = time.perf_counter()
        writer = _tensorboard(self.out) if self.is_main else None
        logs = []
        try:
            while not self.done():
                entry = self.train_epoch(on_step)
                logs.append(entry)
                if self.is_main:
                    with open(self.out / "log.jsonl", "a") as f:
                        f.write(json.dumps(entry) + "\n")
                if writer is not None:
                    writer.add_scalar("train/loss", entry["loss"], self.epoch)
                    writer.add_scalar("train/kl", entry["kl"], self.epoch)
                    for m, v in entry["rec"].items():
                        writer.add_scalar(f"train/rec_{m}", v, self.epoch)
                self.log(f"[train] epoch {self.epoch}/{tc.epochs}: loss {entry['loss']:.2f}, "
                         f"kl {entry['kl']:.2f}, {entry['seconds']:.1f} s")  # fmt: skip
                if self.epoch % tc.checkpoint_every == 0 or self.done():
                    self.save_checkpoint()
                if on_epoch is not None and self.is_main:
                    on_epoch(self, entry)
        finally:
            self._earlier_seconds, self._session_start = self.train_seconds(), None
            self.model.beta = self.cfg.model.beta  # a model never leaves in its warm-up
            if writer is not None:
                writer.close()
        return logs


# ---------------------------------------------------------------------------


def load_data(cfg: Config, root: str | Path, log=print) -> tuple[TensorData, TensorData]:
    """Train and test splits of ``cfg.dataset`` through :mod:`mopoe_lib.data`.

    Under torchrun rank 0 loads (and, if needed, prepares) first; the others wait for it.
    """
    prepare = None if cfg.data.require_real or cfg.data.prepare is None else dict(cfg.data.prepare)
    kwargs = {"prepare": prepare, "require_real": cfg.data.require_real, "log": log}
    rank, size = world()
    if size > 1 and rank != 0:
        dist.barrier()
    try:
        train = data_mod.load(cfg.dataset, root, "train", **kwargs).subset(cfg.data.n_train)
        test = data_mod.load(cfg.dataset, root, "test", **kwargs)
    finally:
        if size > 1 and rank == 0:
            dist.barrier()
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
    Under torchrun (WORLD_SIZE > 1) it joins the process group, trains data-parallel and
    leaves the group at the end; ranks other than 0 write nothing and return
    ``{"rank": r, "train": {...}}``.
    """
    created = init_distributed(device)
    try:
        rank, _ = world()
        quiet = log if rank == 0 else (lambda *_: None)
        return _run(cfg, out_dir, data_root, train_data, test_data, resume, device, progress,
                    evaluate, quiet)  # fmt: skip
    finally:
        if created:
            dist.destroy_process_group()


def _run(cfg, out_dir, data_root, train_data, test_data, resume, device, progress, evaluate,
         log) -> dict:  # fmt: skip
    t0 = time.perf_counter()
    out = Path(out_dir)
    if train_data is None:
        train_data, test_data = load_data(cfg, data_root, log)
    from .networks import DEFAULT_MODALITIES

    mods = cfg.model.modalities or DEFAULT_MODALITIES[cfg.dataset]
    held = set(train_data.modalities)
    if tuple(mods) != tuple(train_data.modalities) and set(mods) <= held:  # some of the data's
        train_data = train_data.select(mods)
        test_data = test_data.select(mods) if test_data is not None else None
    t_data = time.perf_counter() - t0
    words = train_data.info.get("vocabulary")
    if cfg.dataset == "cub" and words is not None and len(words) != cfg.model.vocab_size:
        raise DataError(f"the prepared CUB vocabulary has {len(words)} words but "
                        f"model.vocab_size is {cfg.model.vocab_size}; set model.vocab_size="
                        f"{len(words)} (None reads it from the data) or prepare the data that "
                        "the profile expects")  # fmt: skip
    trainer = Trainer(cfg, train_data, out, device=device, progress=progress, log=log)
    test_dev = test_data.to(trainer.device) if test_data is not None else None
    if trainer.checkpoint_path.is_file():
        if not resume:
            raise FileExistsError(
                f"{trainer.checkpoint_path} exists; pass --resume (resume=True) to continue it, "
                "or choose another --out directory"
            )
        trainer.load_checkpoint()
        if trainer.is_main:
            _truncate_log(out / "log.jsonl", trainer.epoch)
        where = trainer._resume_in_epoch
        within = f", step {where['step']} of epoch {trainer.epoch + 1}" if where else ""
        log(f"[train] resumed from {trainer.checkpoint_path} at epoch {trainer.epoch}{within} "
            f"(global step {trainer.global_step})")  # fmt: skip
    elif resume:
        log(f"[train] no checkpoint in {out}: starting from scratch")
    if trainer.is_main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        _truncate_jsonl(out / CURVE, "global_step", trainer.global_step)
    procs = f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
    log(f"[train] {cfg.dataset} {cfg.method} ({cfg.profile}) on {trainer.device}{procs}: "
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

    use_curve = evaluate and test_data is not None and cfg.train.curve_every_steps > 0
    curve = _Curve(cfg, trainer, test_dev, out) if use_curve else None
    t1 = time.perf_counter()
    trainer.fit(on_epoch=periodic_eval, on_step=curve)
    t_train = time.perf_counter() - t1
    if not trainer.is_main:
        return {"rank": trainer.rank, "train": {"epochs": trainer.epoch,
                                                 "global_step": trainer.global_step}}  # fmt: skip

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
            # a resumed run: also the sessions before the interruption (checkpointed time)
            "train_all_sessions": trainer.train_seconds(),
            # of which spent on the learning curve (not training proper)
            "curve": curve.seconds if curve is not None else 0.0,
            "eval": t_eval,
            "total": time.perf_counter() - t0,
        },  # fmt: skip
        "data": {
            "train": train_data.info,
            "test": test_data.info if test_data else None,
            "data_id": trainer.data_id,
            "n_train_used": len(train_data),
            "missing_ratio": cfg.data.missing_ratio,
            "modalities_present": _presence(trainer.data),
        },  # fmt: skip
        "processes": trainer.world_size,
        "train": {
            "epochs": trainer.epoch,
            "global_step": trainer.global_step,
            "final": history[-1] if history else None,
            "curve": curve.points if curve is not None else [],
        },  # fmt: skip
        "eval": results,
        "config": cfg.to_dict(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    log(f"[train] wrote {out / 'metrics.json'} ({metrics['wall_time_s']['total']:.1f} s)")
    return metrics


def _presence(data: TensorData) -> dict | None:
    """The share of training samples that hold each modality (None when all are complete)."""
    if data.mask is None:
        return None
    share = data.mask.float().mean(0).tolist()
    return dict(zip(data.modalities, share, strict=True))


def _truncate_log(path: Path, epoch: int) -> None:
    """Drop log lines of epochs after the checkpoint (they will be trained again)."""
    _truncate_jsonl(path, "epoch", epoch)


def _truncate_jsonl(path: Path, key: str, last: int) -> None:
    if path.is_file():
        keep = [line for line in path.read_text().splitlines() if json.loads(line)[key] <= last]
        path.write_text("".join(line + "\n" for line in keep))


class _Curve:
    """The learning curve (:mod:`mopoe_lib.evaluation.curve`) as a trainer step hook.

    Points go to ``curve.jsonl`` (rank 0), one before the first step and one every
    ``train.curve_every_steps``; a resumed run keeps the points up to its checkpoint. The
    time spent here inside training is excluded from each point's ``train_s``.
    """

    def __init__(self, cfg: Config, trainer: Trainer, test: TensorData, out: Path):
        self.every, self.n, self.seed = (
            cfg.train.curve_every_steps,
            cfg.eval.curve_samples,
            cfg.seed,
        )
        self.trainer, self.test, self.path = trainer, test, out / CURVE
        self.points = []
        if self.path.is_file():
            self.points = [json.loads(line) for line in self.path.read_text().splitlines()]
        last = self.points[-1] if self.points else {}
        self.seconds = last.get("curve_s", 0.0)  # all curve time
        self.seconds_in_fit = last.get("curve_in_training_s", 0.0)  # the part inside fit()
        if trainer.is_main and trainer.global_step == 0 and not self.points:
            self.record(in_fit=False)

    def __call__(self, trainer: Trainer) -> None:
        if trainer.global_step % self.every == 0:
            self.record(in_fit=True)

    def record(self, in_fit: bool) -> None:
        from .evaluation.curve import curve_point

        tr = self.trainer
        t = time.perf_counter()
        point = curve_point(tr.model, tr.data, self.test, self.n, self.seed)
        spent = time.perf_counter() - t
        self.seconds += spent
        self.seconds_in_fit += spent if in_fit else 0.0
        point = {"global_step": tr.global_step, "epoch": tr.epoch,
                 "train_s": max(0.0, tr.train_seconds() - self.seconds_in_fit), **point,
                 "curve_s": self.seconds, "curve_in_training_s": self.seconds_in_fit}  # fmt: skip
        self.points.append(point)
        with open(self.path, "a") as f:
            f.write(json.dumps(point) + "\n")


def run_evaluation(trainer: Trainer, train_data, test_data, data_root, progress, log) -> dict:
    from .evaluation import classifiers as clf_mod
    from .evaluation import evaluate

    cfg, device = trainer.cfg, trainer.device
    ec = cfg.eval
    if cfg.dataset == "cub":  # no class labels per modality: evaluation.cub's own metrics
        from .evaluation import cub

        return cub.evaluate(trainer.model, train_data.to(device), test_data.to(device), ec,
                            data_root=data_root, device=device, seed=cfg.seed, log=log)  # fmt: skip
    cache = Path(ec.classifier_dir) if ec.classifier_dir else Path(data_root) / "classifiers"
    devices = [device] if device.type == "cuda" else []
    # The classifiers are measuring instruments: trained on every training sample of their
    # modality, also when the model was trained with modalities removed (data.missing_ratio).
    complete = dataclasses.replace(train_data, mask=None)
    with torch.random.fork_rng(devices=devices):  # classifiers must not shift training RNG
        classifiers = clf_mod.load_or_train(
            cfg.dataset, complete.to(device), cache, epochs=ec.classifier_epochs,
            lr=ec.classifier_lr, width=ec.classifier_width, n_train=ec.classifier_n_train,
            arch=ec.classifier, shift=ec.classifier_shift, schedule=ec.classifier_lr_schedule,
            device=device, seed=ec.classifier_seed, log=log, progress=progress,
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
    p.add_argument("--preset", choices=["official"], default=None,
                   help="every official-code switch of the model (book: official_code)")  # fmt: skip
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, metrics)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--epochs", type=int, help="override the profile's number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-root", default="data", help="prepared data (python -m data_prep)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-eval", action="store_true", help="train only")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
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
    return make_config(args.dataset, args.model, args.profile, overrides,
                       preset=getattr(args, "preset", None))  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
        if cfg.dataset == "cub" and cfg.model.vocab_size is None:
            cfg.model.vocab_size = data_mod.cub_vocab_size(args.data_root)
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
