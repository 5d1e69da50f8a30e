"""One training process per workdir: `<workdir>/.lock` holds the owner's pid and host.

A second run on the same workdir stops at once with one line naming the owner, instead of both
writing the same checkpoints and metrics. A lock left by a process that no longer exists (kill
-9, a crash) is taken over; the same process may open its workdir again (a resumed run in one
Python session). Under several processes only process 0 takes it.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from pathlib import Path

from realsys_cli.errors import CheckpointError
from realsys_cli.training.run_status import process_alive

LOCK_FILE = ".lock"
_held: set[Path] = set()


def _owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # half written or gone: nobody we can name
    return owner if isinstance(owner, dict) and "pid" in owner else None


def acquire(workdir: str | os.PathLike) -> None:
    """Take `workdir`'s lock, or raise CheckpointError when a live process holds it."""
    path = Path(workdir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner is not None and owner.get("pid") == me["pid"] and (
                    owner.get("host") == me["host"]):
                break  # ours already
            local = owner is not None and owner.get("host") == me["host"]
            if owner is not None and (not local or process_alive(int(owner["pid"]))):
                raise CheckpointError(
                    f"{workdir} is in use by another realsys run (pid {owner['pid']} on "
                    f"{owner.get('host')}); wait for it to end, or use another --workdir (if "
                    f"that process is not realsys, delete {path})"
                ) from None
            path.unlink(missing_ok=True)  # a dead owner's (or an unreadable) lock
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    _held.add(path)


def release(workdir: str | os.PathLike) -> None:
    path = Path(workdir) / LOCK_FILE
    if path in _held:
        _held.discard(path)
        path.unlink(missing_ok=True)


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        path.unlink(missing_ok=True)
