"""The mutation suite: every planted mistake must fail a named unit test and a chapter assert.

Each plant of tests/mutation_driver.py is applied to a temporary copy of the library, in a
fresh interpreter, so the checkout is never modified and no import leaks between plants.
A check that passes with the mistake planted could not fail: this is how the suite finds
one. Add a plant here whenever a review finds a mistake that went through.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_driver import PLANTS, ROOT, planted_source  # noqa: E402


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_every_plant_still_fits_the_source(name):
    """A plant whose text no longer occurs would plant nothing and prove nothing."""
    plant = PLANTS[name]
    text = (ROOT / "mopoe_lib" / plant.file).read_text()
    assert planted_source(plant, text) != text


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_planted_mistake_fails_a_named_test_and_a_chapter_assert(name):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutation_driver.py"), name],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["test_failed"], f"{report['test']} passed with {name} planted"
    assert report["chapter_exception"] == "AssertionError", (
        f"chapter {report['chapter']} under {name}: {report['chapter_exception']} "
        f"in cell {report['chapter_cell']}: {report['chapter_message']}"
    )


def test_chapter_7_table_lists_every_plant():
    """The closing note of Part I gives the table of plants and the tests they fail."""
    text = (ROOT / "book" / "theory" / "07_library_tour.ipynb").read_text()
    for name, plant in PLANTS.items():
        assert f"`{name}`" in text, f"chapter 7's table lacks the plant {name}"
        assert plant.test.split("::")[1] in text, f"chapter 7's table lacks {plant.test}"
