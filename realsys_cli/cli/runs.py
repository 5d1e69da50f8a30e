"""`realsys runs`: list the runs under runs/ (or --dir) with their status and headline metric."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from realsys_cli.cli import options as opt


@opt.handle_errors
def runs(
    *,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Where the runs are (default: $REALSYS_RUNS_DIR or ./runs).")] = None,
    json: opt.JsonOpt = False,
) -> None:
    """The runs: command, dataset, model, status (running / finished / interrupted / failed),
    last step and headline metric."""
    from realsys_cli import console
    from realsys_cli.config import default_runs_dir
    from realsys_cli.runs import list_runs

    root = directory or default_runs_dir()
    if root.exists() and not root.is_dir():
        from realsys_cli.errors import ConfigError

        raise ConfigError(f"--dir {root} is a file, not a folder of runs; give the folder the "
                          "runs are in")
    rows = list_runs(root)
    if not rows and not json:
        console.note(f"no runs in {root}")
        return
    if not json:  # the table stays narrow: the path and the error text are in --json
        rows = [{k: v for k, v in r.items() if k not in ("path", "error")} for r in rows]
    console.print_rows(rows, json_mode=json, title=f"runs in {root}", key="runs")
