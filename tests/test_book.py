"""The book builds with warnings as errors and renders math, proofs and glued numbers."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [
        str(jb) if jb.exists() else shutil.which("jupyter-book"),
        "build",
        str(ROOT),
        "--path-output",
        str(out),
        "-W",
        "-n",
        "--keep-going",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return out / "_build" / "html"


@pytest.mark.slow
def test_index_exists(built_book):
    assert (built_book / "index.html").exists()


@pytest.mark.slow
def test_chapter_one_has_math_and_a_rendered_definition(built_book):
    html = (built_book / "book" / "theory" / "01_multimodal_problem.html").read_text()
    assert 'class="proof definition admonition"' in html
    assert "prf:definition" not in html  # no raw directive text
    assert html.count('class="math') >= 5
    assert "bibliography.html#" in html  # citations resolve


@pytest.mark.slow
def test_glued_numbers_are_rendered(built_book):
    html = (built_book / "book" / "theory" / "01_multimodal_problem.html").read_text()
    assert re.search(r"standard deviation <span[^>]*>0\.\d{3}</span>", html)
