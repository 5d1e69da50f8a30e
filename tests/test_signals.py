"""SIGINT and SIGTERM in every phase of a training run, through the CLI.

In each phase (start-up, a step, the end-of-epoch evaluation, a checkpoint save, the wait for
the last save, the work after the loop, the final evaluation of the run that finishes it) the
signal is raised for real (signal.raise_signal) from inside a patched function of that phase.
The command must exit 130 (SIGINT) or 143 (SIGTERM) with one line on stderr saying what was
saved (or that nothing was), keep the last complete checkpoint, leave no half-written one
behind, and, run again, resume and end with the state of an uninterrupted run, to the bit. A
second signal stops at once, but never inside a save. Three runs of the real entry point, each
in its own process, check main's handlers: SIGTERM while the options are read; a signal while
a module loads (let it load); SIGTERM with the workdir open (its lock freed, the interpreter's
shutdown skipped).

CliRunner does not call realsys_cli.cli.main, which installs the SIGINT and SIGTERM handlers:
the fixture `_main_handlers` installs them as main does (without, SIGTERM would end pytest).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trees import assert_trees_equal
from typer.testing import CliRunner

from realsys_cli.cli import app
from realsys_cli.training.checkpoint import Checkpointer

TINY = "digits/train=128,test=32"  # 4 steps an epoch at batch 32
runner = CliRunner()
SIGNALS = [pytest.param(signal.SIGINT, 130, id="SIGINT"),
           pytest.param(signal.SIGTERM, 143, id="SIGTERM")]


def _command(workdir: Path, tfds: Path) -> list[str]:
    """2 epochs of 4 steps, a checkpoint every 3 steps: saved at 3, 4 (epoch end), 6, 8."""
    return ["-q", "train-classifier", "--dataset", TINY, "--epochs", "2", "-b", "32",
            "--tfds-data-dir", str(tfds), "-w", str(workdir), "--json",
            "--set", "log_every_steps=2", "--set", "warmup_steps=2",
            "--set", "checkpoint_every_steps=3", "--set", "checkpoint_every_minutes=0",
            "--set", "checkpoints_to_keep=5"]


def _final_state(workdir: Path) -> dict:
    from realsys_cli.classifier.evaluate import load_trained

    return load_trained(workdir, best=False).state


@pytest.fixture(autouse=True)
def _restore_logging():
    """The app's callback sets the "realsys" logger up for a terminal; undo it afterwards so
    that other tests' caplog still sees realsys's records."""
    logger = logging.getLogger("realsys")
    saved = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(autouse=True)
def _main_handlers():
    from realsys_cli.cli import _interrupt

    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.fixture(scope="module", autouse=True)
def _compiled_once(tmp_path_factory):
    """Every run below compiles the same few programs (the train and eval steps): XLA's
    persistent cache compiles them once instead of twenty times, and this module's time is
    halved. A program loaded from the cache is the one compiled: the runs compared to the
    uninterrupted one stay equal to the bit."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()  # jax decides once whether it uses the cache
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def tfds(tmp_path_factory) -> Path:
    """One prepared copy of the dataset for every run below."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tfds) -> Path:
    """The uninterrupted run every resumed one must equal."""
    logger = logging.getLogger("realsys")
    saved = list(logger.handlers), logger.level, logger.propagate
    workdir = tmp_path_factory.mktemp("straight") / "w"
    result = runner.invoke(app, _command(workdir, tfds))
    logger.handlers[:], logger.level, logger.propagate = saved
    assert result.exit_code == 0, result.output
    return workdir


def _raise_on_call(patch: pytest.MonkeyPatch, owner: Any, name: str, signum: int,
                   nth: int = 1) -> dict[str, int]:
    """`owner.name` raises the signal (a real one, as a terminal's Ctrl-C or a scheduler's
    SIGTERM) at the start of its nth call, then runs as it would."""
    real: Callable = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth:
            signal.raise_signal(signum)
        return real(*args, **kwargs)

    patch.setattr(owner, name, wrapped)
    return calls


def _messages(result) -> list[str]:
    """The lines on stderr but the CLI's `workdir: ...` note."""
    return [" ".join(line.split()) for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("workdir: ")]


def _leftovers(workdir: Path) -> list[Path]:
    """Half-written checkpoints: the temporary directories orbax writes a checkpoint into
    before renaming it (a `best/` left as one is what the issue saw)."""
    return [p for p in workdir.rglob("*") if "orbax-checkpoint-tmp" in p.name]


def _check_interrupted(result, code: int, workdir: Path, *, saved: int | None, says: str,
                       others: bool = False) -> None:
    """`result`: a CliRunner's, or a finished subprocess's. `others`: other warnings than the
    interruption's one line are allowed (a GAN of 2 steps warns that it collapsed)."""
    assert getattr(result, "exit_code", getattr(result, "returncode", None)) == code, (
        result.stderr[-3000:])
    assert result.stdout == ""  # no result: the run did not finish
    assert "Traceback" not in result.stderr
    messages = _messages(result)
    if others:
        messages = [m for m in messages if "interrupted" in m]
    assert len(messages) == 1 and says in messages[0], result.stderr
    assert not _leftovers(workdir), _leftovers(workdir)
    latest = Checkpointer(workdir).latest_step() if (workdir / "checkpoints").exists() else None
    assert latest == saved


def _rerun_equals_straight(workdir: Path, tfds: Path, straight: Path, signum: int, *,
                           resumed_from: int | None) -> None:
    """The same command again resumes from the checkpoint kept and ends as the uninterrupted
    run did, to the bit. Only after SIGINT: SIGTERM takes the same path through the loop (the
    exception raised and the exit code are all that differ), and leaving its resumed runs out
    halves this module's time."""
    import json

    if signum != signal.SIGINT:
        return
    result = runner.invoke(app, _command(workdir, tfds))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resumed_from_step"] == resumed_from
    assert not _leftovers(workdir)
    assert_trees_equal(_final_state(straight), _final_state(workdir))


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_at_start_up_nothing_is_saved_and_the_note_says_so(tmp_path, tfds, straight, signum,
                                                           code):
    """While the data is opened, before the first step: there is nothing to save."""
    from realsys_cli.classifier import train

    workdir = tmp_path / "w"
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, train, "open_dataset", signum)
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, code, workdir, saved=None, says="nothing new was saved")
    _rerun_equals_straight(workdir, tfds, straight, signum, resumed_from=None)


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_in_a_step_the_state_after_it_is_saved(tmp_path, tfds, straight, signum, code):
    from interrupt import signal_at_step

    from realsys_cli.classifier.steps import ClassifierSteps

    workdir = tmp_path / "w"
    with signal_at_step(ClassifierSteps, 2, signum):
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, code, workdir, saved=2, says="at step 2; saved")
    _rerun_equals_straight(workdir, tfds, straight, signum, resumed_from=2)


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_in_the_end_of_epoch_evaluation_the_epoch_is_saved(tmp_path, tfds, straight, signum,
                                                           code):
    """The evaluation finishes, its checkpoint (latest and best) is written, then the exit."""
    from realsys_cli.classifier.train import ClassifierJob

    workdir = tmp_path / "w"
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, ClassifierJob, "evaluate", signum)
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, code, workdir, saved=4, says="at step 4; saved")
    assert Checkpointer(workdir).read_meta(best=True)["step"] == 4
    _rerun_equals_straight(workdir, tfds, straight, signum, resumed_from=4)


@pytest.mark.parametrize(("signum", "code", "nth"), [
    pytest.param(signal.SIGINT, 130, 1, id="periodic-SIGINT"),
    pytest.param(signal.SIGINT, 130, 2, id="epoch-and-best-SIGINT"),
    pytest.param(signal.SIGTERM, 143, 2, id="epoch-and-best-SIGTERM")])
def test_in_a_checkpoint_save_the_save_completes(tmp_path, tfds, straight, signum, code, nth):
    """Save 1 is step 3's (every 3 steps), save 2 step 4's (the epoch end, also to best/)."""
    workdir = tmp_path / "w"
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, Checkpointer, "save", signum, nth)
        result = runner.invoke(app, _command(workdir, tfds))
    step = 2 + nth
    _check_interrupted(result, code, workdir, saved=step, says=f"at step {step}; saved")
    _rerun_equals_straight(workdir, tfds, straight, signum, resumed_from=step)


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_while_the_last_save_is_written_it_completes(tmp_path, tfds, straight, signum, code):
    """After the last step the loop waits for its checkpoint: a signal then lets it finish."""
    workdir = tmp_path / "w"
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, Checkpointer, "wait", signum)
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, code, workdir, saved=8, says="at step 8; saved")
    _rerun_equals_straight(workdir, tfds, straight, signum, resumed_from=8)


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_after_the_loop_every_step_is_kept(tmp_path, tfds, straight, signum, code):
    """In the pictures after the last step, then in the final evaluation of the run that
    finishes it: every step is saved, so the run stops at once and the next run only
    evaluates."""
    from realsys_cli.classifier import report
    from realsys_cli.classifier.train import ClassifierJob

    workdir = tmp_path / "w"
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, report, "save_confusion", signum)
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, code, workdir, saved=8, says="after the last step (8)")
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, ClassifierJob, "evaluate", signum)  # the rerun's only evaluation
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, code, workdir, saved=8, says="after the last step (8)")
    _rerun_equals_straight(workdir, tfds, straight, signum, resumed_from=8)


def test_a_second_signal_in_a_save_lets_it_finish(tmp_path, tfds):
    """Ctrl-C as the epoch's save begins, and again after each part of it is handed to orbax
    (latest, then best): a second signal stops at once elsewhere, but here it would stop
    between the two, and best/ would not be the epoch's."""
    import orbax.checkpoint as ocp

    workdir = tmp_path / "w"
    with pytest.MonkeyPatch.context() as patch:
        saves = _raise_on_call(patch, Checkpointer, "save", signal.SIGINT, 2)
        real = ocp.CheckpointManager.save

        def again(self, *args, **kwargs):
            done = real(self, *args, **kwargs)
            if saves["n"] == 2:
                signal.raise_signal(signal.SIGINT)
            return done

        patch.setattr(ocp.CheckpointManager, "save", again)
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, 130, workdir, saved=4, says="at step 4; saved")
    assert Checkpointer(workdir).read_meta(best=True)["step"] == 4  # (resumed as above)


def test_a_second_signal_in_an_evaluation_stops_at_once(tmp_path, tfds):
    """Ctrl-C twice in epoch 1's evaluation: it is abandoned; the checkpoint kept is the last
    one this invocation saved (step 3's), and the line names it."""
    from realsys_cli.classifier.train import ClassifierJob

    workdir = tmp_path / "w"
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, ClassifierJob, "evaluate", signal.SIGINT)
        _raise_on_call(patch, ClassifierJob, "evaluate", signal.SIGINT)
        result = runner.invoke(app, _command(workdir, tfds))
    _check_interrupted(result, 130, workdir, saved=3, says="the last checkpoint saved is step 3")


ENTRY = """
import importlib, os, signal, sys
{prelude}
from realsys_cli.cli import main
sys.argv[0] = "realsys"
main()
"""
SIGNAL_IN = """
owner = importlib.import_module({module!r})
real = owner.{name}
def signalling(*args, **kwargs):
    {before}
    return real(*args, **kwargs)
owner.{name} = signalling
"""
# A module whose loading a signal interrupts: it must load to its end all the same (an
# exception raised inside an import breaks the module: numpy and jaxlib then fail to import,
# or abort). It loads while the data is opened.
SLOW_MODULE = """
import os, signal, time
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.3)
open(os.environ["LOADED_MARKER"], "w").close()
"""
# An object that crashes the interpreter's shutdown, as XLA's state did after a signal had cut
# a compilation short (SIGSEGV instead of exit 143).
CRASHING_SHUTDOWN = """
class Crash:
    def __del__(self, abort=os.abort):  # (os itself may be gone by then)
        abort()
crash = Crash()
"""


def _entry_point(tmp_path: Path, tfds: Path, prelude: str) -> subprocess.CompletedProcess:
    """`realsys` run as main() is, in its own process, after `prelude`."""
    workdir = tmp_path / "w"
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=str(tmp_path),
               LOADED_MARKER=str(tmp_path / "loaded"))
    return subprocess.run([sys.executable, "-c", ENTRY.format(prelude=prelude),
                           *_command(workdir, tfds)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_sigterm_while_the_options_are_read(tmp_path, tfds):
    """Outside the command, where Typer's own code for an interrupt is 130: still 143."""
    proc = _entry_point(tmp_path, tfds, SIGNAL_IN.format(
        module="realsys_cli.console", name="setup_logging",
        before="os.kill(os.getpid(), signal.SIGTERM)"))
    assert proc.returncode == 143 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "w").exists()


def test_a_signal_while_a_module_loads_lets_it_load(tmp_path, tfds):
    (tmp_path / "slow_module.py").write_text(SLOW_MODULE)
    proc = _entry_point(tmp_path, tfds, SIGNAL_IN.format(
        module="realsys_cli.classifier.train", name="open_dataset",
        before="importlib.import_module('slow_module')"))
    assert (tmp_path / "loaded").exists()  # the import was not cut short
    _check_interrupted(proc, 130, tmp_path / "w", saved=None, says="nothing new was saved")


def test_sigterm_after_the_workdir_is_opened_frees_it_and_skips_the_shutdown(tmp_path, tfds):
    """While the pixel statistics are sampled (the workdir is locked): exit 143 with the note;
    the exit handlers ran (the lock is freed), the interpreter's shutdown did not."""
    proc = _entry_point(tmp_path, tfds, CRASHING_SHUTDOWN + SIGNAL_IN.format(
        module="realsys_cli.classifier.train", name="sample_stats",
        before="os.kill(os.getpid(), signal.SIGTERM)"))
    _check_interrupted(proc, 143, tmp_path / "w", saved=None, says="nothing new was saved")
    assert (tmp_path / "w" / "config.json").exists() and not (tmp_path / "w" / ".lock").exists()


@pytest.mark.slow  # 13 s and 22 s on 2 busy cores
@pytest.mark.parametrize("trainer", ["predict-frames", "train-gan"])
def test_after_the_loop_of_the_other_trainers(tmp_path, tfds, trainer):
    """The GAN's and the frame predictor's work after the loop (pictures) is stopped the same
    way; run again, the command only finishes it."""
    import json

    from realsys_cli.frames import report as frames_report
    from realsys_cli.gan import train as gan_train

    command = {
        "predict-frames": ["-q", "predict-frames", "--dataset",
                           "moving-digits/train=16,test=8,frames=8", "--steps", "2", "-b", "8",
                           "--model", "convlstm", "--set", "input_frames=3", "--set", "output_frames=2",
                           "--set", "hidden_channels=8", "--set", "kernel_size=3"],
        "train-gan": ["-q", "train-gan", "--dataset", TINY, "--steps", "2", "-b", "32",
                      "--set", "width=4", "--set", "fid_samples=32", "--set", "grid_samples=4"],
    }[trainer] + ["--tfds-data-dir", str(tfds), "-w", str(tmp_path / "w"), "--json"]
    owner, name = {"predict-frames": (frames_report, "sample_predictions"),
                   "train-gan": (gan_train, "save_losses")}[trainer]
    with pytest.MonkeyPatch.context() as patch:
        _raise_on_call(patch, owner, name, signal.SIGINT)
        result = runner.invoke(app, command)
    _check_interrupted(result, 130, tmp_path / "w", saved=2, says="after the last step (2)",
                       others=trainer == "train-gan")
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resumed_from_step"] == 2
