"""Fixtures shared by several test files."""

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
def book_html(tmp_path_factory) -> Path:
    """Build the book (warnings are errors) into a temporary folder; return its HTML."""
    out = tmp_path_factory.mktemp("browser-book")
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [
        str(jb) if jb.exists() else shutil.which("jupyter-book") or "jupyter-book",
        "build",
        str(ROOT),
        "--toc",
        str(TOC),
        "--path-output",
        str(out),
        "-W",
        "-n",
        "--keep-going",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return out / "_build" / "html"
