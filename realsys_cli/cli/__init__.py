"""The `realsys` command line: parse options, call the library, print the result.

Heavy imports (jax, flax, tfds) happen inside the commands, so `realsys --help` stays instant.
"""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from realsys_cli import __version__
from realsys_cli.cli import classifier, datasets, fool, frames, gan, runs

app = typer.Typer(
    name="realsys",
    help="The classic real systems of deep learning, in JAX: AlexNet, fooling images, DCGAN, "
    "next-frame prediction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"realsys {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    *,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    from realsys_cli import console
    from realsys_cli.data import download

    console.setup_logging(quiet=quiet, verbose=verbose)
    download.set_progress(console.progress_reporter(json_mode=False))


# The four commands of the design, then the ones that read their runs.
app.command("train-classifier")(classifier.train_classifier)
app.command("fool")(fool.fool)
app.command("train-gan")(gan.train_gan)
app.command("predict-frames", help=frames.HELP)(frames.predict_frames)
app.command("evaluate")(classifier.evaluate)
app.command("classify")(classifier.classify)
app.command("fool-defence")(fool.fool_defence)
app.command("sample")(gan.sample)
app.command("runs")(runs.runs)
app.add_typer(datasets.app, name="datasets")


def _bare_flags(command: Any) -> None:
    """Typer 0.29 labels flags with their Python type (`--json <bool>`); a flag takes no value,
    so show none."""
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _bare_flags(sub)


def _terminate(signum: int, frame: Any) -> None:
    from realsys_cli.errors import Terminated

    raise Terminated


def main() -> None:
    # SIGTERM (a scheduler, `docker stop`) unwinds like Ctrl-C: what is saved is saved, exit 143.
    signal.signal(signal.SIGTERM, _terminate)
    command = typer.main.get_command(app)
    _bare_flags(command)
    command()
