"""Training a frame predictor on the shared core: the loss falls, the adversarial step runs, an
interrupted run resumes exactly, and the library errors are clear."""

from __future__ import annotations

import signal

import jax
import numpy as np
import pytest

from realsys_cli.errors import CheckpointError, ConfigError, DatasetError
from realsys_cli.frames import setup
from realsys_cli.frames.config import FramesConfig
from realsys_cli.frames.evaluate import load_trained
from realsys_cli.frames.steps import FramesSteps, init_state
from realsys_cli.frames.train import train_and_evaluate
from realsys_cli.training.metrics import MetricsLog
from realsys_cli.training.run_status import read_status

TINY = "moving-digits/train=32,test=8,frames=8"


def _cfg(**overrides) -> FramesConfig:
    base = dict(dataset=TINY, input_frames=3, output_frames=2, hidden_channels=(8,),
                kernel_size=3, batch_size=8, num_epochs=2, log_every_steps=2, warmup_steps=2)
    return FramesConfig(**{**base, **overrides})


def _steps(cfg: FramesConfig, total_steps: int = 100):
    model = setup.make_model(cfg, 1)
    discriminator = setup.make_discriminator(cfg, 1)
    steps = setup.make_steps(cfg, model, total_steps, discriminator)
    return steps, init_state(model, steps.tx, cfg.seed, discriminator=discriminator,
                             d_tx=steps.d_tx)


def _clips(n: int = 8, frames: int = 8, seed: int = 0) -> np.ndarray:
    from realsys_cli.data.render_moving import make_moving_digits

    return make_moving_digits(n, seed=seed, num_frames=frames)  # uint8 (n, T, 64, 64, 1)


def test_loss_falls_on_a_fixed_batch():
    steps, state = _steps(_cfg(learning_rate=1e-2, warmup_steps=0, schedule="constant"))
    batch = {"video": _clips()}
    step = steps.make_train_step()
    first = None
    for _ in range(15):
        state, metrics = step(state, batch)
        first = first if first is not None else float(metrics["mse"])
    last = float(metrics["mse"])
    # from ~140 (a dark frame against two digits) by about 10% in 15 steps
    assert np.isfinite(last) and last < 0.92 * first, (first, last)
    assert int(state["step"]) == 15


def test_reconstruction_losses_by_hand():
    logits = jax.numpy.array([[0.0, 2.0], [-1.0, 0.5]])
    truth = jax.numpy.array([[1.0, 0.0], [0.0, 1.0]])
    p = 1 / (1 + np.exp(-np.array([[0.0, 2.0], [-1.0, 0.5]])))
    mse = np.mean((p - np.array([[1.0, 0.0], [0.0, 1.0]])) ** 2)
    bce = np.mean([np.log(2), np.log1p(np.exp(2.0)), np.log1p(np.exp(-1.0)),
                   np.log1p(np.exp(-0.5))])
    assert float(_steps(_cfg(loss="mse"))[0]._reconstruction(logits, truth)) == pytest.approx(mse)
    assert float(_steps(_cfg(loss="bce"))[0]._reconstruction(logits, truth)) == pytest.approx(bce)


def test_adversarial_step_updates_both_networks():
    steps, state = _steps(_cfg(adversarial=True))
    assert steps.adversarial
    d_before = [np.asarray(x) for x in jax.tree.leaves(state["d_params"])]
    state, metrics = steps.make_train_step()(state, {"video": _clips()})
    for key in ("loss", "reconstruction", "observed_loss", "g_adversarial", "gdl", "d_loss",
                "d_real", "d_fake"):
        assert np.isfinite(float(metrics[key])), key
    assert 0 < float(metrics["d_real"]) < 1 and 0 < float(metrics["d_fake"]) < 1
    # d_loss = BCE(real, 1) + BCE(fake, 0) starts near 2 log 2 for an untrained discriminator
    assert float(metrics["d_loss"]) == pytest.approx(2 * np.log(2), abs=0.3)
    # loss = 1 * reconstruction + 0.05 * adversarial + 1 * gdl (Mathieu et al.'s weights)
    #        + 1 * the encoder's next-frame loss on the observed frames
    expected = (float(metrics["reconstruction"]) + 0.05 * float(metrics["g_adversarial"])
                + float(metrics["gdl"]) + float(metrics["observed_loss"]))
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)
    d_after = [np.asarray(x) for x in jax.tree.leaves(state["d_params"])]
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, d_after))


def test_scheduled_sampling_feeds_truth_early_and_predictions_late():
    steps, _ = _steps(_cfg(scheduled_sampling_steps=10))
    key = jax.random.key(0)
    assert float(steps._teacher(key, jax.numpy.int32(0), 64).mean()) == 1.0
    assert float(steps._teacher(key, jax.numpy.int32(10), 64).mean()) == 0.0
    assert 0.3 < float(steps._teacher(key, jax.numpy.int32(5), 256).mean()) < 0.7
    assert _steps(_cfg())[0]._teacher(key, jax.numpy.int32(0), 4) is None


def _params(workdir) -> list[np.ndarray]:
    state = load_trained(workdir, best=False).state
    return [np.asarray(x) for x in jax.tree.leaves((state["params"], state["opt"]))]


def test_adversarial_run_loads_with_its_trained_discriminator(tmp_path):
    cfg = _cfg(adversarial=True, num_epochs=1)
    train_and_evaluate(cfg, tmp_path / "w")
    loaded = load_trained(tmp_path / "w", best=False).state
    _, fresh = _steps(cfg)
    assert jax.tree.structure(loaded) == jax.tree.structure(fresh)
    trained_d = [np.asarray(x) for x in jax.tree.leaves(loaded["d_params"])]
    initial_d = [np.asarray(x) for x in jax.tree.leaves(fresh["d_params"])]
    assert all(np.isfinite(x).all() for x in trained_d)
    assert any(not np.array_equal(a, b) for a, b in zip(trained_d, initial_d, strict=True))


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = _cfg()
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    assert straight["steps"] == 8 and straight["epochs"] == 2
    assert len(straight["mse_per_frame"]) == 2

    real_make = FramesSteps.make_train_step

    def interrupting(self):
        step = real_make(self)
        calls = {"n": 0}

        def wrapped(state, batch):
            calls["n"] += 1
            if calls["n"] == 3:  # Ctrl-C arrives while step 3 runs
                signal.raise_signal(signal.SIGINT)
            return step(state, batch)

        return wrapped

    monkeypatch.setattr(FramesSteps, "make_train_step", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, tmp_path / "resumed")
    status = read_status(tmp_path / "resumed")
    assert (status["status"], status["step"], status["total_steps"]) == ("interrupted", 3, 8)
    monkeypatch.setattr(FramesSteps, "make_train_step", real_make)
    resumed = train_and_evaluate(cfg, tmp_path / "resumed")
    assert read_status(tmp_path / "resumed")["status"] == "finished"
    assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 8
    for a, b in zip(_params(tmp_path / "straight"), _params(tmp_path / "resumed")):
        np.testing.assert_array_equal(a, b)
    assert resumed["mse_per_frame"] == straight["mse_per_frame"]
    # metrics.jsonl: every step logged once (3: flushed at Ctrl-C, where the checkpoint is)
    logged = [r["step"] for r in MetricsLog(tmp_path / "resumed").read() if "loss" in r]
    assert logged == [2, 3, 4, 6, 8]

    with pytest.raises(CheckpointError, match="another config.*hidden_channels"):
        train_and_evaluate(_cfg(hidden_channels=(4,)), tmp_path / "resumed")


def test_clips_too_short_and_image_data_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="clips of 8 frames.*frames=20"):
        train_and_evaluate(_cfg(input_frames=10, output_frames=10), tmp_path / "w")
    with pytest.raises(DatasetError, match="image dataset"):
        train_and_evaluate(_cfg(dataset="digits/train=8,test=8"), tmp_path / "w")
    with pytest.raises(DatasetError, match="test=8 is an image dataset"):
        train_and_evaluate(_cfg(eval_dataset="digits/train=8,test=8"), tmp_path / "w")
    with pytest.raises(ConfigError, match="patches of 5 px"):
        train_and_evaluate(_cfg(patch_size=5), tmp_path / "w")


def test_scored_on_the_real_moving_mnist_file(served, tmp_path):
    """--set eval_dataset=moving_mnist: a stand-in of the authors' file, (20, N, 64, 64), is
    downloaded from the mirror, prepared, and scores the model trained on moving-digits."""
    from mirror import write_moving_mnist, write_sums

    write_moving_mnist(served.root, clips=6)
    write_sums(served.root)
    result = train_and_evaluate(_cfg(num_epochs=1, eval_dataset="moving_mnist"), tmp_path / "w")
    assert result["eval_dataset"] == "moving_mnist"
    assert result["eval_split"] == "test" and result["eval_sequences"] == 6
    assert np.isfinite(result["mse_per_frame"]).all() and len(result["mse_per_frame"]) == 2
