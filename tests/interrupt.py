"""Ctrl-C at step N of a training run, for the resume tests.

    with interrupt_at_step(ClassifierSteps, 5):
        train_and_evaluate(cfg, workdir)   # SIGINT while step 5 runs: saved at 5, then raises

Within the block, the train steps made by `steps_cls.make_train_step()` count their calls (all
of them together: the run's steps) and raise SIGINT (a real signal, as a terminal's Ctrl-C)
just before running call N. The loop's handler only sets a flag, so step N completes, the
state after N steps is checkpointed, and the loop raises KeyboardInterrupt, which the block
must raise (else the test fails: the patched step was never used, or the loop ignored the
signal); the loop must also have stopped right after step N. The class's method is restored
on leaving the block, so running the same command again afterwards resumes uninterrupted.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def signal_at_step(steps_cls: type, n: int,
                   signum: int = signal.SIGINT) -> Iterator[dict[str, int]]:
    """The patch alone: `signum` raised just before call N of the train steps; what the block
    does with the loop's KeyboardInterrupt (or Terminated, for SIGTERM) is the caller's (a
    CliRunner turns it into an exit code). Yields {"calls": ...}."""
    assert n >= 1
    real_make = steps_cls.make_train_step
    counter = {"calls": 0}

    def interrupting(self: Any, *args: Any, **kwargs: Any) -> Callable:
        step = real_make(self, *args, **kwargs)

        def wrapped(state: Any, batch: Any) -> Any:
            counter["calls"] += 1
            if counter["calls"] == n:
                signal.raise_signal(signum)
            return step(state, batch)

        return wrapped

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps_cls, "make_train_step", interrupting)
        yield counter


@contextlib.contextmanager
def interrupt_at_step(steps_cls: type, n: int) -> Iterator[dict[str, int]]:
    """Yields {"calls": ...}: how many steps the patched step functions ran."""
    with signal_at_step(steps_cls, n) as counter, pytest.raises(KeyboardInterrupt):
        yield counter
    # The loop stopped right after step N: not before (the signal raised mid-step) nor later.
    assert counter["calls"] == n, f"{counter['calls']} steps ran, expected to stop after {n}"
