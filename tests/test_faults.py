"""Fault injection: training processes killed with SIGKILL during an epoch and while a
checkpoint is being written, then resumed, end bitwise equal to an uninterrupted run.

The trainer runs as a subprocess (``tests/train_driver.py``: 64 synthetic samples, batch 8,
8 steps per epoch, 3 epochs, a checkpoint every 3 steps and every epoch). Kill points come
from a seeded RNG; the checkpoint-write kills use the trainer's test hook
``MOPOE_TEST_SLOW_CHECKPOINT`` (half the file written, then a pause) so the kill lands
inside ``atomic_save``. A table of the injected faults and their outcomes is printed.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from mopoe_lib.train import SLOW_CHECKPOINT_ENV

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "train_driver.py"
EVERY = 3  # train.checkpoint_every_steps
TOTAL_STEPS = 24  # 3 epochs x 8 steps
SETTINGS = ["--set", f"train.checkpoint_every_steps={EVERY}", "--set", "data.missing_ratio=0.25"]


def _env(slow: float = 0.0) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop(SLOW_CHECKPOINT_ENV, None)
    if slow:
        env[SLOW_CHECKPOINT_ENV] = str(slow)
    return env


class Process:
    """The driver with its merged stdout/stderr read line by line on a thread."""

    def __init__(self, out: Path, resume: bool, slow: float = 0.0):
        cmd = [sys.executable, str(DRIVER), str(out), "--steps", *SETTINGS]
        cmd += ["--resume"] if resume else []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=_env(slow), cwd=ROOT)  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.last_step = None

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                self.proc.wait()
                raise AssertionError(f"process ended (rc {self.proc.returncode}):\n" +
                                     "\n".join(self.seen[-30:]))  # fmt: skip
            self.seen.append(line)
            if line.startswith("step "):
                self.last_step = int(line.split()[1])
            if predicate(line):
                return line

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    def finish(self, timeout: float = 300.0):
        try:
            self.wait_for(lambda _: False, timeout)
        except AssertionError:
            pass
        assert self.proc.returncode == 0, "\n".join(self.seen[-30:])


def _checkpoint(out: Path) -> dict | None:
    path = out / "checkpoint.pt"
    return torch.load(path, weights_only=False) if path.exists() else None


def _log(out: Path) -> list[dict]:
    keep = ("epoch", "global_step", "loss", "kl", "rec")
    lines = (out / "log.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in keep} for line in lines]


@pytest.mark.slow
def test_sigkill_during_epochs_and_checkpoint_writes_then_resume_is_bitwise(tmp_path):
    ref, run = tmp_path / "reference", tmp_path / "faulty"
    Process(ref, resume=False).finish()
    reference = _checkpoint(ref)
    assert reference["global_step"] == TOTAL_STEPS

    rng = random.Random(9)
    faults = [
        "during epoch",
        "checkpoint write",
        "during epoch",
        "during epoch",
        "checkpoint write",
    ]
    rows, resume = [], False
    for kind in faults:
        before = _checkpoint(run)
        done = before["global_step"] if before else 0
        if kind == "during epoch":
            target = min(TOTAL_STEPS - 1, done + rng.randint(2, 9))
            p = Process(run, resume)
            p.wait_for(lambda line, t=target: line == f"step {t}")
        else:
            p = Process(run, resume, slow=60.0)
            p.wait_for(lambda line: line.startswith("[checkpoint] writing"))
        p.kill()
        resume = True
        after = _checkpoint(run)  # must load: never a half-written file
        temporaries = sorted(run.glob(".checkpoint.pt.tmp*"))
        saved = after["global_step"] if after else 0
        where = f"epoch {after['epoch'] + 1}" if after else "-"
        if after and after["in_epoch"] is not None:
            where += f", step {after['in_epoch']['step']}"
        elif after:
            where = f"end of epoch {after['epoch']}"
        rows.append((kind, p.last_step, saved, where, p.last_step - saved, len(temporaries)))
        # nothing lost beyond the steps since the last checkpoint
        assert p.last_step - saved <= EVERY, rows[-1]
        if kind == "checkpoint write":
            # the write of the checkpoint after step last_step was cut in half: the
            # previous checkpoint is intact and the partial file is a temporary
            assert saved < p.last_step and len(temporaries) == 1
            with pytest.raises(Exception):  # noqa: B017 - any unpickling error
                torch.load(temporaries[0], weights_only=False)
    final = Process(run, resume=True)
    final.finish()
    resumed_at = next(line for line in final.seen if "resumed from" in line)
    assert not list(run.glob(".checkpoint.pt.tmp*")), "a temporary file was left behind"

    print("\nfault  kind              killed after step  checkpoint step  resumes at"
          "                  steps redone  temp files left")  # fmt: skip
    for i, (kind, step, saved, where, lost, tmps) in enumerate(rows, 1):
        print(f"{i:<6} {kind:<17} {step:<18} {saved:<16} {where:<27} {lost:<13} {tmps}")
    print(f"final: {resumed_at.split('] ')[1]}; ran to step {final.last_step}")

    result = _checkpoint(run)
    assert result["global_step"] == TOTAL_STEPS and result["epoch"] == 3
    for k, v in reference["model"].items():
        assert torch.equal(v, result["model"][k]), k
    for a, b in zip(reference["optimizer"]["state"].values(),
                    result["optimizer"]["state"].values(), strict=True):  # fmt: skip
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert torch.equal(reference["torch_rng"], result["torch_rng"])
    assert torch.equal(reference["generator"], result["generator"])
    assert _log(run) == _log(ref)  # the epoch averages too: nothing lost or counted twice
