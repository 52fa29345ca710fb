"""Progress of long work on a side channel, so that it never lands in a notebook's outputs.

The chapter runner (:mod:`mopoe_lib.chapters`) names a file in the environment variable
``MOPOE_PROGRESS_FILE`` before papermill starts a chapter's kernel; the kernel inherits
it, and :func:`report` appends each line there instead of printing it into the cell's
output. The runner tails the file and reprints every line with the chapter's name. Outside
the runner (a notebook opened in JupyterLab, a script) :func:`report` prints as usual.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

ENV = "MOPOE_PROGRESS_FILE"
TICK_SECONDS = 15.0  # at most one within-epoch progress line per this many seconds

_last_tick = 0.0


def channel() -> Path | None:
    """The side-channel file of this process (None when no runner asked for one)."""
    name = os.environ.get(ENV)
    return Path(name) if name else None


def emit(line: str) -> bool:
    """Append ``line`` to the side channel; False (and nothing written) without one."""
    path = channel()
    if path is None:
        return False
    with open(path, "a") as f:  # one open per line: the runner may read at any time
        f.write(line.rstrip("\n") + "\n")
    return True


def report(line: str) -> None:
    """A progress line: to the side channel under the runner, else to stdout."""
    if not emit(line):
        print(line, flush=True)


def tick(line, force: bool = False) -> None:
    """Within-epoch progress, rate-limited and only on the side channel (a notebook in
    JupyterLab has the per-epoch lines; a line every few seconds would flood it).

    ``line`` may be a callable that builds the line, so that a loss is read from the
    device only when a line is written."""
    global _last_tick
    if channel() is None:
        return
    now = time.monotonic()
    if force or now - _last_tick >= TICK_SECONDS:
        _last_tick = now
        emit(line() if callable(line) else line)


class Tail:
    """Reprint the lines appended to ``path`` with ``prefix`` while a chapter runs.

    A background thread polls the file; :meth:`stop` prints what is left and joins it.
    """

    def __init__(self, path: Path, prefix: str, write=print, poll: float = 0.5):
        self.path, self.prefix, self.write, self.poll = Path(path), prefix, write, poll
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tail:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _drain(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path) as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a half-written line waits for its end
        self._offset += len(complete.encode())
        for line in complete.splitlines():
            self.write(f"{self.prefix}{line}")

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self._drain()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._drain()
