"""The published numbers: well-formed, and each one appears in its source text."""

import re
from pathlib import Path

import pytest

from mopoe_lib import published as P

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


def test_every_entry_is_complete():
    for e in P.entries():
        assert e.source in P.SOURCES
        assert isinstance(e.value, int | float)
        assert e.std is None or e.std >= 0
    assert P.lookup("table2", "MoPoE", "M,S").value == 0.97
    assert P.lookup("figure3_joint_coherence", "MMVAE", "joint").std == 1.9
    with pytest.raises(KeyError, match="rows"):
        P.lookup("table2", "JMVAE", "M")


def _normalize(text: str) -> str:
    # the PDF extraction renders a few zeros as the letter O and inserts stray spaces
    return re.sub(r"(?<=\d)O|O(?=±)", "0", text).replace("0. ", "0.")


@pytest.mark.skipif(not SEEDS.exists(), reason="the paper's text lives in ../shared/seeds")
def test_paper_numbers_appear_in_the_paper_text():
    paper = _normalize(next(SEEDS.glob("001_*.txt")).read_text())
    missing = []
    for e in P.entries():
        if e.source != "paper":
            continue
        if e.std is not None:
            value = f"{e.value:.2f}" if abs(e.value) < 1 else f"{e.value:g}"
            std = f"{e.std:.2f}" if abs(e.value) < 1 else f"{e.std:g}"
            if e.table == "figure3_joint_coherence":
                pattern = rf"{e.value:.1f} \(±{e.std:.1f}\)"
            else:
                pattern = re.escape(f"{value}±{std}")
        else:
            value = f"{e.value:.2f}" if abs(e.value) < 1 else f"{e.value:g}"
            pattern = rf"(?<![\d.]){re.escape(value)}(?![\d])"
        if not re.search(pattern, paper):
            missing.append((e.table, e.row, e.column, pattern))
    assert not missing, missing


@pytest.mark.skipif(not SEEDS.exists(), reason="the slides' text lives in ../shared/seeds")
def test_slides_numbers_appear_in_the_slides_text():
    slides = next(SEEDS.glob("003_*.txt")).read_text()
    for e in P.entries("mmvae_loglik"):
        assert f"{e.value:.2f}" in slides, e
