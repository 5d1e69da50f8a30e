"""Faults during training: a crash mid-epoch loses only the steps since the last periodic
checkpoint (and resumes exactly), SIGTERM saves and exits 143, a signal right after an epoch's
save does not save twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from trees import assert_trees_equal

from realsys_cli.classifier.config import ClassifierConfig
from realsys_cli.classifier.evaluate import load_trained
from realsys_cli.classifier.steps import ClassifierSteps
from realsys_cli.classifier.train import train_and_evaluate
from realsys_cli.training.checkpoint import Checkpointer
from realsys_cli.training.run_status import read_status

TINY = "digits/train=256,test=64"  # 8 steps an epoch at batch 32


def _cfg(**overrides) -> ClassifierConfig:
    base = dict(dataset=TINY, batch_size=32, num_epochs=2, log_every_steps=2, warmup_steps=2,
                checkpoint_every_steps=3, checkpoints_to_keep=5)
    return ClassifierConfig(**{**base, **overrides})


@pytest.mark.slow
def test_a_crash_mid_epoch_resumes_from_the_periodic_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg()
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    # Saved at 3, 6, 8 (epoch end), 9, 12, 15 and 16 (the end): every 3 steps, and each epoch.
    assert Checkpointer(tmp_path / "straight")._latest.all_steps() == [6, 8, 9, 12, 15, 16][-5:]

    real_make = ClassifierSteps.make_train_step

    def crashing(self):
        step = real_make(self)
        calls = {"n": 0}

        def wrapped(state, batch):
            calls["n"] += 1
            if calls["n"] == 8 + 3:  # a crash (no signal, nothing saved on the way out)
                raise RuntimeError("the machine went away")
            return step(state, batch)

        return wrapped

    monkeypatch.setattr(ClassifierSteps, "make_train_step", crashing)
    with pytest.raises(RuntimeError):
        train_and_evaluate(cfg, tmp_path / "resumed")
    assert Checkpointer(tmp_path / "resumed").latest_step() == 9  # mid-epoch 2
    assert read_status(tmp_path / "resumed")["status"] == "failed"
    monkeypatch.setattr(ClassifierSteps, "make_train_step", real_make)
    resumed = train_and_evaluate(cfg, tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 9 and resumed["steps"] == 16
    assert_trees_equal(load_trained(tmp_path / "straight", best=False).state,
                       load_trained(tmp_path / "resumed", best=False).state)
    assert resumed["eval_accuracy"] == straight["eval_accuracy"]


def test_a_signal_right_after_an_epoch_save_does_not_save_twice(tmp_path):
    """Ctrl-C arriving while step 8 (an epoch's last) runs: the epoch's save is the one kept,
    no second save of step 8 (orbax refuses a step twice)."""
    from interrupt import interrupt_at_step

    with interrupt_at_step(ClassifierSteps, 8):
        train_and_evaluate(_cfg(checkpoint_every_steps=0), tmp_path / "w")
    assert Checkpointer(tmp_path / "w").latest_step() == 8
    assert read_status(tmp_path / "w")["status"] == "interrupted"


@pytest.mark.slow
def test_sigterm_saves_and_exits_143(tmp_path):
    """A scheduler's SIGTERM mid-run: the CLI saves the current state and exits 143; the same
    command then resumes from it."""
    workdir = tmp_path / "w"
    command = [sys.executable, "-m", "realsys_cli", "-q", "train-classifier", "--dataset", TINY,
               "--epochs", "40", "--batch-size", "32", "--workdir", str(workdir), "--json",
               "--set", "checkpoint_every_minutes=0"]
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (workdir / "metrics.jsonl").exists():
        time.sleep(0.2)  # training has started once the first metrics are logged
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert out == ""  # no result: the run did not finish
    step = Checkpointer(workdir).latest_step()
    assert step is not None and 0 < step < 320
    status = json.loads((workdir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["step"] == step


@pytest.mark.slow
def test_a_diverging_run_keeps_a_checkpoint_that_resumes(tmp_path):
    """The issue's case: at a learning rate of 30 the loss reaches 1e22, still finite, before
    any NaN. The stop (an explosion over the run's median) names a checkpoint whose state is
    finite, and resuming it with the advised lower rate trains on to a finite end."""
    from realsys_cli.errors import TrainingDivergedError

    workdir = tmp_path / "w"
    cfg = _cfg(num_epochs=4, checkpoint_every_steps=2, learning_rate=30.0, warmup_steps=0,
               schedule="constant")
    with pytest.raises(TrainingDivergedError) as info:
        train_and_evaluate(cfg, workdir)
    message = str(info.value)
    good = Checkpointer(workdir).latest_step()
    assert f"the last good checkpoint (step {good}) is kept" in message
    assert "resume it with a lower learning rate" in message
    import jax
    import numpy as np

    kept = load_trained(workdir, best=False).state
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(kept["params"]))
    resumed = train_and_evaluate(_cfg(num_epochs=4, checkpoint_every_steps=2,
                                      learning_rate=0.01, warmup_steps=0, schedule="constant"),
                                 workdir)
    assert resumed["resumed_from_step"] == good and resumed["steps"] == 32
    assert np.isfinite(resumed["eval_loss"])


def test_a_damaged_metrics_line_is_skipped_and_the_run_resumes(tmp_path, caplog, monkeypatch):
    import logging

    from realsys_cli.training.metrics import MetricsLog

    logger = logging.getLogger("realsys")  # whatever a CLI test before did to it
    monkeypatch.setattr(logger, "handlers", [caplog.handler])
    monkeypatch.setattr(logger, "propagate", False)
    caplog.set_level(logging.INFO, logger="realsys")

    workdir = tmp_path / "w"
    train_and_evaluate(_cfg(num_epochs=1), workdir)
    with (workdir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 9, "loss": 0.')  # what a kill mid-write leaves
    records = MetricsLog(workdir).read()
    assert records and all(isinstance(r, dict) for r in records)
    assert "skipped 1 damaged line" in caplog.text
    resumed = train_and_evaluate(_cfg(num_epochs=2), workdir)
    assert resumed["resumed_from_step"] == 8 and resumed["steps"] == 16
    text = (workdir / "metrics.jsonl").read_text()
    assert '"loss": 0.\n' not in text and all(json.loads(line) for line in text.splitlines())


def test_an_empty_config_is_one_clear_error(tmp_path):
    from realsys_cli.errors import CheckpointError

    workdir = tmp_path / "w"
    train_and_evaluate(_cfg(num_epochs=1), workdir)
    (workdir / "config.json").write_text("")
    with pytest.raises(CheckpointError, match="config.json is damaged"):
        load_trained(workdir)
