"""Run the book's chapters: papermill for the training chapters, nbclient for the theory.

    python -m mopoe_lib.chapters --profile cpu            # training chapters -> executed/
    python -m mopoe_lib.chapters --profile paper --device cuda --data-root /data
    python -m mopoe_lib.chapters --profile paper --data-root /data --max-steps 2  # a check
    python -m mopoe_lib.chapters --theory                 # re-execute theory chapters in place

Training chapters (``book/experiments/*.ipynb``) are kept without outputs; papermill
writes the executed copy to ``book/experiments/executed/``, which the book renders. A
copy is reused when it was made from the same source with the same parameters and
finished without error. Theory chapters keep their outputs in the repository, since
``pytest --nbval`` compares against them; ``--theory`` refreshes them after an edit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "book" / "experiments"
EXECUTED = EXPERIMENTS / "executed"
THEORY = ROOT / "book" / "theory"


def _source_hash(path: Path) -> str:
    """Hash of the code cells only, so that editing prose does not force retraining."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def _is_current(executed: Path, source_hash: str, params: dict) -> bool:
    import nbformat

    if not executed.exists():
        return False
    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("mopoe_book", {})
    pm = nb.metadata.get("papermill", {})
    return (
        meta.get("source_hash") == source_hash
        and meta.get("parameters") == params
        and not pm.get("exception", False)
    )


def run_training_chapters(
    profile: str,
    device: str = "cpu",
    data_root: str | None = None,
    seed: int = 0,
    force: bool = False,
    only: list[str] | None = None,
    out_dir: Path = EXECUTED,
    runs_root: str | None = None,
    metrics_dir: str | Path | None = None,
    sources: Path = EXPERIMENTS,
    write=print,
    max_steps: int | None = None,
) -> list[dict]:
    """Execute every training chapter with papermill; returns one record per chapter.

    ``metrics_dir`` receives each chapter's ``<chapter>.<profile>.metrics.json`` (default:
    next to the executed copies); ``runs_root`` the trained models (default: ``runs/``).
    ``max_steps`` bounds every run of the chapters that declare that parameter (a check of
    the code path: :func:`mopoe_lib.config.bounded_overrides`). Each chapter is announced
    with what it trains, an estimate of its time and of the time left, its training
    progress is reprinted live (:mod:`mopoe_lib.progress`), and a failed chapter does not
    stop the others: its record says ``failed`` (the executed copy stays for reading; the
    next call runs it again, and its models resume from their checkpoints).
    """
    import nbformat

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = []  # (source, executed copy, parameters, metrics file, source hash, current)
    for src in sorted(Path(sources).glob("[0-9]*.ipynb")):
        if only and not any(o in src.stem for o in only):
            continue
        params = {"profile": profile, "device": device, "seed": seed}
        if data_root:
            params["data_root"] = str(data_root)
        if runs_root:
            params["runs_root"] = str(runs_root)
        if metrics_dir:
            params["metrics_path"] = str(Path(metrics_dir) / f"{src.stem}.{profile}.metrics.json")
        if max_steps is not None and "max_steps" in _declared_parameters(src):
            params["max_steps"] = max_steps
        dst = out_dir / src.name
        metrics = Path(params.get("metrics_path") or out_dir / f"{src.stem}.{profile}.metrics.json")
        h = _source_hash(src)
        plan.append((src, dst, params, metrics, h, not force and _is_current(dst, h, params)))
    todo = [p for p in plan if not p[5]]
    estimates = {p[0]: estimate_seconds(p[1], p[3], profile, p[0].stem, p[2].get("max_steps"))
                 for p in todo}  # fmt: skip
    records = []
    for src, dst, params, metrics, h, current in plan:
        if current:
            write(f"[chapters] {src.name}: up to date ({profile}), reused")
            records.append({"chapter": src.name, "status": "ok", "reused": True, "seconds": 0.0,
                            "metrics": str(metrics), **_trained_counts(metrics)})  # fmt: skip
            continue
        write(f"[chapters] {src.name}: {describe_plan(src.stem, profile, seed, metrics)}")
        left = list(estimates.values())[list(estimates).index(src) :]  # this and later ones
        write(f"[chapters] {src.name}: {describe_estimate(*estimates[src])}; "
              f"{describe_left(left)}")  # fmt: skip
        t0 = time.perf_counter()
        status = _execute_with_progress(src, dst, params, write)
        seconds = round(time.perf_counter() - t0, 1)
        if dst.exists() and status == "ok":
            nb = nbformat.read(dst, as_version=4)
            nb.metadata["mopoe_book"] = {"source_hash": h, "parameters": params,
                                         "cost": recorded_cost(metrics)}  # fmt: skip
            _hide_injected_parameters(nb)
            nbformat.write(nb, dst)
        records.append({"chapter": src.name, "status": status, "reused": False,
                        "seconds": seconds, "metrics": str(metrics),
                        **_trained_counts(metrics)})  # fmt: skip
        write(f"[chapters] {src.name}: {status} in {seconds:.0f} s")
        if status == "interrupted":
            break
    return records


def _declared_parameters(src: Path) -> set[str]:
    """The names a chapter's ``parameters`` cell assigns (papermill injects only those)."""
    import ast

    import nbformat

    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            return {t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}  # fmt: skip
    return set()


# -- what a chapter will do, and how long it took before ---------------------------

# Seconds per chapter when no earlier run of the profile is recorded here; a recorded
# run's time replaces them. Measured on 2 idle CPU cores (AMD EPYC): cpu in a fresh-clone
# `make book` at commit bb3a080, smoke with `--profile smoke --force` at 0cb4d97; 12_cub
# alone with a fresh data root (its data and classifier included), 2026-12-07. Other
# chapters, and paper (one GPU, never timed whole here), fall back to a rough figure.
MEASURED_S = {
    "smoke": {"00_datasets": 12, "08_polymnist": 70, "09_mnist_svhn_text": 24,
              "10_celeba": 23, "11_mmvae_mnist_svhn": 12, "12_cub": 10},
    "cpu": {"00_datasets": 8, "08_polymnist": 1576, "09_mnist_svhn_text": 1102,
            "10_celeba": 155, "11_mmvae_mnist_svhn": 326, "12_cub": 199},
}  # fmt: skip
PROFILE_ESTIMATE_S = {"smoke": 120, "cpu": 900, "paper": 6 * 3600}


def describe_plan(chapter: str, profile: str, seed: int, metrics: Path) -> str:
    """What a chapter trains: the models of its last recorded run, else the profile."""
    doc = _read_json(metrics)
    runs = doc.get("runs") if doc else None
    if not runs:
        return (f"trains its models under profile {profile} from seed {seed} (no earlier run "
                "recorded; the models are listed once it has run)")  # fmt: skip
    by = {}
    for r in runs:
        by.setdefault((r["dataset"], r["method"]), set()).add(r["seed"])
    seeds = sorted({r["seed"] for r in runs})
    models = ", ".join(f"{d}/{m}" for d, m in by)
    return (f"trains {len(runs)} model{'s' * (len(runs) != 1)} ({models}) under profile "
            f"{profile}, seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))}; "
            "models trained before are reused")  # fmt: skip


def describe_estimate(seconds: float | None, source: str) -> str:
    if seconds is None:
        return f"no time estimate ({source or 'no earlier run of this profile'})"
    return f"estimated {_human(seconds)} ({source})"


def describe_left(estimates: list[tuple[float | None, str]]) -> str:
    """The time left for this and the chapters after it, from their estimates."""
    n = len(estimates)
    known = [s for s, _ in estimates if s is not None]
    chapters = f"{n} chapter{'s' * (n != 1)}"
    if not known:
        return f"time left for {chapters} unknown"
    unknown = n - len(known)
    rest = f", {unknown} of them without an estimate" if unknown else ""
    return f"about {_human(sum(known))} left for {chapters}{rest}"


def estimate_seconds(
    executed: Path,
    metrics: Path,
    profile: str,
    chapter: str | None = None,
    max_steps: int | None = None,
) -> tuple[float | None, str]:
    """Seconds the chapter is expected to take, and where the figure comes from.

    The earlier execution's papermill duration, else the chapter's recorded wall time plus
    the training time of every model (a first run trains them all), each only when it ran
    with the same profile and the same bound (``max_steps``); else, for an unbounded run,
    the book's own timing (:data:`MEASURED_S`), else :data:`PROFILE_ESTIMATE_S`. A bounded
    run's time says nothing about a full one, nor the other way round.
    """
    import nbformat

    if Path(executed).is_file():
        meta = nbformat.read(executed, as_version=4).metadata.get("papermill", {})
        ran = meta.get("parameters", {})
        same = ran.get("profile") == profile and ran.get("max_steps") == max_steps
        if same and meta.get("duration") and not meta.get("exception"):
            return float(meta["duration"]), "the previous execution"
    doc = _read_json(metrics)
    bound = [max_steps] if max_steps is not None else None
    if doc and doc.get("runs") and doc.get("bounded") == bound:  # the file names the profile
        train = sum((r.get("wall_time_s") or {}).get("total", 0.0) for r in doc["runs"])
        return train + float(doc.get("chapter_wall_time_s", 0.0)), "the recorded runs"
    if max_steps is not None:
        return None, f"no earlier run bounded to {max_steps} updates"
    if chapter in MEASURED_S.get(profile, {}):
        return (float(MEASURED_S[profile][chapter]),
                "the book's timing on 2 idle CPU cores; slower or busier machines take longer")  # fmt: skip
    if profile in PROFILE_ESTIMATE_S:
        return float(PROFILE_ESTIMATE_S[profile]), f"a rough figure for the {profile} profile"
    return None, ""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _trained_counts(metrics: Path) -> dict:
    doc = _read_json(metrics) or {}
    runs = doc.get("runs") or []
    return {"models": len(runs), "trained": sum(bool(r.get("trained_now")) for r in runs)}


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the execution-statistics page ---------------------------------------------------


def recorded_cost(metrics: Path) -> list[dict]:
    """Per model of a chapter's metrics: what the book's statistics page shows."""
    doc = _read_json(metrics) or {}
    keys = ("dataset", "method", "profile", "seed", "device", "trained_now")
    return [{**{k: r.get(k) for k in keys},
             "seconds": (r.get("wall_time_s") or {}).get("total")} for r in doc.get("runs", [])]  # fmt: skip


def execution_statistics(executed_dir: str | Path) -> tuple[list[str], list[list]]:
    """(header, rows) of the training chapters' recorded cost, read from the executed
    copies' metadata (papermill's duration and the runner's ``mopoe_book.cost``)."""
    import nbformat

    header = ["chapter", "executed", "wall time (s)", "models", "trained now", "reused",
              "training + evaluation (s)", "device", "profile", "seeds"]  # fmt: skip
    rows = []
    for path in sorted(Path(executed_dir).glob("[0-9]*.ipynb")):
        meta = nbformat.read(path, as_version=4).metadata
        pm, book = meta.get("papermill", {}), meta.get("mopoe_book", {})
        cost = book.get("cost") or []
        params = book.get("parameters") or pm.get("parameters") or {}
        now = sum(bool(c.get("trained_now")) for c in cost)
        rows.append([
            path.stem, (pm.get("end_time") or "")[:16].replace("T", " "),
            f"{pm.get('duration') or 0:.0f}", len(cost), now, len(cost) - now,
            f"{sum(c.get('seconds') or 0 for c in cost):.0f}",
            ", ".join(sorted({str(c.get("device")) for c in cost})) or params.get("device", ""),
            params.get("profile", ""),
            ", ".join(map(str, sorted({c.get("seed") for c in cost}))) or params.get("seed", ""),
        ])  # fmt: skip
    return header, rows


# -- executing one chapter ---------------------------------------------------------


def kernel_config():
    """The kernel managers' settings: CurveZMQ transport encryption when pyzmq has it.

    ipykernel warns "Kernel is running over TCP without encryption" under every chapter
    unless the kernel manager provisions CurveZMQ keys (jupyter_client's
    ``KernelManager.transport_encryption``; the ``python3`` kernelspec declares support).
    Encrypting the local connection removes the cause rather than filtering the warning.
    """
    import zmq
    from traitlets.config import Config

    config = Config()
    if zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    return config


def _execute_with_progress(src: Path, dst: Path, params: dict, write=print) -> str:
    """papermill with the progress side channel tailed; "ok", "failed" or "interrupted"."""
    import os
    import tempfile

    import papermill as pm

    from . import progress

    fd, name = tempfile.mkstemp(prefix=f"{src.stem}.", suffix=".progress")
    os.close(fd)
    previous = os.environ.get(progress.ENV)
    os.environ[progress.ENV] = name  # the kernel inherits the environment
    try:
        with progress.Tail(Path(name), f"[{src.stem}] ", write):
            pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name="python3",
                                progress_bar=False, cwd=str(src.parent),
                                config=kernel_config())  # fmt: skip
        return "ok"
    except pm.PapermillExecutionError as err:
        write(f"[chapters] {src.name}: failed in cell {err.exec_count}: {err.ename}: "
              f"{str(err.evalue)[:300]} (the executed copy shows the traceback)")  # fmt: skip
        return "failed"
    except KeyboardInterrupt:
        write(f"[chapters] {src.name}: interrupted; run again to resume (trained models are "
              "reused and interrupted ones continue from their checkpoints)")  # fmt: skip
        return "interrupted"
    finally:
        if previous is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = previous
        Path(name).unlink(missing_ok=True)


def closing_table(records: list[dict]) -> str:
    """The runner's last word: a plain-text table of the chapters, their time and status."""
    rows = [("chapter", "seconds", "executed", "models trained", "status")]
    for r in records:
        models = f"{r.get('trained', 0)} of {r['models']}" if r.get("models") else "-"
        rows.append((r["chapter"], f"{r.get('seconds', 0.0):.0f}",
                     "reused" if r.get("reused") else "ran", models, r.get("status", "ok")))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(r.get("seconds", 0.0) for r in records)
    lines.append(f"total {total:.0f} s")
    return "\n".join(lines)


def comparison_table(records: list[dict]) -> str:
    """Each chapter's metrics against the published numbers (:func:`published.compare`):
    how many of its values have a published counterpart, how many lie outside the stated
    tolerance, and the verdict; a run that is not comparable says why, and the lines of
    the values outside tolerance follow the table."""
    from . import published

    rows, notes = [("chapter", "published values", "outside tolerance", "verdict")], []
    for r in records:
        doc = _read_json(Path(r["metrics"])) if r.get("metrics") else None
        if doc is None:
            rows.append((r["chapter"], "-", "-", "no metrics file (the chapter did not finish)"))
            continue
        rep = published.compare(doc)
        verdict = rep["status"] + (f": {rep['reason']}" if rep["reason"] else "")
        rows.append((r["chapter"], str(rep["values"]), str(len(rep["failures"])), verdict))
        if rep["status"] == "differs":
            notes += [f"{r['chapter']}: {line}" for line in rep["failures"]]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3]])
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in (*widths, len(rows[0][3]))))
    return "\n".join(lines + notes)


def _hide_injected_parameters(nb) -> None:
    """The book shows the chapter's own parameter cell, not papermill's injected copy."""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]


def execute_in_place(path: Path, timeout: int = 600) -> float:
    """Execute a notebook with nbclient in its own folder and save it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        config=kernel_config(),
    ).execute()
    nbformat.write(nb, path)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mopoe_lib.chapters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", choices=["smoke", "cpu", "paper"], default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=None)
    p.add_argument("--runs-root", default=None)
    p.add_argument("--out-dir", default=None,
                   help="executed copies and metrics files (default: book/experiments/executed, "
                        "which the book renders)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--force", action="store_true", help="re-run even if an executed copy is current"
    )
    p.add_argument("--only", nargs="*", help="run only chapters whose name contains one of these")
    p.add_argument("--max-steps", type=int, default=None,
                   help="bound every run to this many updates and a small evaluation: a "
                        "check of the code path before a long run, never a reproduction")  # fmt: skip
    p.add_argument("--theory", action="store_true", help="re-execute the theory chapters in place")
    args = p.parse_args(argv)
    if args.theory:
        for nb in sorted(THEORY.glob("[0-9]*.ipynb")):
            if args.only and not any(o in nb.stem for o in args.only):
                continue
            print(f"[chapters] {nb.name}: {execute_in_place(nb):.1f} s", flush=True)
        return 0
    if args.max_steps is not None and args.max_steps < 2:
        p.error("--max-steps must be at least 2 (two epochs of one update each)")
    records = run_training_chapters(
        args.profile,
        args.device,
        args.data_root,
        args.seed,
        args.force,
        args.only,
        runs_root=args.runs_root,
        max_steps=args.max_steps,
        **(
            {"out_dir": Path(args.out_dir), "metrics_dir": Path(args.out_dir)}
            if args.out_dir
            else {}
        ),
    )
    if not records:
        print("[chapters] no training chapters found in book/experiments/")
        return 0
    print(closing_table(records), flush=True)
    print("\n[chapters] against the published numbers (mopoe_lib/published.yaml):", flush=True)
    print(comparison_table(records), flush=True)
    return 0 if all(r.get("status", "ok") == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
