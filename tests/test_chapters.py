"""The training chapters: papermill inputs that run under `smoke` and report their results."""

import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "book" / "experiments").glob("[0-9]*.ipynb"))
PARAMETERS = ["profile", "device", "seed", "data_root", "runs_root", "metrics_path"]


def test_there_are_training_chapters():
    assert SOURCES, "book/experiments has no chapters"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_chapter_source_is_a_clean_papermill_input(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), (
        f"{path.name} is committed with outputs; the book renders papermill's executed copy"
    )
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    names = [line.split("=")[0].strip() for line in params.source.splitlines() if "=" in line]
    # chapters that train take max_steps too (a bounded run; 00_datasets trains nothing)
    assert names in (PARAMETERS, [*PARAMETERS, "max_steps"]), names
    assert ("max_steps" in names) == ("train_or_load" in "".join(c.source for c in code))


@pytest.mark.slow
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_chapter_runs_under_smoke_and_reports_its_cost(smoke_chapters, path):
    executed = smoke_chapters / "executed" / path.name
    nb = nbformat.read(executed, as_version=4)
    assert not nb.metadata.get("papermill", {}).get("exception"), f"{path.name} failed"
    metrics = smoke_chapters / "metrics" / f"{path.stem}.smoke.metrics.json"
    doc = json.loads(metrics.read_text())
    assert doc["profile"] in (["smoke"], [])
    for run in doc["runs"]:
        assert run["profile"] == "smoke" and run["seed"] in doc.get("seeds", [0])
        assert run["wall_time_s"]["total"] > 0 and run["device"]
        assert run["data"]
    for claim in doc["claims"]:
        assert set(claim) >= {"text", "held", "detail"}
    assert not doc["comparable_to_paper"]  # offline smoke data are never the paper's


def test_the_command_line_passes_every_root_to_the_chapters(monkeypatch, capsys):
    from mopoe_lib import chapters

    seen = {}

    def fake(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        return [{"chapter": "x", "seconds": 0.0}]

    monkeypatch.setattr(chapters, "run_training_chapters", fake)
    chapters.main(["--profile", "smoke", "--data-root", "/d", "--runs-root", "/r", "--seed", "3"])
    assert seen["args"][:4] == ("smoke", "cpu", "/d", 3)
    assert seen["kwargs"]["runs_root"] == "/r"
