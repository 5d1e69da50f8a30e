"""The classifier's augmentation: crops, flips, fancy-PCA colour noise, 10-crop evaluation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from realsys_cli.classifier.augment import (
    AugmentSpec,
    PixelStats,
    eval_views,
    train_augment,
)

IDENTITY = PixelStats(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), eigvals=(0.0, 0.0, 0.0),
                      eigvecs=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


def _images(b=6, r=10, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, r, r, c), dtype=np.uint8)


def test_pixel_stats_on_hand_made_pixels():
    # Two pixels per channel: R in {0, 255}, G constant 51, B in {0, 255} moving with R.
    images = np.array([[[[0, 51, 0], [255, 51, 255]]]], dtype=np.uint8)  # (1, 1, 2, 3)
    stats = PixelStats.from_images(images)
    np.testing.assert_allclose(stats.mean, [0.5, 0.2, 0.5], atol=1e-9)
    np.testing.assert_allclose(stats.std[0], 0.5, atol=1e-9)
    assert stats.std[1] == pytest.approx(1e-3)  # floored: a constant channel never divides by 0
    # R and B move together. np.cov (unbiased, 2 samples) gives var(R) = var(B) = cov(R, B)
    # = 0.5, so the covariance is [[.5, 0, .5], [0, 0, 0], [.5, 0, .5]]: its top principal
    # component is (1, 0, 1)/sqrt(2) with eigenvalue 0.5 + 0.5 = 1.0.
    top = np.argmax(stats.eigvals)
    assert stats.eigvals[top] == pytest.approx(1.0)
    vec = np.array(stats.eigvecs)[:, top]
    np.testing.assert_allclose(np.abs(vec), [2**-0.5, 0, 2**-0.5], atol=1e-9)


def test_random_crop_takes_a_window_of_the_image_per_image():
    images = _images(b=8, r=10)
    out = np.asarray(train_augment(images, jax.random.key(0), AugmentSpec(image_size=6), IDENTITY))
    assert out.shape == (8, 6, 6, 3)
    x = images.astype(np.float32) / 255
    offsets = []
    for i in range(8):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if np.allclose(out[i], x[i, dy:dy + 6, dx:dx + 6], atol=1e-6)]
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # each image draws its own crop


def test_flip_mirrors_some_images_and_leaves_the_others():
    images = _images(b=16, r=8)
    spec = AugmentSpec(image_size=8, flip=True)
    out = np.asarray(train_augment(images, jax.random.key(3), spec, IDENTITY))
    x = images.astype(np.float32) / 255
    mirrored = [np.allclose(out[i], x[i, :, ::-1]) for i in range(16)]
    kept = [np.allclose(out[i], x[i]) for i in range(16)]
    assert all(m != k for m, k in zip(mirrored, kept))
    assert 0 < sum(mirrored) < 16


def test_fancy_pca_adds_one_colour_shift_per_image_along_the_eigenvectors():
    images = _images(b=32, r=6)
    stats = PixelStats.from_images(images)
    stats = PixelStats((0.0,) * 3, (1.0,) * 3, stats.eigvals, stats.eigvecs)
    spec = AugmentSpec(image_size=6, pca_noise=0.1)
    out = np.asarray(train_augment(images, jax.random.key(1), spec, stats))
    shift = out - images.astype(np.float32) / 255  # (B, H, W, C)
    np.testing.assert_allclose(shift, shift[:, :1, :1, :].repeat(6, 1).repeat(6, 2), atol=1e-5)
    per_image = shift[:, 0, 0, :]  # (B, C) = sum_i alpha_i * lambda_i * p_i
    coeffs = per_image @ np.array(stats.eigvecs)  # alpha_i * lambda_i in the eigenbasis
    alphas = coeffs / np.array(stats.eigvals)
    assert 0.05 < alphas.std() < 0.2  # alpha ~ N(0, 0.1)


def test_ten_crop_views_are_corners_centre_and_mirrors():
    images = _images(b=2, r=10)
    views = np.asarray(eval_views(images, AugmentSpec(image_size=6), IDENTITY, ten_crop=True))
    assert views.shape == (10, 2, 6, 6, 3)
    x = images.astype(np.float32) / 255
    np.testing.assert_allclose(views[0], x[:, :6, :6])
    np.testing.assert_allclose(views[3], x[:, 4:, 4:])
    np.testing.assert_allclose(views[4], x[:, 2:8, 2:8])  # the centre
    np.testing.assert_allclose(views[5:], views[:5, :, :, ::-1])
    centre = np.asarray(eval_views(images, AugmentSpec(image_size=6), IDENTITY, ten_crop=False))
    np.testing.assert_allclose(centre[0], views[4])
