"""The training loop every job shares: steps, logging, evaluation, checkpoints, resume, Ctrl-C.

A job supplies a `TrainJob`: its jitted step, its end-of-epoch evaluation, and the JSON it wants
in each checkpoint. The loop owns the rest, identically for all jobs:

  * metrics are fetched from the device every `log_every_steps` only (no per-step sync), written
    to metrics.jsonl and shown on the progress bar;
  * a NaN/Inf in any logged metric, or a loss EXPLODED times the run's median so far (a loss
    of 1e22 is finite, and comes before the NaN), stops the run with a TrainingDivergedError
    naming the last good checkpoint; a state is saved only after its loss was seen finite and
    when every float in it (parameters, optimizer moments) is finite;
  * Ctrl-C (SIGTERM alike) is caught between steps (never inside one, whose donated buffers
    would be lost), the current state is saved, and KeyboardInterrupt (Terminated) is raised
    for the CLI to exit 130 (143), after one line saying what was saved; a signal during an
    evaluation or a save lets it finish first; the trainers' work after the loop is stopped at
    once (`finishing`): every step is saved by then;
  * every checkpoint carries the data iterator's position, so resuming replays nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, Protocol

import jax
import numpy as np

from realsys_cli.errors import (
    Terminated,
    TrainingDivergedError,
    mark_reported,
    signal_name,
    was_reported,
)
from realsys_cli.progress import SILENT, Progress
from realsys_cli.training import run_status
from realsys_cli.training.checkpoint import Checkpointer, NonFiniteStateError
from realsys_cli.training.distributed import to_host
from realsys_cli.training.metrics import MetricsLog

log = logging.getLogger("realsys")


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    total_steps: int
    steps_per_epoch: int
    log_every_steps: int = 50
    images_per_step: int = 0  # global batch size, for images/s
    progress_keys: tuple[str, ...] = ("loss", "accuracy")  # live metrics on the progress bar
    # Checkpoints between epoch ends too, so a kill loses minutes, not an epoch: every N steps
    # (0 = off) and every S seconds of wall time (0 = off). Resume is exact from any of them.
    checkpoint_every_steps: int = 0
    checkpoint_every_seconds: float = 300.0


class TrainJob(Protocol):
    def train_step(self, state: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]: ...

    def end_of_epoch(self, state: Any, epoch: int) -> tuple[Any, dict[str, float], float | None]:
        """Evaluate; may change the state (plateau LR). Returns (state, metrics, best-metric)."""
        ...

    def checkpoint_meta(self) -> dict[str, Any]: ...


@dataclasses.dataclass
class LoopResult:
    state: Any
    step: int
    train_seconds: float  # wall time of this invocation's steps, compilation included
    steady_images_per_second: float  # after the first (compiling) step
    last_train: dict[str, float]
    last_eval: dict[str, float]


class _InterruptFlag:
    """SIGINT and SIGTERM set a flag instead of raising mid-step (the loop saves, then raises
    KeyboardInterrupt, or Terminated for SIGTERM); a second signal raises at once (a user
    who does not want to wait for an evaluation), but not inside `saving()`: raised there it
    would leave a checkpoint half-written, and the flag, set already, stops the loop right
    after that save anyway."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.set = False
        self.signum = signal.SIGINT
        self._saving = False

    def stop(self) -> KeyboardInterrupt:
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        self._saving = True
        try:
            yield
        finally:
            self._saving = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in self.SIGNALS}

        def handler(signum: int, frame: Any) -> None:
            again = self.set
            self.set, self.signum = True, signum
            if again and not self._saving:
                raise self.stop()

        for s in self.SIGNALS:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


# A logged loss this many times the run's median so far is an explosion, not noise.
EXPLODED = 1e4


@contextlib.contextmanager
def _saves_finished(checkpointer: Checkpointer) -> Iterator[None]:
    """On any error, let the checkpoint saves in flight finish before it propagates: a crash
    in step N then loses only the steps since the last periodic checkpoint."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            checkpointer.wait()
        raise


@contextlib.contextmanager
def _interrupts_reported(workdir: Path, last_saved: Callable[[], int | None]) -> Iterator[None]:
    """A second signal raises wherever the loop is: say which checkpoint is kept (when this
    invocation saved none, the CLI says that nothing new was saved)."""
    try:
        yield
    except KeyboardInterrupt as e:
        step = last_saved()
        if not was_reported(e) and step is not None:
            log.warning("interrupted (%s); the last checkpoint saved is step %d, in %s: run the "
                        "same command again to resume", signal_name(e), step, workdir)
            mark_reported(e)
        raise


@contextlib.contextmanager
def finishing(workdir: str | Path, step: int) -> Iterator[None]:
    """Around a trainer's work after `run_loop` (final evaluation, pictures, result.json).
    Every step is saved by then, so a signal stops that work at once (the CLI exits 130, or
    143 for SIGTERM) with one line saying so; the same command run again only finishes it."""
    try:
        yield
    except KeyboardInterrupt as e:
        if not was_reported(e):
            log.warning("interrupted (%s) after the last step (%d), which is saved in %s: run "
                        "the same command again to finish", signal_name(e), step, workdir)
            mark_reported(e)
        raise


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def _host_means(pending: list[dict[str, Any]]) -> dict[str, float]:
    fetched = to_host(pending)
    keys = fetched[0].keys()
    return {k: float(np.mean([np.asarray(m[k], dtype=np.float64) for m in fetched])) for k in keys}


def run_loop(
    job: TrainJob,
    state: Any,
    batches: Any,  # a grain DatasetIterator (next, get_state)
    put_batch: Callable[[dict[str, np.ndarray]], dict[str, Any]],
    spec: LoopSpec,
    *,
    start_step: int,
    checkpointer: Checkpointer,
    metrics_log: MetricsLog,
    progress: Progress = SILENT,
    meta: Callable[[], dict[str, Any]] | None = None,
) -> LoopResult:
    flag = _InterruptFlag()
    step = start_step
    pending: list[dict[str, Any]] = []
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    t_start = time.perf_counter()
    t_steady, steady_steps = None, 0

    saved = {"step": start_step, "time": time.monotonic()}
    saved_here: list[int] = []  # the steps this invocation saved

    def save(*, metric: float | None = None, force: bool = False) -> None:
        if step == saved["step"] and metric is None:
            return  # this state is saved already (an epoch end, then Ctrl-C)
        extra = {"step": step, "epoch": step / spec.steps_per_epoch,
                 "data_state": batches.get_state(), **job.checkpoint_meta()}
        if meta is not None:
            extra.update(meta())
        try:
            with flag.saving():
                checkpointer.save(step, state, extra, metric=metric, force=force)
        except NonFiniteStateError:  # a ruined state is never the one kept
            raise diverged("the parameters or optimizer state became NaN or infinite") from None
        # Only once orbax has it: a save that raised is no checkpoint to name.
        saved.update(step=step, time=time.monotonic())
        saved_here.append(step)

    losses: list[float] = []  # the logged "loss" means, to tell an explosion from noise

    def diverged(what: str) -> TrainingDivergedError:
        good = checkpointer.latest_step()
        return TrainingDivergedError(
            f"{what} by step {step}; "
            + (f"the last good checkpoint (step {good}) is kept in {checkpointer.workdir}: "
               "resume it with a lower learning rate (--set learning_rate=...) or "
               "grad_clip_norm" if good is not None else
               "no checkpoint was written yet: lower the learning rate (--set "
               "learning_rate=...) or enable grad_clip_norm")
        )

    def flush() -> None:
        nonlocal pending, last_train
        if not pending:
            return
        means = _host_means(pending)
        pending = []
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            raise diverged(f"{bad[0]} became {means[bad[0]]}")
        if "loss" in means:  # finite but exploded (1e22 comes before NaN): not a good state
            if len(losses) >= 3 and means["loss"] > EXPLODED * max(np.median(losses), 1e-3):
                raise diverged(f"the loss exploded to {means['loss']:.3g} (the run's median "
                               f"{np.median(losses):.3g})")
            losses.append(means["loss"])
        last_train = means
        metrics_log.write({"step": step, "epoch": round(step / spec.steps_per_epoch, 4),
                           **{f"{k}": v for k, v in means.items()}})

    def stop() -> NoReturn:
        """After a signal: save the state (unless saved already), say so, raise."""
        flush()
        save(force=True)
        with flag.saving():
            checkpointer.wait()
        log.warning("interrupted (%s) at step %d; saved a checkpoint in %s: run the same "
                    "command again to resume", signal.Signals(flag.signum).name, step,
                    checkpointer.workdir)
        raise mark_reported(flag.stop())

    tracked = run_status.tracked(checkpointer.workdir, enabled=metrics_log.enabled,
                                 step=lambda: step, total_steps=spec.total_steps)
    reported = _interrupts_reported(checkpointer.workdir,
                                    lambda: saved_here[-1] if saved_here else None)
    with reported, _saves_finished(checkpointer), tracked, flag.installed(), progress.task(
            "training", spec.total_steps, completed=start_step) as bar:
        while step < spec.total_steps:
            batch = put_batch(next(batches))
            state, metrics = job.train_step(state, batch)
            step += 1
            pending.append(metrics)
            if step == start_step + 1:
                jax.block_until_ready(state)
                t_steady = time.perf_counter()
            else:
                steady_steps += 1
            if step % spec.log_every_steps == 0 or step == spec.total_steps:
                flush()
                bar.advance(0, **{k: v for k, v in last_train.items() if k in spec.progress_keys})
            bar.advance(1)
            if step % spec.steps_per_epoch == 0 or step == spec.total_steps:
                flush()
                epoch = math.ceil(step / spec.steps_per_epoch)
                state, last_eval, best_metric = job.end_of_epoch(state, epoch)
                if last_eval:
                    metrics_log.write({"step": step, "epoch": round(step / spec.steps_per_epoch, 4),
                                       **{f"eval_{k}": v for k, v in last_eval.items()}})
                    log.info("epoch %d: train %s | eval %s", epoch, _fmt(last_train),
                             _fmt(last_eval))
                save(metric=best_metric)
            elif (spec.checkpoint_every_steps and step % spec.checkpoint_every_steps == 0) or (
                    spec.checkpoint_every_seconds
                    and time.monotonic() - saved["time"] >= spec.checkpoint_every_seconds):
                flush()  # a state is saved only after its loss was seen finite
                save()
            if flag.set:
                stop()
        jax.block_until_ready(state)
        t_end = time.perf_counter()
        with flag.saving():  # the last checkpoint is written before the trainer reads on
            checkpointer.wait()
        if flag.set:  # a signal while it was written
            stop()
    steady_time = (t_end - t_steady) if t_steady is not None else 0.0
    ips = spec.images_per_step * steady_steps / steady_time if steady_time > 0 else 0.0
    return LoopResult(state, step, t_end - t_start, ips, last_train, last_eval)
