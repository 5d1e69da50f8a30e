"""What state a run is in, written where `realsys runs` (and a person) can read it.

`<workdir>/status.json` is rewritten atomically at every change of state by the training loop:

  {"status": "running", "step": 0, "pid": 1234, "host": "...", "time": ...}
  {"status": "interrupted", "step": 812, ...}    Ctrl-C / SIGTERM: a checkpoint was saved
  {"status": "failed", "step": 40, "error": "loss became nan by step 40; ..."}
  {"status": "trained", "step": 1404, ...}       the loop ended; final evaluation under way
  {"status": "finished", "step": 1404, ...}      result.json written (`write_result`)

A run killed with kill -9 stays "running" with a pid that no longer exists: `read_status` then
says "interrupted", which is what it is (the latest checkpoint resumes it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
RESULT_FILE = "result.json"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write-then-rename, so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def write_status(workdir: str | os.PathLike, status: str, *, step: int, **fields: Any) -> None:
    _write_json(Path(workdir) / STATUS_FILE, {
        "status": status, "step": int(step), "pid": os.getpid(), "host": socket.gethostname(),
        "time": round(time.time(), 3), **fields})


@contextlib.contextmanager
def tracked(workdir: str | os.PathLike, *, enabled: bool, step: Callable[[], int],
            **fields: Any) -> Iterator[None]:
    """Around the training loop: running, then trained, interrupted or failed (with the error).
    `step` gives the current step; `enabled` is False on every process but the first."""
    def write(status: str, **more: Any) -> None:
        if enabled:
            write_status(workdir, status, step=step(), **fields, **more)

    write("running")
    try:
        yield
    except KeyboardInterrupt:
        write("interrupted")
        raise
    except Exception as e:
        write("failed", error=f"{type(e).__name__}: {e}")
        raise
    write("trained")


def write_result(workdir: str | os.PathLike, summary: dict[str, Any]) -> None:
    """The run's result.json, and its status "finished"."""
    _write_json(Path(workdir) / RESULT_FILE, summary)
    write_status(workdir, "finished", step=int(summary.get("steps") or 0))


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a live process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def read_status(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """status.json as written, with a dead "running" (or "trained") run read as interrupted;
    None when there is none (a run from before status files, or not a run)."""
    path = Path(workdir) / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(status, dict) or "status" not in status:
        return None
    here = status.get("host") == socket.gethostname()
    if status["status"] in ("running", "trained") and here and not process_alive(int(status["pid"])):
        status = dict(status, status="interrupted", killed=True)
    return status
