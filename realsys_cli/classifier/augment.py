"""Input statistics and augmentation, on the device inside the jitted step.

Training: random crop (after optional zero padding) + horizontal flip + AlexNet's fancy-PCA
colour noise, then mean/std normalisation. Evaluation: the centre crop, or 10 crops (4 corners +
centre, and their mirror images) as in the paper. Images arrive as uint8 (B, R, R, C) at the
loader's `resize_size` R and leave as float32 (B, S, S, C) at the model's `image_size` S.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class PixelStats:
    """Per-channel mean/std and the RGB PCA (AlexNet section 4.1) of pixels in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    eigvals: tuple[float, ...]
    eigvecs: tuple[tuple[float, ...], ...]  # columns are eigenvectors, (C, C)

    @classmethod
    def from_images(cls, images: np.ndarray) -> PixelStats:
        pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0  # (P, C)
        mean, std = pixels.mean(0), np.maximum(pixels.std(0), 1e-3)
        cov = np.atleast_2d(np.cov(pixels, rowvar=False))
        eigvals, eigvecs = np.linalg.eigh(cov)
        return cls(tuple(mean), tuple(std), tuple(np.maximum(eigvals, 0.0)),
                   tuple(map(tuple, eigvecs)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PixelStats:
        return cls(tuple(d["mean"]), tuple(d["std"]), tuple(d["eigvals"]),
                   tuple(tuple(r) for r in d["eigvecs"]))


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    image_size: int
    crop_padding: int = 0
    flip: bool = False
    pca_noise: float = 0.0


def normalize(x: jax.Array, stats: PixelStats) -> jax.Array:
    return (x - jnp.asarray(stats.mean, x.dtype)) / jnp.asarray(stats.std, x.dtype)


def train_augment(images: jax.Array, key: jax.Array, spec: AugmentSpec,
                  stats: PixelStats) -> jax.Array:
    """uint8 (B, R, R, C) -> float32 (B, S, S, C), a different draw for every image."""
    k_crop, k_flip, k_pca = jax.random.split(key, 3)
    x = images.astype(jnp.float32) / 255.0
    if spec.crop_padding:
        p = spec.crop_padding
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    b, r, _, c = x.shape
    s = spec.image_size
    if r > s:
        offsets = jax.random.randint(k_crop, (b, 2), 0, r - s + 1)
        x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (s, s, c)))(
            x, offsets)
    if spec.flip:
        mirror = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
        x = jnp.where(mirror, x[:, :, ::-1, :], x)
    if spec.pca_noise > 0:
        # [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T with a_i ~ N(0, sigma), once per image.
        alpha = jax.random.normal(k_pca, (b, c)) * spec.pca_noise
        vecs, vals = jnp.asarray(stats.eigvecs), jnp.asarray(stats.eigvals)
        shift = (alpha * vals) @ vecs.T  # (B, C)
        x = x + shift[:, None, None, :]
    return normalize(x, stats)


def center_crop(images: jax.Array, size: int) -> jax.Array:
    r = images.shape[1]
    o = (r - size) // 2
    return images[:, o : o + size, o : o + size, :]


def eval_views(images: jax.Array, spec: AugmentSpec, stats: PixelStats,
               ten_crop: bool) -> jax.Array:
    """uint8 (B, R, R, C) -> float32 (V, B, S, S, C): V = 1 (centre) or 10 views."""
    x = images.astype(jnp.float32) / 255.0
    s, r = spec.image_size, images.shape[1]
    if not ten_crop or r == s:
        return normalize(center_crop(x, s), stats)[None]
    corners = [x[:, :s, :s], x[:, :s, r - s :], x[:, r - s :, :s], x[:, r - s :, r - s :],
               center_crop(x, s)]
    views = corners + [v[:, :, ::-1] for v in corners]
    return normalize(jnp.stack(views), stats)
