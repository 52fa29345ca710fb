"""Keep the equation registry of chapter 7 in step with the code and the chapters."""

from pathlib import Path

import pytest

from mopoe_lib import equations as E

THEORY = Path(__file__).resolve().parents[1] / "book" / "theory"
CHAPTERS = sorted(THEORY.glob("0[2-7]_*.ipynb"))


def test_the_chapters_exist():
    assert len(CHAPTERS) == 6, [p.name for p in CHAPTERS]


def test_labels_are_unique():
    labels = [e.label for e in E.REGISTRY]
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize("entry", E.REGISTRY, ids=lambda e: e.label)
def test_every_function_imports_and_names_its_equation(entry):
    function = E.resolve(entry.function)
    assert callable(function)
    assert entry.mention in (function.__doc__ or ""), (
        f"the docstring of {entry.function} does not mention {entry.mention!r}"
    )
    assert (THEORY / f"{entry.chapter}.ipynb").exists()


def _labels_by_chapter():
    return {p.stem: E.labels_in_notebook(p) for p in CHAPTERS}


def test_every_registered_label_is_in_its_chapter():
    by_chapter = _labels_by_chapter()
    for e in E.REGISTRY:
        assert e.label in by_chapter.get(e.chapter, []), f"{e.label} is not defined in {e.chapter}"


def test_every_chapter_label_is_registered():
    registered = {e.label for e in E.REGISTRY}
    for chapter, labels in _labels_by_chapter().items():
        assert len(labels) == len(set(labels)), f"duplicate equation label in {chapter}"
        missing = set(labels) - registered
        assert not missing, f"{chapter} defines unregistered equations {sorted(missing)}"


def test_label_parser():
    text = "$$\na = b\n$$ (eq-one)\n\n\\begin{equation}\\label{eq-two} c \\end{equation}"
    assert E.labels_in_markdown(text) == ["eq-one", "eq-two"]


def test_resolve_rejects_unknown_paths():
    with pytest.raises((ImportError, AttributeError)):
        E.resolve("mopoe_lib.objectives.no_such_function")


def test_table_has_a_row_per_equation():
    table = E.table_markdown()
    assert len(table.splitlines()) == 2 + len(E.REGISTRY)
    for line in table.splitlines()[2:]:
        assert line.count("|") - line.count("\\|") == 6  # five cells, pipes escaped
