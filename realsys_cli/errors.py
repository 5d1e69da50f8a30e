"""The library's exceptions. The CLI turns each into one line on stderr and exit code 1.

The library never imports typer or rich: it raises these, and `realsys_cli.cli` decides how they
look. A message is one sentence a user can act on, naming the way out where there is one.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or `docker stop`'s request to stop): handled as Ctrl-C is, the
    state saved first, but the command exits 143."""


def signal_name(interrupt: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"


def mark_reported(interrupt: KeyboardInterrupt) -> KeyboardInterrupt:
    """Note on a KeyboardInterrupt (or Terminated) that the line saying what was saved is
    printed already, so that the CLI prints no second one."""
    interrupt.realsys_reported = True  # type: ignore[attr-defined]
    return interrupt


def was_reported(interrupt: KeyboardInterrupt) -> bool:
    return bool(getattr(interrupt, "realsys_reported", False))


def from_signal(signum: int) -> KeyboardInterrupt:
    """What the CLI's handler raises for a signal: KeyboardInterrupt for SIGINT, Terminated
    for SIGTERM, marked as a signal's (unlike the KeyboardInterrupt a command raises itself
    once it said what it saved, as fool does)."""
    interrupt = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    interrupt.realsys_signal = signum  # type: ignore[attr-defined]
    return interrupt


def is_from_signal(interrupt: KeyboardInterrupt) -> bool:
    return getattr(interrupt, "realsys_signal", None) is not None


class RealsysError(Exception):
    """Base class of every error a user can cause or fix (bad input, missing data, ...)."""

    exit_code = 1


class ConfigError(RealsysError):
    """A config file or a --set override is wrong (unknown key, wrong type, bad value)."""


class DatasetError(RealsysError):
    """A dataset cannot be found, prepared or read."""


class NetworkError(DatasetError):
    """A download was needed and the network is not there."""


class CheckpointError(RealsysError):
    """A workdir or checkpoint is missing, corrupt, or of another model."""


class InputImageError(RealsysError):
    """An image given by the user cannot be read."""


class TrainingDivergedError(RealsysError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""



class DiskFullError(CheckpointError):
    """A checkpoint could not be written for lack of space; the previous one is intact."""


class DamagedCheckpointError(CheckpointError):
    """Every checkpoint that could be restored is damaged (unreadable, or its arrays do not
    match the checksum written with them)."""


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then what caused it (`raise ... from`, or the error being handled), and so on."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
