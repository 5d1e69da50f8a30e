"""How the library reports progress without knowing about terminals.

Library code takes a `Progress` and calls `progress.task(description, total)` for each loop; the
CLI passes one that draws Rich bars on stderr, tests and scripts get the silent default. This keeps
rich out of the library and lets progress be switched off with --quiet/--json.
"""

from __future__ import annotations

from typing import Any


class Task:
    """One loop's progress: `advance(n, **fields)` moves it on; fields are live metrics."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


class Progress:
    """The silent progress reporter; the CLI subclasses it."""

    def task(self, description: str, total: int | None = None, *, completed: int = 0,
             unit: str = "") -> Task:
        """`unit="bytes"`: a transfer (sizes, rate and ETA); otherwise a count of steps."""
        return Task()


SILENT = Progress()
