"""Options shared by several commands, defined once, and the error edge of every command.

The grammar every command follows (README, "How every command behaves"):

- `--workdir/-w` is the run the command writes: it creates it, or resumes it when it exists.
- A run the command only reads is named for what it is: `--classifier/-C` (a train-classifier
  run), `--from` (a train-gan run), `--judge`, `--also-check`.
- A short flag means one option in every command (tests/test_cli.py walks the command tree).
- Every trainer takes `--steps` (total optimizer steps) and `--epochs`, `--seed`, `--config`,
  `--set`, `--print-config` and `--json`.
- A renamed option keeps its old spelling, hidden, for one release: it works and says on stderr
  what to write instead.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from realsys_cli.config import SEED_MAX

T = TypeVar("T")

# ------------------------------------------------------------------------------------ output
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON object on stdout (no progress).")
]

# ------------------------------------------------------------------------------------ config
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="A recipe (TOML): a file, or the name of one in "
                 "configs/ (lenet_digits, ...)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config field: --set key=value (repeatable)."),
]
PrintConfigOpt = Annotated[
    bool,
    typer.Option("--print-config", help="Print the resolved config as TOML (for --config; with "
                 "--json as JSON) and exit: nothing is trained or written."),
]

# -------------------------------------------------------------------------------------- runs
WorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", help="The run to write; an existing one is resumed "
                 "(default: runs/<command>-<dataset>-...-<time>)."),
]
ClassifierRunOpt = Annotated[
    Path | None,
    typer.Option("--classifier", "-C", help="The train-classifier run to read."),
]
OldWorkdirOpt = Annotated[  # what --classifier / --from were called until this release
    Path | None,
    typer.Option("--workdir", "-w", hidden=True, help="Deprecated spelling of the run read."),
]

# ------------------------------------------------------------------------------ training length
StepsOpt = Annotated[
    int | None,
    typer.Option("--steps", min=1, help="Total optimizer steps (config max_steps; wins over "
                 "--epochs)."),
]
EpochsOpt = Annotated[
    int | None,
    typer.Option("--epochs", "-e", min=1, help="Epochs to train (config num_epochs)."),
]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option("--batch-size", "-b", min=1, help="Global batch size, over all devices."),
]
LearningRateOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", min=0, max=SEED_MAX,
                                             help="Random seed.")]
Bf16Opt = Annotated[bool, typer.Option("--bf16", help="bfloat16 compute (mixed precision).")]

# ------------------------------------------------------------------------- multi-process runs
CoordinatorOpt = Annotated[
    str | None, typer.Option("--coordinator-address", help="Multi-process training: HOST:PORT "
                             "of process 0.")
]
NumProcessesOpt = Annotated[int, typer.Option("--num-processes", min=1,
                                              help="Number of processes.")]
ProcessIdOpt = Annotated[int, typer.Option("--process-id", min=0,
                                           help="This process's index.")]

# -------------------------------------------------------------------------------------- data
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


def path_or_none(path: Path | None) -> str | None:
    """A path option as the config field (a string) holds it."""
    return str(path) if path else None


def default_workdir(command: str, *parts: str) -> Path:
    """runs/<command>-<part>-...-<time>, the run a command writes when --workdir is not given."""
    from realsys_cli.config import default_runs_dir

    label = "-".join(p.replace("/", "_").replace("=", "").replace(",", "_") for p in parts if p)
    return default_runs_dir() / f"{command}-{label}-{time.strftime('%Y%m%d-%H%M%S')}"


# --------------------------------------------------------------------- usage and old spellings
class UsageError(typer.BadParameter):
    """A usage error found after parsing: Typer shows it and exits 2, as for its own."""

    def format_message(self) -> str:
        return self.message


class OneLineErrors(TyperGroup):
    """The root command: a usage error is one line too ("error: No such option: --bogus; see
    'realsys fool --help'"), exit 2, where Typer draws a box of six lines wrapped at 80
    columns. Only the standalone form (the `realsys` program, CliRunner) changes."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError

        from realsys_cli import console

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError:  # `realsys` alone: the help is printed already
            sys.exit(2)
        except ClickException as e:
            console.error(usage_line(e))
            sys.exit(e.exit_code)
        except typer.Abort:
            console.error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def usage_line(e: Any) -> str:
    """A Typer (click) error as one line that names the command's --help."""
    message = " ".join(e.format_message().split()).rstrip(".")
    ctx = getattr(e, "ctx", None)
    if ctx is None or ctx.command.get_help_option(ctx) is None:
        return message
    return f"{message}; see '{ctx.command_path} {ctx.help_option_names[0]}'"


def deprecated(old: str, new: str) -> None:
    from realsys_cli import console

    console.warning(f"{old} is deprecated and goes away in the next release; use {new}")


def renamed(value: T | None, old_value: T | None, *, new: str, old: str) -> T | None:
    """An option given by its name, or by the hidden name it had until this release."""
    if old_value is None:
        return value
    if value is not None:
        raise UsageError(f"{old} is the old spelling of {new}: give only {new}")
    deprecated(old, new)
    return old_value


def required(value: T | None, *, option: str, what: str) -> T:
    if value is None:
        raise UsageError(f"Missing option {option}: {what}.")
    return value


# ---------------------------------------------------------------------------------- the edge
def debug_enabled() -> bool:
    return os.environ.get("REALSYS_DEBUG", "") not in ("", "0")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors become one red line on stderr and exit 1 (REALSYS_DEBUG=1: traceback).

    Usage errors are Typer's (exit 2); Ctrl-C is exit 130 and SIGTERM 143 (a trainer says in
    one line what was saved: see run_trainer); a full disk or any other unexpected failure is
    one line too, never a wall of traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from realsys_cli import console
        from realsys_cli.errors import RealsysError

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM, after what could be saved was
            raise typer.Exit(interrupted(e)) from None
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
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
            cause = _interrupt_behind(e)
            if cause is not None:  # no bug: a signal broke an import (numpy, jaxlib)
                raise typer.Exit(interrupted(cause)) from None
            if debug_enabled():
                traceback.print_exc()
            console.error(
                f"internal error: {type(e).__name__}: {e} (REALSYS_DEBUG=1 shows the traceback)"
            )
            raise typer.Exit(1) from None

    return wrapper


def interrupted(interrupt: KeyboardInterrupt) -> int:
    """The exit code of a command stopped by a signal: 130, or 143 for SIGTERM (Typer would
    exit 130 for Terminated, a KeyboardInterrupt too). A signal's interrupt that nobody
    reported (the training loop says what it saved) gets its one line here."""
    import logging

    from realsys_cli.errors import Terminated, is_from_signal, signal_name, was_reported

    if is_from_signal(interrupt) and not was_reported(interrupt):
        logging.getLogger("realsys").warning("interrupted (%s) before anything was saved",
                                             signal_name(interrupt))
    return 143 if isinstance(interrupt, Terminated) else 130


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that caused `error`, if one did."""
    from realsys_cli.errors import causes

    return next((e for e in causes(error) if isinstance(e, KeyboardInterrupt)), None)


def _nothing_saved(interrupt: KeyboardInterrupt, workdir: Path) -> None:
    """A trainer stopped by a signal says in one line what it saved: the loop does when it
    saved a checkpoint (or stopped after the last step), this note when it saved none."""
    import logging

    from realsys_cli.errors import mark_reported, signal_name, was_reported

    if not was_reported(interrupt):  # a log line as the loop's: a warning, shown with -q too
        logging.getLogger("realsys").warning(
            "interrupted (%s) before the first checkpoint of this invocation: nothing new was "
            "saved in %s", signal_name(interrupt), workdir)
        mark_reported(interrupt)


def run_trainer(train: Callable[..., dict[str, Any]], cfg: Any, workdir: Path, *,
                coordinator_address: str | None, num_processes: int, process_id: int,
                json: bool, title: str) -> None:
    """Every trainer's last lines: join the other processes (if any), train, print the result.
    Native libraries print to fd 1 under several processes (gloo): that goes to stderr."""
    from contextlib import nullcontext

    from realsys_cli import console
    from realsys_cli.training.distributed import ClusterSpec

    cluster = ClusterSpec(coordinator_address, num_processes, process_id)
    quiet_native = console.native_stdout_to_stderr() if num_processes > 1 else nullcontext()
    with quiet_native:
        try:
            result = train(cfg, workdir, cluster=cluster,
                           progress=console.progress_reporter(json_mode=json))
        except KeyboardInterrupt as e:
            _nothing_saved(e, workdir)
            raise
        console.print_result(result, json_mode=json, title=title)
