"""The book builds with warnings as errors and renders math, proofs and glued numbers."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_index_exists(book_html):
    assert (book_html / "index.html").exists()


@pytest.mark.slow
def test_chapter_one_has_math_and_a_rendered_definition(book_html):
    html = (book_html / "book" / "theory" / "01_multimodal_problem.html").read_text()
    assert 'class="proof definition admonition"' in html
    assert "prf:definition" not in html  # no raw directive text
    assert html.count('class="math') >= 5
    assert "bibliography.html#" in html  # citations resolve


@pytest.mark.slow
def test_glued_numbers_are_rendered(book_html):
    html = (book_html / "book" / "theory" / "01_multimodal_problem.html").read_text()
    assert re.search(r"standard deviation <span[^>]*>0\.\d{3}</span>", html)
