"""Training a frame predictor on the shared core: the loss falls, the adversarial step runs, an
interrupted run resumes exactly, and the library errors are clear."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from interrupt import interrupt_at_step
from trees import assert_trees_close, assert_trees_equal

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


def assert_sharded_step_equals_one_device(cfg: FramesConfig, clips: np.ndarray) -> None:
    """cfg's train step on `clips` sharded over the 4 fake devices gives one device's state
    and metrics."""
    from realsys_cli.training import distributed

    steps, state = _steps(cfg)
    one, one_metrics = steps.make_train_step()(jax.device_put(state, jax.devices()[0]),
                                               {"video": clips})
    steps, state = _steps(cfg)  # afresh: the step donates its input
    mesh = distributed.data_mesh()
    batch = distributed.shard_batch({"video": clips}, mesh)
    assert len(batch["video"].sharding.device_set) == 4
    four, four_metrics = steps.make_train_step()(distributed.replicate(state, mesh), batch)
    # atol 1e-6: on a CPU without AVX-512 (2026-12-02) one element in 32,768 of D's kernels
    # differed by 2e-7 (reductions summed in another order); statistics per device, or a
    # gradient not all-reduced, would move them by orders of magnitude more
    assert_trees_close(one, four, rtol=2e-5, atol=1e-6)
    assert {k: float(v) for k, v in four_metrics.items()} == pytest.approx(
        {k: float(v) for k, v in one_metrics.items()}, rel=1e-5)


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


def _discriminator_by_hand(steps, state, clips: np.ndarray) -> dict[str, float]:
    """Step 0's discriminator metrics recomputed from the two nets: each future frame judged
    beside the last observed one, real frames and the predictor's (sigmoid) frames, before
    the discriminator's update."""

    @jax.jit
    def by_hand(state):
        video = jnp.asarray(clips, jnp.float32) / 255.0  # (B, 8, 64, 64, 1)
        observed, truth = video[:, :3], video[:, 3:5]
        model = nnx.merge(steps.graphdef, state["params"], state["rest"])
        fake = jax.nn.sigmoid(model(observed, 2))  # (B, 2, 64, 64, 1)
        d = nnx.merge(steps.d_graphdef, state["d_params"], state["d_rest"])
        condition = jnp.repeat(observed[:, -1:], 2, axis=1).reshape(-1, 64, 64, 1)
        real_logits = d(condition, truth.reshape(-1, 64, 64, 1))
        fake_logits = d(condition, fake.reshape(-1, 64, 64, 1))
        return {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
                "d_loss": jnp.mean(-jax.nn.log_sigmoid(real_logits))
                + jnp.mean(-jax.nn.log_sigmoid(-fake_logits))}

    return {k: float(v) for k, v in by_hand(state).items()}


@pytest.mark.slow
def test_adversarial_step_updates_both_networks():
    steps, state = _steps(_cfg(adversarial=True))
    assert steps.adversarial
    d_before = [np.asarray(x) for x in jax.tree.leaves(state["d_params"])]
    expected = _discriminator_by_hand(steps, state, _clips())  # before the step donates it
    state, metrics = steps.make_train_step()(state, {"video": _clips()})
    for key in ("loss", "reconstruction", "observed_loss", "g_adversarial", "gdl", "d_loss",
                "d_real", "d_fake"):
        assert np.isfinite(float(metrics[key])), key
    assert {k: float(metrics[k]) for k in expected} == pytest.approx(expected, rel=1e-5)
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


def _final_state(workdir) -> dict:
    """The latest checkpoint's whole state (the predictor's weights and Adam state, with
    --adversarial the discriminator's, the step and the key), loaded as --rollout does."""
    return load_trained(workdir, best=False).state


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    cfg = _cfg()
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    assert straight["steps"] == 8 and straight["epochs"] == 2
    assert len(straight["mse_per_frame"]) == 2

    with interrupt_at_step(FramesSteps, 3):  # Ctrl-C arrives while step 3 runs
        train_and_evaluate(cfg, tmp_path / "resumed")
    status = read_status(tmp_path / "resumed")
    assert (status["status"], status["step"], status["total_steps"]) == ("interrupted", 3, 8)
    resumed = train_and_evaluate(cfg, tmp_path / "resumed")
    assert read_status(tmp_path / "resumed")["status"] == "finished"
    assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 8
    assert_trees_equal(_final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed"))
    assert resumed["mse_per_frame"] == straight["mse_per_frame"]
    # metrics.jsonl: every step logged once (3: flushed at Ctrl-C, where the checkpoint is)
    logged = [r["step"] for r in MetricsLog(tmp_path / "resumed").read() if "loss" in r]
    assert logged == [2, 3, 4, 6, 8]

    with pytest.raises(CheckpointError, match="another config.*hidden_channels"):
        train_and_evaluate(_cfg(hidden_channels=(4,)), tmp_path / "resumed")


# slow (about 30 s): the plain exact-resume test above stays in the default suite
@pytest.mark.slow
def test_resume_is_exact_with_scheduled_sampling_and_adversarial(tmp_path):
    """Scheduled sampling (truth fed with probability 1 -> 0 over 6 of the 8 steps: at step 3
    half of the future frames come from the truth, drawn from the state's key and step) and
    --adversarial (the discriminator's weights and Adam state in the checkpoint): Ctrl-C at step
    3, resumed, ends in the uninterrupted run's state, leaf for leaf."""
    cfg = _cfg(adversarial=True, scheduled_sampling_steps=6)
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    with interrupt_at_step(FramesSteps, 3):
        train_and_evaluate(cfg, tmp_path / "resumed")
    resumed = train_and_evaluate(cfg, tmp_path / "resumed")
    assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 8
    a, b = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    _, fresh = _steps(cfg)
    assert jax.tree.structure(a) == jax.tree.structure(fresh)  # the discriminator included
    assert_trees_equal(a, b)
    trained_d, initial_d = jax.tree.leaves(a["d_params"]), jax.tree.leaves(fresh["d_params"])
    assert all(not np.array_equal(x, y) for x, y in zip(trained_d, initial_d, strict=True))
    assert resumed["mse_per_frame"] == straight["mse_per_frame"]

    def logged(workdir, step: int) -> tuple[float, float]:
        (record,) = [r for r in MetricsLog(workdir).read() if r["step"] == step and "loss" in r]
        return record["loss"], record["d_loss"]

    # Steps 5-6 and 7-8, logged after the resume, are the uninterrupted run's.
    for step in (6, 8):
        assert logged(tmp_path / "resumed", step) == logged(tmp_path / "straight", step)


@pytest.mark.slow
def test_scheduled_sampling_changes_the_step_while_truth_is_fed():
    """At step 0 of a 10-step schedule every future frame the forecaster gets is the true one:
    the same weights and batch then give another loss than the free-running step."""
    clips = {"video": _clips()}
    losses = {}
    for ss in (0, 10):
        steps, state = _steps(_cfg(scheduled_sampling_steps=ss))
        losses[ss] = float(steps.make_train_step()(state, clips)[1]["loss"])
    assert losses[10] != pytest.approx(losses[0], rel=1e-4)


@pytest.mark.slow
def test_step_sharded_over_4_devices_equals_one_device():
    """The frames step, data parallel (batch of 8 clips over 4 devices, state replicated), with
    every term on: the observed-frames loss, scheduled sampling, the discriminator. The new
    state is the one-device step's within float tolerance (no BatchNorm in either net: the
    losses are means over the global batch, so the gradients are all-reduced)."""

    assert jax.device_count() == 4
    cfg = _cfg(adversarial=True, scheduled_sampling_steps=10)
    clips = _clips()
    assert_sharded_step_equals_one_device(cfg, clips)


def test_clips_too_short_and_image_data_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="clips of 8 frames.*frames=20"):
        train_and_evaluate(_cfg(input_frames=10, output_frames=10), tmp_path / "w")
    with pytest.raises(DatasetError, match="image dataset"):
        train_and_evaluate(_cfg(dataset="digits/train=8,test=8"), tmp_path / "w")
    with pytest.raises(DatasetError, match="test=8 is an image dataset"):
        train_and_evaluate(_cfg(eval_dataset="digits/train=8,test=8"), tmp_path / "w")
    with pytest.raises(ConfigError, match="patches of 5 px"):
        train_and_evaluate(_cfg(patch_size=5), tmp_path / "w")


@pytest.mark.slow
def test_scored_on_the_real_moving_mnist_file(served, tmp_path):
    """--set eval_dataset=moving_mnist: a stand-in of the authors' file, (20, N, 64, 64), is
    downloaded from the mirror, prepared, and scores the model trained on moving-digits."""
    from mirror import write_moving_mnist, write_sums

    seq = write_moving_mnist(served.root, clips=6)  # uint8 (20, 6, 64, 64), time first
    write_sums(served.root)
    result = train_and_evaluate(_cfg(num_epochs=1, eval_dataset="moving_mnist"), tmp_path / "w")
    assert result["eval_dataset"] == "moving_mnist"
    assert result["eval_split"] == "test" and result["eval_sequences"] == 6
    assert np.isfinite(result["mse_per_frame"]).all() and len(result["mse_per_frame"]) == 2
    # The clips scored are that file's: the copy-last baseline (frame 2 repeated as frames 3
    # and 4), per-frame squared error summed over the 64x64 pixels, averaged over the 6 clips.
    frames = seq.astype(np.float64) / 255.0
    copy_last = [((frames[3 + t] - frames[2]) ** 2).sum(axis=(1, 2)).mean() for t in (0, 1)]
    assert result["baseline_copy_last_mse_per_frame"] == pytest.approx(copy_last, abs=1e-3)
