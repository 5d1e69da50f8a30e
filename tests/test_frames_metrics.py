"""Frame-prediction scores against hand-computed values (OpenSTL's conventions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realsys_cli.frames import metrics
from realsys_cli.frames.steps import gradient_difference

frame_scores = jax.jit(metrics.frame_scores)


def test_ssim_of_a_frame_with_itself_is_one_and_errors_are_zero():
    rng = np.random.default_rng(0)
    frames = jnp.asarray(rng.uniform(0, 1, (2, 3, 64, 64, 1)), jnp.float32)
    scores = frame_scores(frames, frames)
    np.testing.assert_allclose(scores["ssim"], 1.0, atol=1e-5)
    np.testing.assert_array_equal(scores["mse"], 0.0)
    np.testing.assert_array_equal(scores["mae"], 0.0)
    np.testing.assert_allclose(scores["psnr"], metrics.PSNR_CAP_DB, rtol=1e-6)


def test_the_matrix_blur_gives_dm_pix_own_ssim():
    """gaussian_blur (two banded matrix products) against dm-pix's default blur, on frames
    that are not square and have 2 channels, and on a hand-made band."""
    import dm_pix

    band = metrics.gaussian_band(13)  # (3, 13): three windows of 11 taps
    assert band.shape == (3, 13)
    np.testing.assert_allclose(band.sum(1), 1.0, rtol=1e-6)
    assert band[0, 11:].tolist() == [0.0, 0.0] and band[2, :2].tolist() == [0.0, 0.0]
    assert band[1, 6] == band.max()  # the centre tap of the middle window
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.uniform(0, 1, (5, 24, 40, 2)), jnp.float32)
    b = jnp.clip(a + 0.2 * jnp.asarray(rng.standard_normal(a.shape), jnp.float32), 0, 1)
    ours = dm_pix.ssim(a, b, max_val=1.0, filter_fn=metrics.gaussian_blur)
    theirs = dm_pix.ssim(a, b, max_val=1.0, filter_size=11, filter_sigma=1.5)
    assert 0.1 < float(theirs.mean()) < 0.95
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_mse_is_summed_over_pixels_and_averaged_over_frames():
    truth = jnp.zeros((1, 2, 64, 64, 1))
    pred = jnp.full((1, 2, 64, 64, 1), 0.1)
    scores = frame_scores(pred, truth)
    # 4096 pixels, each off by 0.1: 4096 * 0.01 = 40.96 per frame (not the pixel mean, 0.01)
    np.testing.assert_allclose(scores["mse"], 40.96, rtol=1e-5)
    np.testing.assert_allclose(scores["mae"], 409.6, rtol=1e-5)
    np.testing.assert_allclose(scores["psnr"], 20.0, rtol=1e-5)  # 10 log10(1 / 0.01)
    # One white pixel missed: MSE 1 and MAE 1 whatever the frame size.
    one = jnp.zeros((1, 1, 64, 64, 1)).at[0, 0, 10, 20, 0].set(1.0)
    scores = frame_scores(jnp.zeros_like(one), one)
    assert float(scores["mse"][0, 0]) == pytest.approx(1.0)
    assert float(scores["mae"][0, 0]) == pytest.approx(1.0)


def test_ssim_falls_for_a_worse_prediction():
    rng = np.random.default_rng(1)
    truth = jnp.asarray(rng.uniform(0, 1, (1, 1, 64, 64, 1)), jnp.float32)
    slightly = jnp.clip(truth + 0.05 * rng.standard_normal(truth.shape), 0, 1)
    very = jnp.clip(truth + 0.5 * rng.standard_normal(truth.shape), 0, 1)
    s = [float(frame_scores(p, truth)["ssim"][0, 0]) for p in (slightly, very)]
    assert 1.0 > s[0] > s[1]


def test_baselines_by_hand():
    observed = jnp.stack([jnp.full((1, 4, 4, 1), v) for v in (0.0, 0.2, 0.4)], axis=1)  # (1,3,..)
    np.testing.assert_allclose(metrics.copy_last(observed, 2), 0.4)
    np.testing.assert_allclose(metrics.mean_frame(observed, 2), 0.2, rtol=1e-6)
    assert metrics.copy_last(observed, 5).shape == (1, 5, 4, 4, 1)


def test_sharpness_and_gradient_difference_by_hand():
    edge = jnp.zeros((4, 4, 1)).at[:, 2:].set(1.0)  # a vertical edge
    # along W: 4 rows x 3 differences, one of them 1 per row -> mean 1/3; along H: nothing
    assert float(metrics.sharpness(edge)) == pytest.approx(1 / 3)
    assert float(gradient_difference(edge, edge)) == 0.0
    assert float(gradient_difference(jnp.zeros_like(edge), edge)) == pytest.approx(1 / 3)


def test_masked_sums_ignore_padding_and_summarize_averages():
    truth = jnp.zeros((3, 2, 8, 8, 1))
    observed = jnp.zeros((3, 4, 8, 8, 1))
    pred = jnp.zeros((3, 2, 8, 8, 1)).at[0].set(0.5).at[2].set(1.0)  # row 2 is padding
    sums = jax.jit(metrics.masked_sums)(observed, truth, pred, jnp.array([True, True, False]))
    assert float(sums["count"]) == 2
    np.testing.assert_allclose(sums["model/mse"], [64 * 0.25] * 2)  # only row 0 errs
    means = metrics.summarize({k: np.asarray(v) for k, v in sums.items()})
    np.testing.assert_allclose(means["model/mse"], [8.0, 8.0])
    np.testing.assert_allclose(means["copy_last/mse"], [0.0, 0.0])
    assert set(means) >= {f"{m}/{s}" for m in ("model", *metrics.BASELINES)
                          for s in metrics.SCORES} | {"truth/sharpness"}
