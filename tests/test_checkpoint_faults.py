"""Damaged checkpoints and full disks: detected, survived, one line.

A checkpoint damaged in any of the ways a crash, a bad disk or a careless hand leaves one (a
truncated or bit-flipped array file, a garbled meta JSON, a missing manifest or metadata file,
a missing state directory) is skipped for the newest intact one with a warning naming it; a
training run moves it aside and resumes exactly; when none is intact the command stops with
one line. A full disk is one line naming the space, the previous checkpoint intact and no
temporary directories left (a real tmpfs when the tests run as root, else skipped).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal
from typer.testing import CliRunner

from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.classifier.evaluate import load_trained
from realsys_cli.classifier.train import train_and_evaluate
from realsys_cli.cli import app
from realsys_cli.errors import CheckpointError, DamagedCheckpointError, DiskFullError
from realsys_cli.training import checkpoint as checkpoint_lib
from realsys_cli.training.checkpoint import Checkpointer

TINY = "digits/train=256,test=64"  # 8 steps an epoch at batch 32


def _state(scale: float) -> dict:
    return {"params": {"w": jnp.arange(1000.0, dtype=jnp.float32).reshape(10, 100) * scale,
                       "b": jnp.full(7, float(scale))},
            "step": jnp.int32(int(scale))}


@pytest.fixture
def warnings_seen(caplog, monkeypatch):
    """realsys's log records, whatever a CLI test before did to its logger."""
    logger = logging.getLogger("realsys")
    monkeypatch.setattr(logger, "handlers", [caplog.handler])
    monkeypatch.setattr(logger, "propagate", False)
    caplog.set_level(logging.INFO, logger="realsys")
    return caplog


@pytest.fixture
def three_steps(tmp_path) -> Path:
    """A workdir with checkpoints of steps 1, 2 and 3 (the latest 3 kept)."""
    workdir = tmp_path / "w"
    checkpointer = Checkpointer(workdir, max_to_keep=3)
    for step in (1, 2, 3):
        checkpointer.save(step, _state(step), {"step": step})
    checkpointer.close()
    return workdir


def _truncate(step_dir: Path) -> None:
    for f in glob.glob(f"{step_dir}/state/ocdbt.process_0/d/*"):
        os.truncate(f, os.path.getsize(f) // 2)


def _flip_a_byte(step_dir: Path) -> None:
    """A silent corruption: the file still decompresses, to other numbers."""
    files = sorted(glob.glob(f"{step_dir}/state/ocdbt.process_0/d/*"), key=os.path.getsize)
    data = bytearray(Path(files[-1]).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(files[-1]).write_bytes(bytes(data))


DAMAGES = {
    "truncated arrays": _truncate,
    "a flipped bit": _flip_a_byte,
    "garbled meta JSON": lambda d: (d / "meta" / "metadata").write_text('{"step": 3, "conf'),
    "missing manifest": lambda d: (d / "state" / "manifest.ocdbt").unlink(),
    "missing array metadata": lambda d: (d / "state" / "_METADATA").unlink(),
    "missing state": lambda d: shutil.rmtree(d / "state"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(three_steps, damage,
                                                                   warnings_seen):
    DAMAGES[damage](three_steps / "checkpoints" / "3")
    template = jax.eval_shape(lambda: _state(1))

    # Read-only (evaluate, classify, fool): skipped with a warning, left where it is.
    reader = Checkpointer(three_steps, read_only=True)
    state, meta = reader.restore(template)
    reader.close()
    assert meta["step"] == 2
    assert_trees_equal(state, _state(2))
    assert (three_steps / "checkpoints" / "3").exists()
    warned = [r.getMessage() for r in warnings_seen.records
              if r.name == "realsys" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "checkpoints/3 is damaged" in warned[0], warned

    # A training run moves it aside, so step 3 can be written again.
    trainer = Checkpointer(three_steps, max_to_keep=3)
    state, meta = trainer.restore(template)
    assert meta["step"] == 2 and trainer.all_steps() == [1, 2]
    assert [p.name.split("-")[:2] for p in (three_steps / "damaged").iterdir()] == [
        ["checkpoints", "3"]]
    trainer.save(3, _state(3), {"step": 3})
    trainer.wait()
    assert_trees_equal(trainer.restore(template)[0], _state(3))
    trainer.close()


def test_every_checkpoint_damaged_is_one_clear_error(three_steps):
    for step in (1, 2, 3):
        _truncate(three_steps / "checkpoints" / str(step))
    with pytest.raises(DamagedCheckpointError, match=r"every checkpoint in .*checkpoints is "
                       r"damaged \(step 3: "):
        Checkpointer(three_steps, read_only=True).restore(jax.eval_shape(lambda: _state(1)))


def test_another_model_is_not_called_damaged(three_steps):
    other = {"params": {"w": jnp.zeros((10, 99)), "b": jnp.zeros(7)}, "step": jnp.int32(0)}
    with pytest.raises(CheckpointError, match="does not fit this model") as info:
        Checkpointer(three_steps, read_only=True).restore(jax.eval_shape(lambda: other))
    assert not isinstance(info.value, DamagedCheckpointError)


def test_the_checksum_is_of_the_bits():
    """Equal trees give equal sums; one changed word, or two words swapped, changes them."""
    sums, finite = checkpoint_lib.inspect_state(_state(2))
    assert finite and sums == checkpoint_lib.inspect_state(_state(2))[0]
    flipped = _state(2)
    flipped["params"]["w"] = flipped["params"]["w"].at[3, 4].add(1.0)
    swapped = _state(2)
    w = swapped["params"]["w"]
    swapped["params"]["w"] = w.at[0, 1].set(w[0, 2]).at[0, 2].set(w[0, 1])
    for changed in (flipped, swapped):
        other = checkpoint_lib.inspect_state(changed)[0]
        assert other["['params']['w']"] != sums["['params']['w']"]
        assert other["['params']['b']"] == sums["['params']['b']"]
    nan = _state(2)
    nan["params"]["b"] = nan["params"]["b"].at[0].set(jnp.nan)
    assert checkpoint_lib.inspect_state(nan)[1] is False


def test_a_state_with_nan_is_never_saved(tmp_path):
    state = _state(1)
    state["params"]["b"] = state["params"]["b"].at[2].set(jnp.inf)
    checkpointer = Checkpointer(tmp_path / "w")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        checkpointer.save(1, state, {"step": 1})
    checkpointer.close()
    assert Checkpointer(tmp_path / "w").all_steps() == []


def test_an_interrupted_best_save_is_rebuilt_from_the_latest(tmp_path):
    """Ctrl-C or kill -9 between an epoch end's latest save and its best save leaves best/
    without it (orbax's temporary directory at most): the next training run removes the
    leftover and rebuilds best/ from the latest checkpoint, which carries its epoch metric."""
    workdir = tmp_path / "w"
    checkpointer = Checkpointer(workdir)
    checkpointer.save(4, _state(4), {"step": 4}, metric=0.5)
    checkpointer.close()
    shutil.rmtree(workdir / "best" / "4")
    (workdir / "best" / "4.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)
    assert Checkpointer(workdir, read_only=True).read_meta(best=True) is None

    reopened = Checkpointer(workdir)
    assert reopened.all_steps(best=True) == [4]
    assert not list((workdir / "best").glob("*tmp*"))
    state, meta = reopened.restore(jax.eval_shape(lambda: _state(1)), best=True)
    assert_trees_equal(state, _state(4))
    assert meta["epoch_metric"] == 0.5
    reopened.save(5, _state(5), {"step": 5}, metric=0.4)  # not better: best/ stays at 4
    reopened.close()
    assert Checkpointer(workdir).all_steps(best=True) == [4]


# ------------------------------------------------------------------------ whole runs
def _cfg(**overrides) -> ClassifierConfig:
    base = dict(dataset=TINY, batch_size=32, num_epochs=2, log_every_steps=2, warmup_steps=2,
                checkpoint_every_steps=3, checkpoints_to_keep=3)
    return ClassifierConfig(**{**base, **overrides})


@pytest.mark.slow
def test_a_run_with_a_damaged_latest_checkpoint_resumes_and_ends_as_an_intact_one(tmp_path):
    cfg = _cfg()
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    shutil.copytree(tmp_path / "straight", tmp_path / "damaged")
    # Saved at 12, 15 and 16 (the end), the latest 3 kept; the latest is damaged.
    _flip_a_byte(tmp_path / "damaged" / "checkpoints" / "16")
    resumed = train_and_evaluate(cfg, tmp_path / "damaged")
    assert resumed["resumed_from_step"] == 15 and resumed["steps"] == 16
    assert_trees_equal(load_trained(tmp_path / "straight", best=False).state,
                       load_trained(tmp_path / "damaged", best=False).state)
    assert resumed["eval_accuracy"] == straight["eval_accuracy"]

    # evaluate with a damaged best/: one warning line, then the latest checkpoint's result.
    _truncate(next((tmp_path / "damaged" / "best").iterdir()))
    result = CliRunner().invoke(app, ["evaluate", "-C", str(tmp_path / "damaged"), "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is damaged" in lines[0] and "using the latest" in lines[0], lines
    assert '"checkpoint": "latest"' in result.stdout


# ------------------------------------------------------------------------ a full disk
def test_a_full_disk_is_one_error_naming_the_space(tmp_path, monkeypatch):
    checkpointer = Checkpointer(tmp_path / "w")
    checkpointer.save(1, _state(1), {"step": 1})
    checkpointer.wait()

    def no_space(*args, **kwargs):
        (tmp_path / "w" / "checkpoints" / "2.orbax-checkpoint-tmp-99").mkdir()
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "params.w/0.0": Failed writing')

    monkeypatch.setattr(checkpointer._latest, "save", no_space)
    with pytest.raises(DiskFullError) as info:
        checkpointer.save(2, _state(2), {"step": 2})
    message = str(info.value)
    assert "no space left on the device for checkpoint 2 in" in message
    assert "MB needed" in message and "MB free" in message
    assert "the checkpoint of step 1 is intact" in message
    assert not list((tmp_path / "w" / "checkpoints").glob("*tmp*"))


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_real_full_disk_keeps_the_previous_checkpoint(tmp_path):
    with _tmpfs(tmp_path / "small", "1M") as disk:
        checkpointer = Checkpointer(disk / "w")
        checkpointer.save(1, _state(1), {"step": 1})
        checkpointer.wait()
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(free - 2048, 0))  # leaves ~2 KB
        big = {"params": {"w": jnp.asarray(np.random.default_rng(0).normal(size=(10, 100)),
                                           jnp.float32), "b": jnp.ones(7)},
               "step": jnp.int32(2)}
        with pytest.raises(DiskFullError, match="the checkpoint of step 1 is intact"):
            checkpointer.save(2, big, {"step": 2})
            checkpointer.wait()
        assert not list((disk / "w").rglob("*orbax-checkpoint-tmp*"))
        (disk / "filler").unlink()
        state, meta = Checkpointer(disk / "w", read_only=True).restore(
            jax.eval_shape(lambda: _state(1)))
        assert meta["step"] == 1
        assert_trees_equal(state, _state(1))


def test_train_classifier_on_a_full_disk_is_one_line(tmp_path):
    with _tmpfs(tmp_path / "small", "256k") as disk:
        result = CliRunner().invoke(app, [
            "-q", "train-classifier", "--dataset", TINY, "--batch-size", "32", "--workdir",
            str(disk / "w"), "--json", "--set", "checkpoint_every_steps=2"])
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "no space left" in lines[0].lower(), result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        assert not list((disk / "w").rglob("*orbax-checkpoint-tmp*"))
