"""Options shared by several commands, defined once, and the error edge of every command."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON object on stdout (no progress).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="A recipe file (TOML) from configs/.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config field: --set key=value (repeatable)."),
]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", help="Run directory (default: runs/<command>-<time>)."),
]
TfdsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--tfds-data-dir", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="A local image folder ROOT/{train,val,test}/<class>/*.jpg."),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed.")]


def _forbid_downloads(value: bool) -> bool:
    if value:
        from realsys_cli.data import download

        download.forbid()
    return value


NoDownloadOpt = Annotated[
    bool,
    typer.Option("--no-download", callback=_forbid_downloads,
                 help="Never download a dataset (also: REALSYS_NO_DOWNLOAD=1)."),
]


def debug_enabled() -> bool:
    return os.environ.get("REALSYS_DEBUG", "") not in ("", "0")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become one red line on stderr and exit 1 (REALSYS_DEBUG=1: traceback).

    Usage errors are Typer's (exit 2) and Ctrl-C is exit 130; a full disk or any other
    unexpected failure is one line too, never a wall of traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from realsys_cli import console
        from realsys_cli.errors import RealsysError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except RealsysError as e:
            if debug_enabled():
                traceback.print_exc()
            console.error(str(e))
            raise typer.Exit(e.exit_code) from None
        except OSError as e:
            if debug_enabled():
                traceback.print_exc()
            console.error(f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}")
            raise typer.Exit(1) from None
        except Exception as e:  # a bug: say so in one line, keep the traceback one flag away
            if debug_enabled():
                traceback.print_exc()
            console.error(
                f"internal error: {type(e).__name__}: {e} (REALSYS_DEBUG=1 shows the traceback)"
            )
            raise typer.Exit(1) from None

    return wrapper


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
