"""Fixtures shared by several test files.

The training chapters run once per session under the ``smoke`` profile, with papermill,
into a temporary tree (data, runs, executed copies, metrics), so a test run never
touches a reader's ``data/``, ``runs/`` or executed ``cpu`` chapters. The book is then
built from a temporary copy of its sources holding those executed copies.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# MOPOE_BOOK_TOC builds the book from another table of contents (for checking extra pages)
TOC = Path(os.environ.get("MOPOE_BOOK_TOC") or ROOT / "_toc.yml")


@pytest.fixture(scope="session")
def smoke_chapters(tmp_path_factory) -> Path:
    """Every training chapter executed under ``smoke``; returns the tree's root.

    ``<root>/executed/*.ipynb`` are the executed copies, ``<root>/metrics/*.json`` what
    each chapter reported, ``<root>/runs`` and ``<root>/data`` what they trained on.
    """
    from mopoe_lib.chapters import run_training_chapters

    root = tmp_path_factory.mktemp("smoke-chapters")
    run_training_chapters(
        "smoke", data_root=str(root / "data"), runs_root=str(root / "runs"),
        out_dir=root / "executed", metrics_dir=root / "metrics", force=True,
    )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def book_source(tmp_path_factory, smoke_chapters) -> Path:
    """A copy of the book's sources with the smoke-executed training chapters in place."""
    src = tmp_path_factory.mktemp("book-source")
    ignore = shutil.ignore_patterns("executed", ".ipynb_checkpoints", "__pycache__")
    shutil.copytree(ROOT / "book", src / "book", ignore=ignore)
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    shutil.copy(TOC, src / "_toc.yml")
    executed = src / "book" / "experiments" / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    for nb in (smoke_chapters / "executed").glob("*.ipynb"):
        shutil.copy(nb, executed / nb.name)
    return src


@pytest.fixture(scope="session")
def book_html(tmp_path_factory, book_source) -> Path:
    """Build the book (warnings are errors) into a temporary folder; return its HTML."""
    out = tmp_path_factory.mktemp("book-build")
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [
        str(jb) if jb.exists() else shutil.which("jupyter-book") or "jupyter-book",
        "build", str(book_source), "--path-output", str(out), "-W", "-n", "--keep-going",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=book_source, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return out / "_build" / "html"
