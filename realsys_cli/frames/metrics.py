"""Per-horizon scores of predicted frames, in the conventions the Moving MNIST papers report.

OpenSTL's convention (Tan et al. 2023), for frames in [0, 1]:
  mse   "MSE per frame": the squared error SUMMED over the H x W x C pixels of a frame, averaged
        over frames and sequences (a 64x64 frame off by 0.1 everywhere scores 40.96, not 0.01);
  mae   the same with absolute errors;
  ssim  Wang et al.'s SSIM with an 11x11 Gaussian window, sigma 1.5 (dm-pix's formula; its
        blur as two banded matrix products, `gaussian_blur`), per frame;
  psnr  10 log10(1 / mean squared error) per frame, in dB (capped at 100 dB for exact frames).
Every score is kept per horizon t = 1..T, so curves show how predictions degrade.

The baselines go through the same code: copy-last-frame (every future frame = the last observed
one) and mean-frame (every future frame = the mean of the observed ones). `sharpness` is the
mean gradient magnitude of a frame (mean of |dI/dx| + |dI/dy| over pixels), what MSE training
blurs away and the adversarial + gradient-difference losses of Mathieu et al. 2015 restore.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

SCORES = ("mse", "mae", "ssim", "psnr", "sharpness")
BASELINES = ("copy_last", "mean_frame")
PSNR_CAP_DB = 100.0
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def gaussian_band(n: int, size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """(n - size + 1, n) float32: row i holds dm-pix's normalised 1-D Gaussian at columns
    i..i+size-1, so `band @ z` is its 'valid' blur of z's first axis."""
    taps = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
    taps /= taps.sum()
    band = np.zeros((n - size + 1, n), np.float32)
    for i in range(n - size + 1):
        band[i, i : i + size] = taps[::-1]  # convolution's flip (the Gaussian is symmetric)
    return band


def gaussian_blur(z: jax.Array) -> jax.Array:
    """SSIM's separable 'valid' Gaussian blur, (N, H, W, C) -> (N, H-10, W-10, C).

    The same numbers as dm-pix's own blur (a vmapped jnp.convolve per row and column) to float
    rounding, as two matrix products: 10x faster on XLA:CPU, where the per-horizon evaluation
    spent most of its time in that blur (docs/frames.md, "SSIM's blur as matrix products").
    """
    by = jnp.asarray(gaussian_band(z.shape[-3]))  # (H', H)
    bx = jnp.asarray(gaussian_band(z.shape[-2]))  # (W', W)
    return jnp.einsum("yh,nhwc,xw->nyxc", by, z, bx, precision=jax.lax.Precision.HIGHEST)


def copy_last(observed: jax.Array, horizon: int) -> jax.Array:
    """(B, T, H, W, C) -> (B, horizon, H, W, C): the last observed frame, repeated."""
    return jnp.repeat(observed[:, -1:], horizon, axis=1)


def mean_frame(observed: jax.Array, horizon: int) -> jax.Array:
    """(B, T, H, W, C) -> (B, horizon, H, W, C): the mean of the observed frames, repeated."""
    return jnp.repeat(observed.mean(axis=1, keepdims=True), horizon, axis=1)


def sharpness(frames: jax.Array) -> jax.Array:
    """Mean gradient magnitude per frame: (..., H, W, C) -> (...)."""
    dy = jnp.abs(jnp.diff(frames, axis=-3))  # (..., H-1, W, C)
    dx = jnp.abs(jnp.diff(frames, axis=-2))  # (..., H, W-1, C)
    return dy.mean(axis=(-3, -2, -1)) + dx.mean(axis=(-3, -2, -1))


def frame_scores(pred: jax.Array, truth: jax.Array) -> dict[str, jax.Array]:
    """Scores of every frame: pred, truth (B, T, H, W, C) in [0, 1] -> {name: (B, T)}."""
    pred = pred.astype(jnp.float32)
    truth = truth.astype(jnp.float32)
    b, t, h, w, c = pred.shape
    diff = pred - truth
    squared = jnp.square(diff).sum(axis=(-3, -2, -1))  # (B, T) summed over pixels
    mean_squared = squared / (h * w * c)
    # Frames narrower than the window (tests' 8x8 clips) keep dm-pix's own blur, whose
    # 'valid' convolution then swaps signal and filter; the band has no rows for them.
    blur = gaussian_blur if min(h, w) >= SSIM_WINDOW else None
    ssim = dm_pix.ssim(pred.reshape(b * t, h, w, c), truth.reshape(b * t, h, w, c), max_val=1.0,
                       filter_size=SSIM_WINDOW, filter_sigma=SSIM_SIGMA,
                       filter_fn=blur).reshape(b, t)
    psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(mean_squared, 10.0 ** (-PSNR_CAP_DB / 10)))
    return {
        "mse": squared,
        "mae": jnp.abs(diff).sum(axis=(-3, -2, -1)),
        "ssim": ssim,
        "psnr": psnr,
        "sharpness": sharpness(pred),
    }


def masked_sums(observed: jax.Array, truth: jax.Array, pred: jax.Array,
                mask: jax.Array) -> dict[str, jax.Array]:
    """Per-horizon sums over the real (mask) sequences of a padded batch, for the model, the
    baselines and the truth's own sharpness: {"model/mse": (T,), ..., "count": ()}."""
    horizon = truth.shape[1]
    weights = mask.astype(jnp.float32)[:, None]  # (B, 1)
    out: dict[str, jax.Array] = {"count": mask.astype(jnp.float32).sum()}
    candidates = {"model": pred, "copy_last": copy_last(observed, horizon),
                  "mean_frame": mean_frame(observed, horizon)}
    for name, frames in candidates.items():
        for score, values in frame_scores(frames, truth).items():
            out[f"{name}/{score}"] = (values * weights).sum(axis=0)  # (T,)
    out["truth/sharpness"] = (sharpness(truth) * weights).sum(axis=0)
    return out


def summarize(sums: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Sums from `masked_sums` (added over batches) -> per-horizon means {"model/mse": [T]}."""
    count = max(float(sums["count"]), 1.0)
    return {k: (np.asarray(v, np.float64) / count).tolist() for k, v in sums.items()
            if k != "count"}
