"""The `realsys` command line: parse options, call the library, print the result.

Heavy imports (jax, flax, tfds) happen inside the commands, so `realsys --help` stays instant.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any, NoReturn

import typer

from realsys_cli import __version__
from realsys_cli.cli import classifier, datasets, fool, frames, gan, runs
from realsys_cli.cli.options import OneLineErrors, debug_enabled

app = typer.Typer(
    name="realsys",
    cls=OneLineErrors,  # usage errors are one line too
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
app.command("fool-screen")(fool.fool_screen)
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


class _Signals:
    received: int | None = None  # the last signal _interrupt raised for


def _unsafe(frame: Any) -> bool:
    """Whether an exception raised at `frame` would break something or be lost: raised in an
    import, it breaks the module being loaded (numpy and jaxlib then fail with an
    ImportError, or abort in their C++ initialisation); raised in a garbage collector's
    callback (jax has one) or a __del__, Python drops it and the signal is lost."""
    import gc

    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib") or code in callbacks or (
                code.co_name == "__del__"):
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM outside the training loop (whose own handler saves first): unwind
    as Ctrl-C does; SIGTERM (a scheduler, `docker stop`) as Terminated, to exit 143."""
    if _unsafe(frame):  # nothing is written there: the signal comes again in 50 ms
        import threading

        again = threading.Timer(0.05, os.kill, (os.getpid(), signum))
        again.daemon = True
        again.start()
        return
    from realsys_cli.errors import from_signal

    _Signals.received = signum
    raise from_signal(signum)


def _exit_at_once(code: int) -> NoReturn:
    """End a command stopped by a signal, after what could be saved was and the line saying
    so: the exit handlers run (the workdir's lock is freed), then the process ends without
    the interpreter's own shutdown, which crashes (SIGSEGV) after a signal cut an XLA
    compilation short."""
    import atexit

    for signum in (signal.SIGINT, signal.SIGTERM):  # leaving already: no second traceback
        signal.signal(signum, signal.SIG_IGN)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    # Ctrl-C and SIGTERM unwind (the training loop saves first): what is saved is saved, exit
    # 130 or 143.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    # "Exception ignored in <coroutine ...>": what orbax's background writes leave when they
    # failed (a full disk) or were cut short, printed as the process ends. The error line said
    # what happened; REALSYS_DEBUG=1 keeps them.
    if not debug_enabled():
        sys.unraisablehook = lambda unraisable: None
    command = typer.main.get_command(app)
    _bare_flags(command)
    try:
        command()
    except SystemExit as e:
        if e.code in (130, 143):  # stopped by a signal (handle_errors chose the code)
            # Typer exits 130 for any KeyboardInterrupt outside a command: SIGTERM while the
            # options are read is 143 too.
            _exit_at_once(143 if _Signals.received == signal.SIGTERM else e.code)
        raise
