"""The project's own consistency: environment.yml vs pyproject.toml, layout, lint."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_the_project_with_the_makefiles_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    pip_block = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "pip" in deps
    editable = [p for p in pip_block if p.startswith("-e")]
    assert len(editable) == 1, "environment.yml must install the project itself, editable"
    extras = set(re.search(r"\[(.*)\]", editable[0]).group(1).split(","))
    makefile = (ROOT / "Makefile").read_text()
    # every extra that a make target installs (setup's, and `make lab`'s on top of them)
    installs = re.findall(r'pip install -q -e "\.\[(.*?)\]"', makefile)
    assert installs, "the Makefile installs the project with no extras"
    make_extras = set().union(*(i.split(",") for i in installs))
    assert extras == make_extras, (extras, make_extras)
    assert extras <= set(_pyproject()["project"]["optional-dependencies"])
    # the conda Python satisfies requires-python
    version = tuple(int(x) for x in python.split("=")[1].split("."))
    minimum = tuple(
        int(x)
        for x in re.search(r">=([\d.]+)", _pyproject()["project"]["requires-python"])
        .group(1)
        .split(".")
    )
    assert version >= minimum
    # no package is pinned in environment.yml behind pyproject's back
    assert all(p.startswith("-e") for p in pip_block)


def test_dependencies_are_deliberate():
    deps = " ".join(_pyproject()["project"]["dependencies"])
    book = " ".join(_pyproject()["project"]["optional-dependencies"]["book"])
    assert "torch>=2.6,!=2.13.0" in deps  # the local CPU-only 2.13.0 wheel breaks torchvision
    assert "jupyter-book>=1.0.4,<2" in book  # v2 is another tool and cannot build offline
    for name in ["torchvision", "scikit-learn", "matplotlib", "ipywidgets", "tqdm", "mlxtend"]:
        assert name in deps
    for name in ["sphinx-proof", "sphinx-exercise", "papermill"]:
        assert name in book


def test_design_card_layout_exists():
    for path in [
        "book",
        "book/theory",
        "book/experiments",
        "mopoe_lib",
        "data_prep",
        "tests",
        "_config.yml",
        "_toc.yml",
        "environment.yml",
        "pyproject.toml",
        "README.md",
        "Makefile",
        ".ci/run",
    ]:
        assert (ROOT / path).exists(), path


def test_every_toc_entry_exists_and_every_chapter_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [c["file"] for c in part["chapters"]]
    for f in files:
        assert (
            any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb")) or "executed" in f
        ), f
    for nb in (ROOT / "book" / "theory").glob("[0-9]*.ipynb"):
        assert f"book/theory/{nb.stem}" in files, f"{nb.name} is not in _toc.yml"


def test_theory_notebooks_use_the_python3_kernel_and_are_executed():
    import nbformat

    for path in sorted((ROOT / "book" / "theory").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.execution_count is not None for c in code), (
            f"{path.name} has unexecuted cells; run `python -m mopoe_lib.chapters --theory`"
        )


def test_readme_gives_exactly_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands\n(.*?)\n## ", readme, re.S).group(1)
    commands = re.findall(r"^\s*(make \w+)\s*$", block, re.M)
    assert commands == ["make book", "make test"], commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "exit 5" not in ci.split("make test")[0]


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff is part of the test extra",
)
def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    check = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_build_time_execution_skips_exactly_the_training_chapters():
    """The book renders papermill's executed copies as they are: if the build re-ran them
    (with reused runs), the pages would show the rerun's cost ("ran in 2 s", "reused")
    instead of the training run's. myst-nb matches the patterns with PurePosixPath.match,
    which is anchored at the right and keeps `*` inside one path component."""
    from pathlib import PurePosixPath

    patterns = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["exclude_patterns"]

    def excluded(path):
        return any(PurePosixPath(path.as_posix()).match(p) for p in patterns)

    experiments = ROOT / "book" / "experiments"
    chapters = sorted(experiments.glob("[0-9]*.ipynb"))
    assert chapters
    for nb in chapters:
        assert excluded(nb), nb
        assert excluded(experiments / "executed" / nb.name), nb.name
    for nb in [*ROOT.glob("book/theory/*.ipynb"), *ROOT.glob("book/appendix/*.ipynb")]:
        assert not excluded(nb), nb
