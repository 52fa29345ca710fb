"""Run the book's chapters: papermill for the training chapters, nbclient for the theory.

    python -m mopoe_lib.chapters --profile cpu            # training chapters -> executed/
    python -m mopoe_lib.chapters --profile paper --device cuda --data-root /data --force
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
) -> list[dict]:
    """Execute every training chapter with papermill; returns one record per chapter.

    ``metrics_dir`` receives each chapter's ``<chapter>.<profile>.metrics.json`` (default:
    next to the executed copies); ``runs_root`` the trained models (default: ``runs/``).
    """
    import nbformat
    import papermill as pm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
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
        dst = out_dir / src.name
        h = _source_hash(src)
        if not force and _is_current(dst, h, params):
            print(f"[chapters] {src.name}: up to date ({profile})")
            records.append({"chapter": src.name, "skipped": True})
            continue
        print(f"[chapters] {src.name}: running with {params}", flush=True)
        t0 = time.perf_counter()
        pm.execute_notebook(
            str(src),
            str(dst),
            parameters=params,
            kernel_name="python3",
            progress_bar=False,
            cwd=str(src.parent),
        )
        nb = nbformat.read(dst, as_version=4)
        nb.metadata["mopoe_book"] = {"source_hash": h, "parameters": params}
        _hide_injected_parameters(nb)
        nbformat.write(nb, dst)
        records.append({"chapter": src.name, "seconds": round(time.perf_counter() - t0, 1)})
    return records


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--force", action="store_true", help="re-run even if an executed copy is current"
    )
    p.add_argument("--only", nargs="*", help="run only chapters whose name contains one of these")
    p.add_argument("--theory", action="store_true", help="re-execute the theory chapters in place")
    args = p.parse_args(argv)
    if args.theory:
        for nb in sorted(THEORY.glob("[0-9]*.ipynb")):
            if args.only and not any(o in nb.stem for o in args.only):
                continue
            print(f"[chapters] {nb.name}: {execute_in_place(nb):.1f} s", flush=True)
        return 0
    records = run_training_chapters(
        args.profile,
        args.device,
        args.data_root,
        args.seed,
        args.force,
        args.only,
        runs_root=args.runs_root,
    )
    if not records:
        print("[chapters] no training chapters found in book/experiments/")
    print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
