"""The ConvLSTM predictors: shapes, parameter counts, patching, and causality in time."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from realsys_cli.models import count_params
from realsys_cli.models.convlstm import (
    ConvLSTMCell,
    ConvLSTMPredictor,
    patch,
    unpatch,
)


def _tiny(**kw) -> ConvLSTMPredictor:
    options = dict(channels=1, hidden=(8, 8), kernel=3, patch_size=4, rngs=nnx.Rngs(0))
    return ConvLSTMPredictor(**{**options, **kw})


def test_predictor_parameter_count_by_hand():
    model = _tiny()
    # patched input 4*4*1 = 16 channels; cell l: (in + 8) * 32 * 3*3 + 32, encoder + forecaster
    per_stack = (16 + 8) * 32 * 9 + 32 + (8 + 8) * 32 * 9 + 32
    head = (8 + 8) * 16 + 16  # 1x1 conv from both layers' hidden states to the 16 patch pixels
    assert count_params(model) == 2 * per_stack + head


def test_forget_gate_starts_open():
    cell = ConvLSTMCell(3, 5, 3, rngs=nnx.Rngs(0))
    bias = np.asarray(cell.conv.bias[...])  # gates i, f, o, g of 5 channels each
    np.testing.assert_array_equal(bias, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])


def test_patch_is_space_to_depth_and_unpatch_inverts_it():
    x = jnp.arange(2 * 8 * 12 * 3, dtype=jnp.float32).reshape(2, 8, 12, 3)
    p = patch(x, 4)
    assert p.shape == (2, 2, 3, 48)
    np.testing.assert_array_equal(p[1, 1, 2].reshape(4, 4, 3), x[1, 4:8, 8:12])
    np.testing.assert_array_equal(unpatch(p, 4), x)


def test_forecast_shapes_and_independence_of_horizon_and_batch():
    model = _tiny()
    observed = jax.random.uniform(jax.random.key(0), (3, 5, 16, 16, 1))

    @nnx.jit
    def forecasts(m, x):
        return m(x, horizon=7), m(x, horizon=3), m(x[1:2], horizon=7)

    logits, shorter, alone = forecasts(model, observed)
    assert logits.shape == (3, 7, 16, 16, 1) and logits.dtype == jnp.float32
    assert shorter.shape == (3, 3, 16, 16, 1)
    # A shorter rollout is the start of the longer one (frame k never waits for frame k+1) ...
    np.testing.assert_allclose(np.asarray(shorter), np.asarray(logits[:, :3]), rtol=1e-5,
                               atol=1e-5)
    # ... and a clip's forecast does not depend on the other clips of its batch.
    np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(logits[1]), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(logits[0]) - np.asarray(logits[1])).max() > 1e-4  # not constant


def test_future_frames_never_move_earlier_predictions():
    """Teacher-forced (scheduled sampling with p = 1): the prediction of future frame k+1 may use
    the true frames up to k. Perturbing true frame j must leave predictions 0..j untouched and
    change prediction j+1 (so the test can fail)."""
    model = _tiny()
    keys = jax.random.split(jax.random.key(1), 3)
    observed = jax.random.uniform(keys[0], (2, 4, 16, 16, 1))
    truth = jax.random.uniform(keys[1], (2, 6, 16, 16, 1))
    teacher = jnp.ones((2, 6))
    forced = nnx.jit(lambda m, truth: m(observed, 6, truth=truth, teacher=teacher))
    base = np.asarray(forced(model, truth))
    for j in range(5):
        moved = truth.at[:, j].add(jax.random.normal(keys[2], truth.shape[2:]))
        out = np.asarray(forced(model, moved))
        np.testing.assert_array_equal(out[:, : j + 1], base[:, : j + 1])
        assert np.abs(out[:, j + 1] - base[:, j + 1]).max() > 1e-6, j


def test_rollout_sees_nothing_but_the_observed_frames():
    model = _tiny()
    keys = jax.random.split(jax.random.key(2), 3)
    observed = jax.random.uniform(keys[0], (2, 4, 16, 16, 1))
    truth = jax.random.uniform(keys[1], (2, 5, 16, 16, 1))
    free_run = nnx.jit(lambda m, observed: m(observed, 5))
    free = np.asarray(free_run(model, observed))
    # The true future is ignored where the teacher mask is 0 (evaluation and the movie).
    ignored = np.asarray(nnx.jit(lambda m: m(observed, 5, truth=truth,
                                             teacher=jnp.zeros((2, 5))))(model))
    np.testing.assert_array_equal(free, ignored)
    # ... while the observed frames do matter, the last one and an early one alike.
    for t in (0, 3):
        moved = observed.at[:, t].add(0.5)
        assert np.abs(np.asarray(free_run(model, moved)) - free).max() > 1e-6
