"""The chapter runner's reader-facing behaviour: progress on a side channel (never in the
executed notebook), estimates, the closing table, no kernel TCP warning, chapter-level
resume; and train_or_load resuming an interrupted model from its checkpoint."""

import json
import os
from pathlib import Path

import nbformat
import pytest

from mopoe_lib import chapters, experiment, progress

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ('profile = "smoke"\ndevice = "cpu"\nseed = 0\ndata_root = None\nruns_root = None\n'
          "metrics_path = None")  # fmt: skip
# fails on its first execution (no marker yet), succeeds on the next: a chapter that was
# interrupted or failed and is run again
BODY = """from pathlib import Path
from mopoe_lib import progress
progress.report("[train] epoch 1/2: loss 1.0")
marker = Path(runs_root) / "marker"
if not marker.exists():
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("x")
    raise RuntimeError("first execution fails")
print("the chapter's own output")"""


def _chapter(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata.tags = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(BODY)]
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "01_fake.ipynb")
    return folder


def test_runner_progress_resume_and_closing_table(tmp_path, capfd, monkeypatch):
    # the kernel must import this checkout's mopoe_lib, wherever its cwd is
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    src, out = _chapter(tmp_path / "src"), tmp_path / "out"
    kw = {"sources": src, "out_dir": out, "runs_root": str(tmp_path / "runs")}
    lines: list[str] = []

    first = chapters.run_training_chapters("smoke", write=lines.append, **kw)
    assert [r["status"] for r in first] == ["failed"]
    assert any("estimated" in line for line in lines) and any("trains" in line for line in lines)
    assert "[01_fake] [train] epoch 1/2: loss 1.0" in lines  # reprinted live, prefixed

    lines.clear()
    second = chapters.run_training_chapters("smoke", write=lines.append, **kw)
    assert [(r["status"], r["reused"]) for r in second] == [("ok", False)]  # re-run, not reused
    assert "[01_fake] [train] epoch 1/2: loss 1.0" in lines
    nb = nbformat.read(out / "01_fake.ipynb", as_version=4)
    shown = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "the chapter's own output" in shown
    assert "epoch 1/2" not in shown  # progress never lands in the rendered outputs

    header, rows = chapters.execution_statistics(out)  # the book's statistics page
    row = dict(zip(header, rows[0], strict=True))
    assert (
        row["chapter"] == "01_fake"
        and row["profile"] == "smoke"
        and float(row["wall time (s)"]) > 0
    )

    third = chapters.run_training_chapters("smoke", write=lines.append, **kw)
    assert [(r["status"], r["reused"]) for r in third] == [("ok", True)]
    table = chapters.closing_table(first + second + third)
    assert table.splitlines()[0].split() == ["chapter", "seconds", "executed", "models",
                                             "trained", "status"]  # fmt: skip
    assert [line.split()[-1] for line in table.splitlines()[2:5]] == ["failed", "ok", "ok"]
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err  # ipykernel's TCP warning
    assert os.environ.get(progress.ENV) is None  # the side channel is the runner's only


def test_estimate_prefers_the_recorded_run(tmp_path):
    metrics = tmp_path / "m.json"
    none = tmp_path / "none.ipynb"
    assert chapters.estimate_seconds(none, metrics, "cpu")[0] == 900
    # a chapter the book has timed: that timing, until this machine records its own
    assert chapters.estimate_seconds(none, metrics, "cpu", "08_polymnist")[1].startswith(
        "the book's timing")  # fmt: skip
    run = {"dataset": "polymnist", "method": "mopoe", "seed": 0, "wall_time_s": {"total": 50.0}}
    metrics.write_text(json.dumps({"chapter_wall_time_s": 10.0, "runs": [run]}))
    for chapter in (None, "08_polymnist"):
        assert chapters.estimate_seconds(none, metrics, "cpu", chapter) == (
            60.0, "the recorded runs")  # fmt: skip
    assert "polymnist/mopoe" in chapters.describe_plan("x", "cpu", 0, metrics)


def test_a_bounded_run_never_times_an_unbounded_one_nor_the_other_way_round(tmp_path):
    metrics, executed = tmp_path / "m.json", tmp_path / "x.ipynb"
    run = {"dataset": "polymnist", "method": "mopoe", "seed": 0, "wall_time_s": {"total": 50.0}}
    metrics.write_text(json.dumps({"runs": [run], "bounded": None}))  # a full run recorded
    assert chapters.estimate_seconds(executed, metrics, "paper", "08_polymnist", 2) == (
        None, "no earlier run bounded to 2 updates")  # fmt: skip
    assert chapters.estimate_seconds(executed, metrics, "paper", "08_polymnist")[0] == 50.0
    metrics.write_text(json.dumps({"runs": [run], "bounded": [2]}))  # a bounded run recorded
    assert chapters.estimate_seconds(executed, metrics, "paper", None, 2)[0] == 50.0
    assert chapters.estimate_seconds(executed, metrics, "paper", None, 3)[0] is None
    assert chapters.estimate_seconds(executed, metrics, "paper")[0] == 6 * 3600  # rough figure
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"duration": 7.0, "parameters": {"profile": "paper", "max_steps": 2}}
    nbformat.write(nb, executed)
    assert chapters.estimate_seconds(executed, metrics, "paper", None, 2) == (
        7.0, "the previous execution")  # fmt: skip
    assert chapters.estimate_seconds(executed, metrics, "paper")[0] == 6 * 3600
    assert chapters.describe_left([(60.0, "a"), (None, "b"), (3540.0, "c")]) == (
        "about 60 min left for 3 chapters, 1 of them without an estimate")  # fmt: skip
    assert chapters.describe_left([(None, "b")]) == "time left for 1 chapter unknown"


def test_the_closing_comparison_lists_the_values_outside_tolerance(tmp_path):
    ok = {"table": "table2", "row": "MoPoE", "column": "S", "value": 0.85}
    bad = dict(ok, value=0.10)
    doc = {"comparable_to_paper": True, "runs": [{}], "values": [ok, bad]}
    (tmp_path / "09.json").write_text(json.dumps(doc))
    table = chapters.comparison_table([{"chapter": "09.ipynb", "metrics": str(tmp_path / "09.json")},
                                       {"chapter": "10.ipynb"}])  # fmt: skip
    lines = table.splitlines()
    assert lines[2].split()[:4] == ["09.ipynb", "2", "1", "differs"]
    assert "did not finish" in lines[3]
    assert lines[4].startswith("09.ipynb: table2 MoPoE S: this run 0.1, published 0.8")


def test_max_steps_is_passed_only_to_the_chapters_that_declare_it():
    declared = {p.stem: chapters._declared_parameters(p)
                for p in sorted(chapters.EXPERIMENTS.glob("[0-9]*.ipynb"))}  # fmt: skip
    assert "max_steps" not in declared.pop("00_datasets")  # it trains nothing
    assert declared and all("max_steps" in names for names in declared.values()), declared


def test_a_run_that_is_not_comparable_gives_every_reason_once_with_its_models(tmp_path):
    from mopoe_lib.config import bounded_overrides, make_config

    def fake(method, profile, bound, real):
        cfg = make_config("polymnist", method, profile, bounded_overrides(bound))
        info = {"description": "PolyMNIST (offline)", "comparable_to_paper": real}
        return experiment.Run(cfg, None, {"data": {"train": info}}, tmp_path, False)

    runs = [fake("mopoe", "paper", 2, False), fake("mvae", "paper", 2, False)]
    text = experiment.not_comparable_reason(runs)
    assert text == ("polymnist/mopoe, polymnist/mvae: trained on PolyMNIST (offline), not the "
                    "paper's data; polymnist/mopoe, polymnist/mvae: a bounded run (2 updates "
                    "and a small evaluation, train.max_steps): a check of the code, not a "
                    "reproduction.")  # fmt: skip
    assert "the cpu profile" in experiment.not_comparable_reason([fake("mopoe", "cpu", None, True)])
    full = fake("mopoe", "paper", None, True)
    assert experiment.not_comparable_reason([full]) == "" and experiment.comparable_to_paper(full)
    assert not experiment.comparable_to_paper(fake("mopoe", "paper", 2, True))


def test_report_goes_to_the_side_channel_only_under_the_runner(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.report("plain")
    assert capsys.readouterr().out == "plain\n"
    channel = tmp_path / "p.progress"
    monkeypatch.setenv(progress.ENV, str(channel))
    progress.report("side")
    assert capsys.readouterr().out == "" and channel.read_text() == "side\n"


def test_paths_are_shown_relative():
    assert experiment.display_path(ROOT / "runs" / "a") == "runs/a"
    text = experiment.relative_paths(f"reusing {ROOT}/runs/x and /tmp/pytest/r/polymnist/m/s1")
    assert text == "reusing runs/x and …/polymnist/m/s1"
    assert experiment.relative_paths(text) == text  # idempotent


class _Stop(Exception):
    pass


def test_an_interrupted_model_resumes_from_its_checkpoint(tmp_path):
    kw = dict(profile="smoke", data_root=tmp_path / "data", runs_root=tmp_path / "runs",
              overrides={"train.epochs": 2, "train.checkpoint_every": 1, "eval.enabled": False,
                         "train.curve_every_steps": 0})  # fmt: skip

    def interrupt_in_epoch_two(line):  # after epoch 1's checkpoint, before epoch 2's
        if "epoch 2/2" in line:
            raise _Stop

    with pytest.raises(_Stop):
        experiment.train_or_load("polymnist", "mopoe", log=interrupt_in_epoch_two, **kw)
    lines: list[str] = []
    run = experiment.train_or_load("polymnist", "mopoe", log=lines.append, **kw)
    assert run.trained_now and run.metrics["train"]["epochs"] == 2
    assert any("resumed from" in line and "at epoch 1" in line for line in lines), lines
    # both sessions' training time is counted, and both sessions are in the kept log
    assert run.metrics["wall_time_s"]["train_all_sessions"] > run.metrics["wall_time_s"]["train"]
    assert sum("epoch 1/2" in line for line in run.log) == 1
    again = experiment.train_or_load("polymnist", "mopoe", **kw)  # the default log, as chapters
    assert not again.trained_now and any("reusing" in line for line in again.log)
    assert str(tmp_path) not in experiment.log_block([run, again]).data
