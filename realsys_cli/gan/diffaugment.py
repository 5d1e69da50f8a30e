"""DiffAugment: the same random, differentiable augmentations on every image D sees, real and
generated, in D's step and in G's (Zhao, Liu, Lin, Zhu, Han 2020, "Differentiable Augmentation
for Data-Efficient GAN Training"; the authors' code: mit-han-lab/data-efficient-gans,
DiffAugment_pytorch.py). Written here in jnp for the jitted step; G's gradient flows through it.

Images are (B, H, W, C) floats in [-1, 1]. Each transform draws its own parameters for every
image from the key it is given:

  color        brightness   x + b,                    b ~ U(-0.5, 0.5)
               saturation   m + (x - m) s,            s ~ U(0, 2), m the pixel's mean over
                                                      channels (nothing changes with 1 channel)
               contrast     m + (x - m) c,            c ~ U(0.5, 1.5), m the image's mean over
                                                      pixels and channels
  translation  the image shifted by (dy, dx) pixels, each an integer uniform in
               [-S // 8, S // 8] (S the side), zeros shifted in
  cutout       a square of side S // 2 set to zero, centred at (cy, cx), each uniform in
               [0, S] (in [0, S - 1] when S // 2 is odd), clipped at the borders

The authors feed D images in [-1, 1] too (their BigGAN and StyleGAN2 code), so their constants
are used as they are: brightness moves an image by up to a quarter of the range, saturation and
contrast scale around a mean (the offset of the range does not matter), and the zeros that
translation and cutout put in are mid-grey.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def _per_image(key: jax.Array, x: jax.Array, low: float, high: float) -> jax.Array:
    """U(low, high) per image, shaped (B, 1, 1, 1) to broadcast over (B, H, W, C)."""
    return jax.random.uniform(key, (x.shape[0], 1, 1, 1), x.dtype, low, high)


def color(key: jax.Array, x: jax.Array) -> jax.Array:
    """Brightness, then saturation, then contrast, each with its own draw per image."""
    k_bright, k_sat, k_contrast = jax.random.split(key, 3)
    x = x + _per_image(k_bright, x, -0.5, 0.5)
    grey = jnp.mean(x, axis=3, keepdims=True)  # (B, H, W, 1)
    x = grey + (x - grey) * _per_image(k_sat, x, 0.0, 2.0)
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)  # (B, 1, 1, 1)
    return mean + (x - mean) * _per_image(k_contrast, x, 0.5, 1.5)


def shift_matrices(shifts: jax.Array, side: int, dtype) -> jax.Array:
    """(B,) integer shifts -> (B, side, side) 0/1 matrices P with P[b, i, j] = 1 iff
    j = i - shifts[b]: P @ rows moves the rows down by the shift, zeros entering. A matrix
    product (not a gather) keeps the gradient with respect to the image a matrix product too."""
    i = jnp.arange(side)[None, :, None]
    j = jnp.arange(side)[None, None, :]
    return (j == i - shifts[:, None, None]).astype(dtype)


def translate(x: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
    """Each image b of x (B, H, W, C) moved down by dy[b] and right by dx[b] pixels (negative:
    up, left), zeros shifted in."""
    rows = shift_matrices(dy, x.shape[1], x.dtype)  # (B, H, H)
    cols = shift_matrices(dx, x.shape[2], x.dtype)  # (B, W, W)
    x = jnp.einsum("bij,bjwc->biwc", rows, x)
    return jnp.einsum("bkl,bilc->bikc", cols, x)


def translation(key: jax.Array, x: jax.Array) -> jax.Array:
    """Shifts of up to an eighth of the side in each direction, per image."""
    k_y, k_x = jax.random.split(key)
    b, h, w, _ = x.shape
    dy = jax.random.randint(k_y, (b,), -(h // 8), h // 8 + 1)
    dx = jax.random.randint(k_x, (b,), -(w // 8), w // 8 + 1)
    return translate(x, dy, dx)


def cutout_mask(cy: jax.Array, cx: jax.Array, height: int, width: int,
                dtype=jnp.float32) -> jax.Array:
    """(B, H, W, 1): 0 inside the square of side H // 2 (rows) x W // 2 (columns) whose rows
    start at cy - (H // 2) // 2 (and columns likewise), 1 elsewhere, clipped at the borders."""
    size_y, size_x = height // 2, width // 2
    top, left = cy - size_y // 2, cx - size_x // 2  # (B,)
    rows = jnp.arange(height)[None, :]
    cols = jnp.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_y)  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_x)  # (B, W)
    inside = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return (~inside).astype(dtype)[..., None]


def cutout(key: jax.Array, x: jax.Array) -> jax.Array:
    """A zero square of half the side at a random centre, per image."""
    k_y, k_x = jax.random.split(key)
    b, h, w, _ = x.shape
    cy = jax.random.randint(k_y, (b,), 0, h + 1 - (h // 2) % 2)
    cx = jax.random.randint(k_x, (b,), 0, w + 1 - (w // 2) % 2)
    return x * cutout_mask(cy, cx, h, w, x.dtype)


# The policy's names (gan/config.py's DIFFAUGMENT_TRANSFORMS) -> (key, images) -> images.
TRANSFORMS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def augment(key: jax.Array, x: jax.Array, policy: Sequence[str]) -> jax.Array:
    """x (B, H, W, C) through the policy's transforms in order, each with a key of its own
    from `key`; the same x, untouched, for an empty policy."""
    for i, name in enumerate(policy):
        x = TRANSFORMS[name](jax.random.fold_in(key, i), x)
    return x
