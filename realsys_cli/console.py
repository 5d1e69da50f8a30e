"""Everything a person sees on the terminal: results on stdout, the rest on stderr.

stdout carries results only (a Rich table, or exactly one JSON object with --json), so that
`realsys ... --json | jq` works. Progress bars, logs and warnings go to stderr, and progress is
off when stderr is not a terminal, or with --quiet/--json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from realsys_cli.progress import Progress, Task

stderr = Console(stderr=True)
stdout = Console(soft_wrap=True)


class _Settings:
    quiet = False
    verbose = False


settings = _Settings()


class _PlainHandler(logging.Handler):
    """Log lines as they are, one a line, where stderr is no terminal (a file, a pipe, CI):
    RichHandler would wrap them at 80 columns and pad them with spaces."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stderr.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


class _Held(logging.Filter):
    """The info lines a command says before its input is checked (the recipe it picked, the
    workdir), held back until it does its first work (its next log line, a progress bar, a
    result): a bad input found before that is the error line alone."""

    def __init__(self) -> None:
        super().__init__()
        self.reset(None)

    def reset(self, handler: logging.Handler | None) -> None:
        self.holding = False
        self.lines: list[logging.LogRecord | str] = []
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if self.holding and record.levelno < logging.WARNING:
            self.lines.append(record)
            return False
        self.release()
        return True

    def release(self) -> None:
        if self.holding:  # a warning while holding: it shows at once, the info lines wait
            return
        lines, self.lines = self.lines, []
        for line in lines:
            if isinstance(line, str):
                _print_note(line)
            elif self.handler is not None:
                self.handler.handle(line)


_held = _Held()


@contextlib.contextmanager
def held_back() -> Iterator[None]:
    """Info lines logged or noted inside wait for the command's first work (see _Held)."""
    _held.holding = True
    try:
        yield
    finally:
        _held.holding = False


def setup_logging(*, quiet: bool, verbose: bool) -> None:
    """realsys's own log lines go to stderr (through Rich on a terminal); third-party chatter
    is silenced."""
    settings.quiet, settings.verbose = quiet, verbose
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    if stderr.is_terminal:
        handler: logging.Handler = RichHandler(console=stderr, show_time=False, show_path=False,
                                               markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _PlainHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    _held.reset(handler)  # a new command (in-process tests run many): nothing held from before
    handler.addFilter(_held)
    log = logging.getLogger("realsys")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    # absl (tfds, orbax) logs warnings such as "OpenCV is not installed" to stderr by default.
    # orbax logs each failed background write (a full disk) at ERROR with its traceback, and
    # asyncio its never-retrieved task errors: the one-line error that follows says it all.
    for chatty in ("absl", "asyncio"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if not verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="orbax.*")


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Native libraries (gloo, under multi-process training) print to file descriptor 1.

    Point fd 1 at stderr while keeping Python's sys.stdout on the real stdout, so results
    stay the only thing on stdout.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    python_stdout = sys.stdout
    sys.stdout = open(saved, "w", closefd=False)  # noqa: SIM115 - closed below
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout.close()
        sys.stdout = python_stdout
        os.dup2(saved, 1)
        os.close(saved)


def note(message: str) -> None:
    """One plain line on stderr (paths and names as they are: no markup, no highlighting);
    none with --quiet, which keeps stderr for errors."""
    if settings.quiet:
        return
    if _held.holding:
        _held.lines.append(message)
        return
    _held.release()
    _print_note(message)


def _print_note(message: str) -> None:
    stderr.print(message, markup=False, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One red line on stderr: what went wrong and, where there is one, the way out."""
    # Text, not markup: a message may hold square brackets (paths, `--set 'x=[/y]'`, `name[/config]`)
    _held.lines.clear()  # a bad input found before any work: its error is the one line
    stderr.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False,
                 soft_wrap=True)


def warning(message: str) -> None:
    """One yellow line on stderr (none with --quiet): a deprecated option, a doubtful input."""
    if settings.quiet:
        return
    _held.release()
    stderr.print(Text.assemble(("warning:", "bold yellow"), " ", message), highlight=False,
                 soft_wrap=True)


class _RichTask(Task):
    def __init__(self, bars: RichProgress, task_id: Any) -> None:
        self._bars, self._id = bars, task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        shown = "  ".join(f"{k} {_short(v)}" for k, v in fields.items())
        self._bars.update(self._id, advance=n, fields=shown)

    def close(self) -> None:
        self._bars.stop()


class RichProgressReporter(Progress):
    """Progress bars with ETA and live metrics on stderr."""

    def task(self, description: str, total: int | None = None, *, completed: int = 0,
             unit: str = "") -> Task:
        counter = (
            (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
        )
        bars = RichProgress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            *counter,
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[fields]}", markup=False),
            console=stderr,
            transient=False,
        )
        _held.release()
        task_id = bars.add_task(description, total=total, completed=completed, fields="")
        bars.start()
        return _RichTask(bars, task_id)


def progress_reporter(*, json_mode: bool) -> Progress:
    if settings.quiet or json_mode or not stderr.is_terminal:
        return Progress()
    return RichProgressReporter()


def _short(value: Any) -> str:
    """Numbers as a person reads them: 2.0 -> 2, 0.99843 -> 0.9984, 146.362 -> 146.4."""
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return str(value)
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3g}"
        text = f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"
        return text.rstrip("0").rstrip(".")
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _short(value)
    if isinstance(value, (list, tuple)):
        if len(value) > 12 or any(isinstance(v, (dict, list)) for v in value):
            return f"[{len(value)} items]"
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


def print_result(result: dict[str, Any], *, json_mode: bool, title: str | None = None) -> None:
    """The one place results are written: one JSON object, or a two-column Rich table."""
    _held.release()
    if json_mode:
        sys.stdout.write(json.dumps(result, default=_json_default) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=Text(title) if title else None, show_header=False,
                  title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in result.items():
        table.add_row(Text(key), Text(_cell(value)))
    stdout.print(table)


def print_rows(rows: list[dict[str, Any]], *, json_mode: bool, title: str, key: str) -> None:
    """A list of records: a Rich table with one row each, or {key: [...]} as JSON."""
    _held.release()
    if json_mode:
        print_result({key: rows}, json_mode=True)
        return
    table = Table(title=Text(title), title_justify="left")
    columns = list(dict.fromkeys(k for row in rows for k in row))  # every key, in order
    for col in columns:
        table.add_column(Text(col))
    for row in rows:  # Text: a value such as "cat[a].png" is shown as it is, not as markup
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))
    stdout.print(table)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
