"""kill -9 soak (slow, `make test-slow`): each trainer, killed four times and run again after
each kill, ends with the state of an uninterrupted run, to the bit.

Each trainer's command runs as the user runs it (`python -m realsys_cli ...`, its own process,
JAX on the CPU) in two workdirs: once straight through, and once SIGKILLed at seeded-random
moments of four kinds, in a seeded order: at start-up (imports, data preparation, compiling);
in training, soon after this invocation wrote the checkpoint of a drawn step (kills land
between checkpoints: one every 3 steps); while a checkpoint of a drawn step or later is
written (aimed by watching for orbax's temporary directory), epoch ends and best/ included;
and 1-6 s in. The run is started again after each kill, and once more until it ends. Nothing
is caught or saved on a SIGKILL: this is the power cut, the OOM killer, `docker kill`. Then
both workdirs' latest and best checkpoints (and the GAN's judge) must be equal, step and tree,
and no half-written checkpoint may be left.

The straight run goes alongside the killed ones (the two share the 2 cores), each workdir has
its own TFDS dir, so a kill can land in the data's preparation as well.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from trees import assert_trees_equal

pytestmark = pytest.mark.slow

EVERY = ["--set", "checkpoint_every_steps=3", "--set", "checkpoint_every_minutes=0",
         "--set", "log_every_steps=2"]
COMMANDS = {
    # 3 epochs of 8 steps: saved at 3, 6, 8 (epoch end, and best), 9, 12, ...
    "train-classifier": ["train-classifier", "--dataset", "digits/train=256,test=64",
                         "--epochs", "3", "-b", "32", "--set", "warmup_steps=2", *EVERY],
    # a judge trained first into WORKDIR/judge (its own run, 8 steps), then 3 epochs of 8 steps
    "train-gan": ["train-gan", "--dataset", "digits/train=256,test=64", "--epochs", "3",
                  "-b", "32", "--latent", "normal", "--set", "width=4", "--set", "fid_samples=64",
                  "--set", "grid_samples=16", "--set", "judge_epochs=1", *EVERY],
    # 3 epochs of 8 steps (of 4, the run could end inside a kill's aim on a fast host: after
    # SSIM's faster blur its 12 steps left one kill of four, 2026-12-04)
    "predict-frames": ["predict-frames", "--dataset", "moving-digits/train=64,test=8,frames=8",
                       "--epochs", "3", "-b", "8", "--model", "convlstm", "--set", "input_frames=3",
                       "--set", "output_frames=2", "--set", "hidden_channels=8",
                       "--set", "kernel_size=3", "--set", "warmup_steps=2", *EVERY],
}
KILLS = ("start-up", "training", "saving", "anytime")
TOTAL_STEPS = {"train-classifier": 24, "train-gan": 24, "predict-frames": 24}
TIMEOUT = 240  # seconds for one invocation


def _command(trainer: str, workdir: Path) -> list[str]:
    return [sys.executable, "-m", "realsys_cli", "-q", *COMMANDS[trainer], "-w", str(workdir),
            "--tfds-data-dir", str(workdir.parent / f"{workdir.name}-tfds"), "--json"]


def _start(trainer: str, workdir: Path) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    return subprocess.Popen(_command(trainer, workdir), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _logged_lines(workdir: Path) -> int:
    try:
        return len((workdir / "metrics.jsonl").read_bytes().splitlines())
    except OSError:
        return 0


def _wait_until(proc: subprocess.Popen, ready: Callable[[], bool], poll: float) -> bool:
    """True once `ready()` while `proc` runs; False when it ended first."""
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(poll)
    return False


def _steps(workdir: Path, *, in_flight: bool = False,
           stale: frozenset[int] = frozenset()) -> list[int]:
    """The trainer's checkpoints written, or being written: orbax writes each into a
    temporary directory `<step>.orbax-checkpoint-tmp...` first. `stale`: the temporary
    directories (inodes) that an earlier kill left, not a save in flight."""
    steps = []
    for path in (workdir / "checkpoints").glob("*"):
        head = path.name.split(".")[0]
        with contextlib.suppress(OSError):
            if head.isdigit() and ("orbax-checkpoint-tmp" in path.name) == in_flight and (
                    path.stat().st_ino not in stale):
                steps.append(int(head))
    return steps


def _stale(workdir: Path) -> frozenset[int]:
    found = set()
    for path in (workdir / "checkpoints").glob("*orbax-checkpoint-tmp*"):
        with contextlib.suppress(OSError):
            found.add(path.stat().st_ino)
    return frozenset(found)


def _training(workdir: Path, since_ns: int) -> bool:
    """This invocation has logged a step (or cut metrics.jsonl back to its checkpoint): it
    is past its start-up, where what earlier kills left is cleaned away."""
    try:
        return (workdir / "metrics.jsonl").stat().st_mtime_ns > since_ns
    except OSError:
        return False


def _aim(kind: str, proc: subprocess.Popen, workdir: Path, rng: random.Random,
         target: int) -> bool:
    """Wait for the moment of `kind`; False when the run ended before it came. `target`: the
    step a kill in training or in a save waits for (drawn so that the kills spread over the
    run)."""
    started, started_ns = time.monotonic(), time.time_ns()
    if kind == "start-up":  # imports, the data, compiling: the first seconds
        delay = rng.uniform(0.3, 4.0)
        return _wait_until(proc, lambda: time.monotonic() - started >= delay, 0.02)
    if kind == "training":  # between checkpoints: soon after this invocation wrote `target`'s
        there = set(_steps(workdir))  # or a later one
        if not _wait_until(proc, lambda: max(set(_steps(workdir)) - there, default=0) >= target,
                           0.01):
            return False
        time.sleep(rng.uniform(0.0, 0.2))  # soon after: the next checkpoint is steps away
        return True
    if kind == "saving":  # while the checkpoint of `target` or a later one is written
        if not _wait_until(proc, lambda: _training(workdir, started_ns), 0.01):
            return False
        stale = _stale(workdir)
        return _wait_until(
            proc, lambda: max(_steps(workdir, in_flight=True, stale=stale), default=0) >= target,
            0.002)
    delay = rng.uniform(1.0, 6.0)  # anytime: start-up (jax and XLA take seconds) or training
    return _wait_until(proc, lambda: time.monotonic() - started >= delay, 0.02)


def _checkpoints(workdir: Path) -> str:
    names = [p.name for p in sorted((workdir / "checkpoints").glob("*"))]
    return ",".join(names) or "none"


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL
    proc.communicate(timeout=60)


def _finish(proc: subprocess.Popen, what: str) -> None:
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{what} did not end in {TIMEOUT} s: {proc.communicate()[1][-2000:]}")
    assert proc.returncode == 0, f"{what} exited {proc.returncode}: {err[-3000:]}"


def _final_states(trainer: str, workdir: Path) -> dict[str, tuple[int, dict]]:
    """Every state the run leaves, restored as the commands that read it do, with its step:
    the latest checkpoint's whole tree and the best one's (and the GAN's judge's)."""
    from realsys_cli.classifier.evaluate import load_trained as load_classifier

    if trainer == "train-gan":
        from realsys_cli.gan.sample import load_generator

        load = load_generator
    elif trainer == "predict-frames":
        from realsys_cli.frames.evaluate import load_trained as load
    else:
        load = load_classifier
    states = {}
    for name, best in (("latest", False), ("best", True)):
        loaded = load(workdir, best=best)
        states[name] = (loaded.step, loaded.state)
    if trainer == "train-gan":
        judge = load_classifier(workdir / "judge", best=False)
        states["judge"] = (judge.step, judge.state)
    return states


@pytest.mark.parametrize("trainer", list(COMMANDS))
def test_killed_four_times_and_resumed_equals_uninterrupted(tmp_path, trainer):
    rng = random.Random(f"soak {trainer}")
    kinds = rng.sample(KILLS, len(KILLS))
    # The steps the kills in training and in a save wait for, in the order they come: one in
    # each half of the run (a checkpoint every 3 steps, the first step 3's), the second not so
    # late that the run could end before it.
    half = TOTAL_STEPS[trainer] // 2
    targets = iter([rng.randint(3, half), rng.randint(half + 1, TOTAL_STEPS[trainer] - 3)])
    straight = _start(trainer, tmp_path / "straight")
    workdir = tmp_path / "killed"
    log = []  # what happened, for the failure message
    try:
        for kind in kinds:
            proc = _start(trainer, workdir)
            t0 = time.monotonic()
            target = next(targets) if kind in ("training", "saving") else 0
            if not _aim(kind, proc, workdir, rng, target):
                _finish(proc, f"the run meant to be killed ({kind})")
                log.append(f"{kind}: ended before the kill")
                break
            _kill(proc)
            log.append(f"{kind}{f' {target}' if target else ''}: killed after "
                       f"{time.monotonic() - t0:.2f} s, checkpoints {_checkpoints(workdir)}, "
                       f"{_logged_lines(workdir)} metrics lines")
        else:
            _finish(_start(trainer, workdir), f"the run after {len(kinds)} kills")
    finally:
        _finish(straight, "the uninterrupted run")
    print(f"{trainer}: " + "; ".join(log))
    assert sum("killed" in entry for entry in log) >= 3, log  # the soak did soak
    assert (workdir / "result.json").is_file(), log
    # best/ is never left half-written: no temporary directory is left, and it holds the
    # uninterrupted run's choice (a save of it lost to a kill is made again).
    assert not list(workdir.rglob("*orbax-checkpoint-tmp*")), log
    a, b = _final_states(trainer, tmp_path / "straight"), _final_states(trainer, workdir)
    for name, (step, state) in a.items():
        assert b[name][0] == step, (name, b[name][0], step, log)
        assert_trees_equal(state, b[name][1])
