"""What the training chapters share: train-or-load, metrics files, comparison and claims tables.

A chapter calls :func:`train_or_load` once per model. A run lives in
``runs_root/<dataset>/<method>/<profile>-seed<seed>-<config hash>/``; when that folder
holds finished metrics for the same configuration and data, the chapter reuses the
checkpoint that the same code wrote instead of training again; an interrupted run
resumes from its last checkpoint. The results a chapter reports go through
:func:`write_chapter_metrics` (machine-readable JSON) and :func:`comparison_rows` /
:func:`claims_table` (the "published | this run | data | profile" tables of the book).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import progress as progress_mod
from . import published
from .config import Config, bounded_overrides, make_config
from .model import MultimodalVAE, build_model

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One trained (or reloaded) model and everything known about how it was obtained."""

    cfg: Config
    model: MultimodalVAE
    metrics: dict
    out: Path
    trained_now: bool
    log: list[str] = field(default_factory=list)  # every session's log lines (train.log)

    @property
    def eval(self) -> dict:
        return self.metrics.get("eval", {})

    @property
    def cost(self) -> str:
        """Wall time, device, profile and seed, the cost that every result carries."""
        wt = self.metrics.get("wall_time_s", {})
        return (f"{self.cfg.dataset}/{self.cfg.method}: {wt.get('total', float('nan')):.0f} s on "
                f"{self.metrics.get('device_name', self.metrics.get('device'))}, profile "
                f"{self.cfg.profile}, seed {self.cfg.seed}")  # fmt: skip


@dataclass
class ChapterPaths:
    data_root: Path
    runs_root: Path
    metrics_path: Path


def chapter_paths(
    chapter: str,
    profile: str,
    data_root: str | Path | None = None,
    runs_root: str | Path | None = None,
    metrics_path: str | Path | None = None,
) -> ChapterPaths:
    """Resolve a chapter's parameters to paths (None means the book's defaults).

    Defaults: data in ``<repo>/data`` (``<repo>/data/smoke`` for the smoke profile, so tiny
    smoke sets never replace the offline data), runs in ``<repo>/runs``, and metrics in
    ``book/experiments/executed/<chapter>.<profile>.metrics.json``.
    """
    if data_root is None:
        data_root = ROOT / "data" / "smoke" if profile == "smoke" else ROOT / "data"
    if runs_root is None:
        runs_root = ROOT / "runs"
    if metrics_path is None:
        metrics_path = (
            ROOT / "book" / "experiments" / "executed" / f"{chapter}.{profile}.metrics.json"
        )
    return ChapterPaths(Path(data_root), Path(runs_root), Path(metrics_path))


TRAIN_LOG = "train.log"
# an absolute POSIX path of two or more components (a run folder, a data root)
_ABSOLUTE = re.compile(r"(?<![\w.~:/…-])/(?:[\w.+@-]+/)+[\w.+@-]*")


def display_path(path: str | Path) -> str:
    """A path as the book shows it: relative to the repository when inside it, else its
    last three components after an ellipsis (never the machine's absolute path)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(ROOT).as_posix() or "."
    except ValueError:
        return "…/" + "/".join(path.parts[-3:])


def relative_paths(text: str) -> str:
    """``text`` with every absolute path replaced as :func:`display_path` does."""
    return _ABSOLUTE.sub(lambda m: display_path(m.group(0)), text)


def config_hash(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def run_dir(cfg: Config, runs_root: str | Path) -> Path:
    return (
        Path(runs_root)
        / cfg.dataset
        / cfg.method
        / f"{cfg.profile}-seed{cfg.seed}-{config_hash(cfg)}"
    )


_SESSION: dict[Path, Run] = {}  # every run this process trained or reloaded, in order


def session_runs() -> list[Run]:
    """The runs :func:`train_or_load` returned in this process (a chapter's kernel: the
    chapter's models), each once."""
    return list(_SESSION.values())


def train_or_load(
    dataset: str,
    method: str,
    *,
    profile: str,
    seed: int = 0,
    device: str = "cpu",
    data_root: str | Path = ROOT / "data",
    runs_root: str | Path = ROOT / "runs",
    overrides: dict | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    preset: str | None = None,
    max_steps: int | None = None,
) -> Run:
    """Train one model of a chapter, or reload the run that the same code wrote before.

    ``overrides`` are dotted config keys (``{"model.beta": 1.0}``) on top of the profile
    and of ``preset`` (``"official"``: :data:`mopoe_lib.config.PRESETS`). Log lines go to
    ``log``, by default :func:`mopoe_lib.progress.report` (the chapter runner's side
    channel, else stdout), and are kept in the run folder's ``train.log`` and in
    ``Run.log`` (for :func:`log_block`). ``max_steps`` bounds the run
    (:func:`mopoe_lib.config.bounded_overrides`: a check of the code path, never a
    reproduction; the bound goes last, so the chapter's own overrides cannot lift it).
    """
    from .train import run as train_run

    cfg = make_config(dataset, method, profile,
                      dict(overrides or {}, seed=seed, **bounded_overrides(max_steps)),
                      preset=preset)  # fmt: skip
    if dataset == "cub" and cfg.model.vocab_size is None:  # the prepared captions' vocabulary
        from .data import cub_vocab_size

        cfg.model.vocab_size = cub_vocab_size(data_root)
    out = run_dir(cfg, runs_root)
    log_file = out / TRAIN_LOG
    earlier = log_file.read_text().splitlines() if log_file.is_file() else []
    session: list[str] = []

    def note(line: str) -> None:
        session.append(line)
        (log or progress_mod.report)(line)  # `progress` is the bar flag

    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("config") == cfg.to_dict():
            model = build_model(cfg)
            state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
            note(f"[experiment] reusing {display_path(out)} (trained before: "
                 f"{metrics['wall_time_s']['total']:.0f} s)")  # fmt: skip
            run = Run(cfg, model.to(device).eval(), metrics, out, trained_now=False,
                      log=earlier + session)  # fmt: skip
            _SESSION[out] = run
            return run
    resume = (out / "checkpoint.pt").is_file()
    note(f"[experiment] {'resuming' if resume else 'training'} {dataset}/{method} (profile "
         f"{profile}, seed {seed}) in {display_path(out)}")  # fmt: skip

    def keep(line: str, echo: bool = True) -> None:  # every session stays in train.log
        if echo:
            note(line)
        out.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as f:
            f.write(relative_paths(line) + "\n")

    keep(session[-1], echo=False)
    metrics = train_run(cfg, out, data_root=data_root, resume=resume, device=device,
                        progress=progress, log=keep)  # fmt: skip
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    run = Run(cfg, model.to(device).eval(), metrics, out, trained_now=True,
              log=log_file.read_text().splitlines())  # fmt: skip
    _SESSION[out] = run
    return run


# ---------------------------------------------------------------------------
# metrics files


def data_description(run: Run) -> str:
    """Which data a run used, in words, with stand-ins named as such."""
    info = run.metrics.get("data", {}).get("train") or {}
    desc = info.get("description") or info.get("source") or run.cfg.dataset
    if info.get("stand_in"):
        return f"{desc} (stand-in)"
    return desc


def comparable_to_paper(run: Run) -> bool:
    return not_comparable_reasons(run) == []


def not_comparable_reasons(run: Run) -> list[str]:
    """Why a run's numbers cannot be compared with the published ones (empty: they can)."""
    info = run.metrics.get("data", {}).get("train") or {}
    reasons = []
    if run.cfg.profile != "paper":
        reasons.append(f"the {run.cfg.profile} profile, not the paper's settings")
    if not info.get("comparable_to_paper"):
        reasons.append(f"trained on {data_description(run).rstrip('.')}, not the paper's data")
    if run.cfg.train.max_steps is not None:
        reasons.append(f"a bounded run ({run.cfg.train.max_steps} updates and a small "
                       "evaluation, train.max_steps): a check of the code, not a reproduction")  # fmt: skip
    return reasons


def not_comparable_reason(runs: Iterable[Run]) -> str:
    """Every reason of every run in one sentence, each once with the models it concerns
    ("" when all are comparable)."""
    models: dict[str, dict[str, None]] = {}
    for r in runs:
        for reason in not_comparable_reasons(r):
            models.setdefault(reason, {})[f"{r.cfg.dataset}/{r.cfg.method}"] = None
    parts = [f"{', '.join(names)}: {reason}" for reason, names in models.items()]
    return "; ".join(parts) + ("." if parts else "")


def comparability_note(runs: Iterable[Run]):
    """What a chapter says before its tables: whether its numbers can be set against the
    published ones, and if not, every reason (Markdown, for ``display``)."""
    from IPython.display import Markdown

    runs = list(runs)
    reason = not_comparable_reason(runs)
    if not reason:
        return Markdown("**Comparable with the published numbers:** the paper's settings on "
                        "the paper's data, trained in full; the tables below set them side by "
                        "side and the published-numbers test checks them within the stated "
                        "tolerance.")  # fmt: skip
    return Markdown(f"**This is not a reproduction of the published numbers:** {reason} The "
                    "published numbers are shown for reference only, and only the paper's "
                    "qualitative claims are checked.")  # fmt: skip


@dataclass
class Claim:
    """A qualitative claim of the paper, checked on this run's numbers."""

    text: str
    held: bool
    detail: str = ""
    source: str = ""


def write_chapter_metrics(
    path: str | Path,
    chapter: str,
    runs: Iterable[Run],
    values: list[dict],
    claims: Iterable[Claim] = (),
    extra: dict | None = None,
) -> dict:
    """Write a chapter's results as JSON: every reported value, the claims, and their cost.

    ``values`` are dicts with at least ``table``, ``row``, ``column``, ``value`` (the keys of
    :mod:`mopoe_lib.published`), so tests can compare them with the published numbers.
    """
    runs = list(runs)
    doc = {
        "chapter": chapter,
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "profile": sorted({r.cfg.profile for r in runs}),
        "comparable_to_paper": all(comparable_to_paper(r) for r in runs) if runs else False,
        "not_comparable_reason": not_comparable_reason(runs) if runs else "no model was run",
        # the bounds of bounded runs (train.max_steps); None: every run trained in full
        "bounded": sorted({r.cfg.train.max_steps for r in runs} - {None}) or None,
        "runs": [
            {
                "dataset": r.cfg.dataset,
                "method": r.cfg.method,
                "profile": r.cfg.profile,
                "seed": r.cfg.seed,
                "missing_ratio": r.cfg.data.missing_ratio,
                "max_steps": r.cfg.train.max_steps,
                "global_step": (r.metrics.get("train") or {}).get("global_step"),
                "device": r.metrics.get("device_name"),
                "wall_time_s": r.metrics.get("wall_time_s"),
                "data": data_description(r),
                "run_dir": str(r.out),
                "trained_now": r.trained_now,
            }
            for r in runs
        ],  # fmt: skip
        "values": values,
        "claims": [c.__dict__ for c in claims],
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return doc


# ---------------------------------------------------------------------------
# tables for the book


def comparison_rows(table: str, values: dict[tuple[str, str], float], data: str, profile: str,
                    fmt: str = "{:.2f}") -> list[list[str]]:  # fmt: skip
    """Rows "model | column | published | this run | data | profile" for a published table.

    ``values`` maps (row, column) of the published table to this run's number.
    """
    rows = []
    for (row, column), value in values.items():
        pub = published.lookup(table, row, column)
        p = fmt.format(pub.value) + (f" ± {fmt.format(pub.std)}" if pub.std is not None else "")
        rows.append([row, column, p, fmt.format(value), data, profile])
    return rows


def html_table(header: list[str], rows: list[list], caption: str = "") -> str:
    """A plain HTML table (rendered by Jupyter and the book; no pandas needed)."""
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{_num(c)}>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_NUMBER = re.compile(r"^[-+−]?[\d,]*\.?\d+(e[-+]?\d+)?( ?[±%].*)?$")


def _num(cell) -> str:
    """The class of a numeric cell (right-aligned by book/_static/mopoe.css)."""
    text = str(cell).strip()
    return ' class="num"' if isinstance(cell, int | float) or _NUMBER.match(text) else ""


def show_comparison(table: str, values: dict[tuple[str, str], float], data: str, profile: str,
                    fmt: str = "{:.2f}"):  # fmt: skip
    from IPython.display import HTML

    title = published.tables()[table]["title"]
    header = ["model", "column", "published", "this run", "data", "profile"]
    return HTML(html_table(header, comparison_rows(table, values, data, profile, fmt), title))


def claims_table(claims: Iterable[Claim]):
    from IPython.display import HTML

    rows = [[c.text, "held" if c.held else "not held", c.detail] for c in claims]
    return HTML(html_table(["claim of the paper", "this run", "numbers"], rows))


def held_on_seeds(claims_by_seed: Mapping[int, Iterable[Claim]]) -> dict[str, list[int]]:
    """{claim text: the seeds on which it held}, in the order of the first seed's claims."""
    out: dict[str, list[int]] = {}
    for seed, claims in claims_by_seed.items():
        for c in claims:
            out.setdefault(c.text, [])
            if c.held:
                out[c.text].append(seed)
    return out


def claims_table_seeds(claims_by_seed: Mapping[int, Iterable[Claim]]):
    """One row per claim: on how many of the seeds it held, and each seed's numbers."""
    from IPython.display import HTML

    by_seed = {s: {c.text: c for c in cs} for s, cs in claims_by_seed.items()}
    held = held_on_seeds(claims_by_seed)
    n = len(by_seed)
    rows = []
    for text, seeds in held.items():
        numbers = "; ".join(f"seed {s}: {by_seed[s][text].detail}" for s in by_seed)
        rows.append([text, f"{len(seeds)} of {n}" + (f" ({', '.join(map(str, seeds))})"
                                                     if 0 < len(seeds) < n else ""), numbers])  # fmt: skip
    return HTML(html_table(["claim of the paper", "held on seeds", "numbers"], rows))


@dataclass
class Timer:
    """Wall time of a chapter, reported with its results."""

    start: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return time.perf_counter() - self.start


# ---------------------------------------------------------------------------
# what a chapter's run cost, and its log, for the reader


def cost_note(runs: Iterable[Run], chapter_seconds: float | None = None) -> str:
    """One line (Markdown) on what the runs shown cost: models, time, device, profile, seeds.

    A reused model counts with the time it took when it was trained.
    """
    runs = list(runs)
    if not runs:
        return "**Cost of this run:** no model was trained."
    total = sum(r.metrics.get("wall_time_s", {}).get("total", 0.0) for r in runs)
    now = sum(r.trained_now for r in runs)
    devices = sorted({str(r.metrics.get("device_name") or r.metrics.get("device")) for r in runs})
    profiles = sorted({r.cfg.profile for r in runs})
    seeds = sorted({r.cfg.seed for r in runs})
    reuse = ("all trained now" if now == len(runs) else
             f"{now} trained now, {len(runs) - now} reused from an earlier execution")  # fmt: skip
    chapter = f"; the chapter executed in {chapter_seconds:,.0f} s" if chapter_seconds else ""
    return (f"**Cost of this run:** {len(runs)} model{'s' * (len(runs) != 1)} ({reuse}), "
            f"{total:,.0f} s of training and evaluation on {', '.join(devices)}{chapter}; "
            f"profile `{', '.join(profiles)}`, seed{'s' * (len(seeds) != 1)} "
            f"{', '.join(map(str, seeds))}.")  # fmt: skip


def log_block(runs: Iterable[Run] | Mapping[str, Run], title: str = "Training log"):
    """Every run's log in one collapsed block (HTML ``<details>``), paths relative."""
    from IPython.display import HTML

    runs = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    lines = [relative_paths(line) for r in runs for line in r.log]
    now = sum(r.trained_now for r in runs)
    summary = (f"{title}: {len(runs)} run{'s' * (len(runs) != 1)}, {now} trained now, "
               f"{len(runs) - now} reused ({len(lines)} lines; click to open)")  # fmt: skip
    body = html.escape("\n".join(lines))
    return HTML(f'<details class="mopoe-log"><summary>{html.escape(summary)}</summary>'
                f'<pre class="mopoe-log">{body}</pre></details>')  # fmt: skip
