"""The `paper` reproduction path, end to end, before anyone spends GPU hours on it.

Small data sets are written in the real formats (the official PolyMNIST folders, MNIST IDX
and SVHN .mat, the CelebA file layout, Shi et al.'s CUB folder) and prepared with the real ``data_prep --source``
commands. Every chapter of ``book/experiments`` then runs through papermill under the
``paper`` profile, bounded to two updates per model and a small evaluation
(``--max-steps 2``): the paper's networks and latent sizes, the real readers, training,
checkpoints, every metric the chapters report, the metrics JSON and the comparison with
the published numbers, which must call every run not comparable. Chapter 11 is first
killed (SIGKILL, the whole process group) while it writes its second checkpoint, and the
next call resumes it from the first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from test_cub_data import write_cub
from test_data_readers import write_celeba, write_mnist, write_official, write_svhn

from mopoe_lib import chapters
from mopoe_lib import published as P
from mopoe_lib.config import make_config
from mopoe_lib.train import SLOW_CHECKPOINT_ENV

ROOT = Path(__file__).resolve().parent.parent
TRAINING = [p.stem for p in sorted(chapters.EXPERIMENTS.glob("[0-9]*.ipynb"))]
BOUND = 2
KILLED = "11_mmvae_mnist_svhn"


def _prepare(raw: Path, root: Path) -> None:
    write_official(raw / "PolyMNIST", n=(40, 20))
    write_mnist(raw, n_train=100, n_test=40)
    write_svhn(raw, "train", n=60)
    write_svhn(raw, "test", n=40, seed=9)
    write_celeba(raw / "celeba", n=30)
    # few captions: chapter 12's MMVAE (DReG, K = 50, the paper's networks) took 67-70 s
    # a step on a batch of 64 captions here (2 cores)
    write_cub(raw / "cub_zip", per_class=2)
    commands = [
        ["polymnist", "--source", "official", "--source-dir", str(raw / "PolyMNIST")],
        ["mnist_svhn_text", "--source", "real", "--source-dir", str(raw), "--dm", "2",
         "--max-d", "5"],
        ["celeba", "--source", "real", "--source-dir", str(raw / "celeba")],
        ["cub", "--source", "real", "--source-dir", str(raw / "cub_zip")],
    ]  # fmt: skip
    for args in commands:
        subprocess.run([sys.executable, "-m", "data_prep", *args, "--root", str(root), "--quiet"],
                       check=True, cwd=ROOT)  # fmt: skip


def _runner(tmp: Path, *extra: str, env=None) -> subprocess.Popen:
    cmd = [sys.executable, "-u", "-m", "mopoe_lib.chapters", "--profile", "paper",
           "--data-root", str(tmp / "data"), "--runs-root", str(tmp / "runs"),
           "--out-dir", str(tmp / "executed"), "--max-steps", str(BOUND), *extra]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper_bounded")
    _prepare(tmp / "raw", tmp / "data")
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{SLOW_CHECKPOINT_ENV: "20"})
    # 1. chapter 11 killed while its second checkpoint is half written
    proc = _runner(tmp, "--only", KILLED, env=env)
    killed_at, first = None, []
    for line in proc.stdout:
        first.append(line.rstrip())
        if "[train] epoch 2/" in line:  # its checkpoint is being written, slowly
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = line
            break
    proc.wait(timeout=60)
    assert killed_at, "the runner never reached epoch 2:\n" + "\n".join(first[-30:])
    # 2. the next call resumes it, then runs every other chapter
    env.pop(SLOW_CHECKPOINT_ENV)
    proc = _runner(tmp, env=env)
    out, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out[-5000:]
    return {"tmp": tmp, "first": first, "lines": out.splitlines()}


def _metrics(bounded, chapter: str) -> dict:
    return json.loads((bounded["tmp"] / "executed" / f"{chapter}.paper.metrics.json").read_text())


def test_an_interrupted_chapter_resumes_from_its_last_checkpoint(bounded):
    lines = bounded["lines"]
    assert any(f"[{KILLED}] [experiment] resuming mnist_svhn_text/mmvae_dreg" in x for x in lines)
    assert any(f"[{KILLED}] [train] resumed from" in x and "at epoch 1" in x for x in lines)
    train_log = next((bounded["tmp"] / "runs").glob("mnist_svhn_text/mmvae_dreg/*/train.log"))
    text = train_log.read_text()  # the killed write left its temporary file behind
    assert "a checkpoint write that was interrupted" in text and "resumed from" in text
    doc = _metrics(bounded, KILLED)
    assert [r["global_step"] for r in doc["runs"]] == [BOUND]


def test_every_chapter_ran_the_paper_profile_on_the_real_readers(bounded):
    lines = bounded["lines"]
    for chapter in TRAINING:
        assert any(f"{chapter}.ipynb: ok in" in x for x in lines), chapter
        doc = _metrics(bounded, chapter)
        assert doc["profile"] == (["paper"] if doc["runs"] else [])
        for run in doc["runs"]:
            assert "stand-in" not in run["data"] and "offline" not in run["data"], run
            assert run["profile"] == "paper" and run["max_steps"] == BOUND
            assert run["global_step"] == BOUND, run
    # the paper's networks and sizes, from the run folders' configs
    latent = {"polymnist": 512, "mnist_svhn_text": 20, "celeba": 32, "cub": 64}
    for config in (bounded["tmp"] / "runs").glob("*/*/*/config.json"):
        cfg = json.loads(config.read_text())
        paper = make_config(cfg["dataset"], cfg["method"], "paper").to_dict()
        assert cfg["model"]["latent_dim"] == latent[cfg["dataset"]]
        assert cfg["model"]["latent_dim"] == paper["model"]["latent_dim"]
        assert cfg["train"]["batch_size"] in (paper["train"]["batch_size"], 128)  # 128: Shi et al.
        assert cfg["model"]["image_likelihood"] == "laplace" and cfg["train"]["max_steps"] == BOUND
    datasets = _metrics(bounded, "00_datasets")["sources"]
    assert {k: v["source"] for k, v in datasets.items()} == {
        "polymnist": "official", "mnist_svhn_text": "real", "celeba": "real",
        "cub": "real"}  # fmt: skip
    assert not any(v["stand_in"] for v in datasets.values())


def test_every_metric_was_computed_and_no_run_is_taken_for_a_reproduction(bounded):
    table = chapters.comparison_table(
        [{"chapter": c, "metrics": str(bounded["tmp"] / "executed" / f"{c}.paper.metrics.json")}
         for c in TRAINING])  # fmt: skip
    for chapter in TRAINING:
        doc = _metrics(bounded, chapter)
        assert doc["comparable_to_paper"] is False
        if not doc["runs"]:
            continue  # 00_datasets trains nothing
        assert doc["bounded"] == [BOUND]
        assert f"a bounded run ({BOUND} updates" in doc["not_comparable_reason"]
        report = P.compare(doc)
        published = any(v["table"] in P.tables() for v in doc["values"])
        # chapter 12 (CUB) has no published numbers: the slides show only figures
        assert report["status"] == ("not comparable" if published else "no published numbers")
        assert "a bounded run" in report["reason"] and (report["values"] > 0) == published
        assert not any("gave no number" in f for f in report["failures"]), report["failures"]
        row = next(x for x in table.splitlines() if x.startswith(chapter))
        assert "bounded run" in row
        nb = nbformat.read(bounded["tmp"] / "executed" / f"{chapter}.ipynb", as_version=4)
        shown = json.dumps([c.get("outputs", []) for c in nb.cells])
        assert "This is not a reproduction of the published numbers" in shown, chapter
    # the runner ends with the same comparison
    assert "[chapters] against the published numbers (mopoe_lib/published.yaml):" in bounded[
        "lines"]  # fmt: skip


def test_the_runner_says_what_is_left_and_never_times_a_bounded_run_by_a_full_one(bounded):
    estimates = [x for x in bounded["lines"] if "left for" in x or "time left" in x]
    assert estimates, bounded["lines"][:20]
    # no bounded run of these chapters was recorded before: no estimate from the full runs
    assert any(f"no earlier run bounded to {BOUND} updates" in x for x in estimates)
    assert not any("the book's timing" in x for x in estimates)
