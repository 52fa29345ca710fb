"""Shared machinery: errors, seeded streams, deterministic .npy output, manifests, progress.

Arrays are written with ``numpy.save`` (no pickle): its bytes depend only on the array, whereas
``torch.save`` embeds a random serialization id, so two identical runs would differ.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mopoe_lib.datasets import DIRS, FORMAT_VERSION, MANIFEST, sha256_file


class DataPrepError(Exception):
    """A user-facing failure: missing or malformed input, or a conflicting prepared directory."""


def rng(seed: int, *stream: str | int) -> np.random.Generator:
    """An independent generator per (seed, stream name, ...), so components do not share draws."""
    key = [seed] + [zlib.crc32(s.encode()) if isinstance(s, str) else int(s) for s in stream]
    return np.random.default_rng(np.random.SeedSequence(key))


def progress(iterable=None, quiet: bool = False, **kwargs):
    return tqdm(iterable, disable=quiet, dynamic_ncols=True, **kwargs)


def map_chunks(fn: Callable, chunks: list, workers: int, quiet: bool, desc: str) -> list:
    """``[fn(c) for c in chunks]`` in order, over ``workers`` processes when more than one.

    ``fn`` must be picklable and must not depend on which process runs it (synthetic
    renderers seed each item from its index), so the result does not depend on ``workers``.
    """
    bar = progress(total=sum(len(c) for c in chunks), quiet=quiet, desc=desc, unit="img")
    out = []
    if workers <= 1 or len(chunks) <= 1:
        results = map(fn, chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(min(workers, len(chunks)))
        results = pool.map(fn, chunks)
    try:
        for c, part in zip(chunks, results, strict=True):
            out.append(part)
            bar.update(len(c))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    return out


def split_range(n: int, chunk: int = 500) -> list[range]:
    return [range(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class Writer:
    """Writes a prepared dataset into a temporary directory, then swaps it in atomically.

    An interrupted run therefore never leaves a directory that looks prepared.
    """

    def __init__(self, root: Path, dataset: str):
        self.final = Path(root) / DIRS[dataset]
        self.tmp = Path(root) / f".{DIRS[dataset]}.partial-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.files: dict[str, dict] = {}

    def save(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        np.save(self.tmp / name, array, allow_pickle=False)
        self.files[name] = {"shape": list(array.shape), "dtype": str(array.dtype)}

    def finish(self, manifest: dict) -> Path:
        for name, info in self.files.items():
            f = self.tmp / name
            info["bytes"] = f.stat().st_size
            info["sha256"] = sha256_file(f)
        manifest = {"format_version": FORMAT_VERSION, **manifest, "files": self.files}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if self.final.exists():
            shutil.rmtree(self.final)
        self.tmp.rename(self.final)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def already_prepared(root: Path, dataset: str, args: dict, force: bool, quiet: bool) -> bool:
    """True if ROOT already holds this dataset prepared with the same arguments (and intact).

    A directory prepared with other arguments is an error unless ``force`` (then rebuilt).
    """
    directory = Path(root) / DIRS[dataset]
    path = directory / MANIFEST
    if directory.exists() and not path.is_file() and any(directory.iterdir()):
        # never delete a folder this tool did not write (it may hold the user's raw data)
        raise DataPrepError(
            f"{directory} exists but holds no {MANIFEST}; move it away or choose another --root"
        )
    if force or not path.is_file():
        return False
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataPrepError(f"{path} is from another format version; use --force to rebuild")
    if manifest.get("args") == args:
        for name, info in manifest["files"].items():
            f = directory / name
            if not f.is_file() or sha256_file(f) != info["sha256"]:
                raise DataPrepError(
                    f"{f} is missing or does not match its sha256 in {path}; "
                    "run again with --force to rebuild it"
                )
        if not quiet:
            print(
                f"[data_prep] {directory} is already prepared with these arguments: nothing to do"
            )
        return True
    old = manifest.get("args", {})
    diff = {
        k: (old.get(k), args.get(k))
        for k in sorted(set(old) | set(args))
        if old.get(k) != args.get(k)
    }
    raise DataPrepError(
        f"{directory} was prepared with other arguments (prepared vs requested: {diff}); "
        "use --force to replace it or choose another --root"
    )


def find_file(name: str, search_dirs: list[Path], how_to_get: str) -> Path:
    for d in search_dirs:
        if (d / name).is_file():
            return d / name
    where = ", ".join(str(d) for d in search_dirs)
    raise DataPrepError(f"missing file {name} (looked in {where}). {how_to_get}")
