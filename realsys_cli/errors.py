"""The library's exceptions. The CLI turns each into one line on stderr and exit code 1.

The library never imports typer or rich: it raises these, and `realsys_cli.cli` decides how they
look. A message is one sentence a user can act on, naming the way out where there is one.
"""

from __future__ import annotations


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or `docker stop`'s request to stop): handled as Ctrl-C is, the
    state saved first, but the command exits 143."""


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

