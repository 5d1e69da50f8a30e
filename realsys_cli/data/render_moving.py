"""Moving digits: the Moving MNIST protocol (Srivastava et al. 2015) over generated digits.

Each sequence takes `num_digits` random 28x28 digits from a pool, starts each at a random place
inside the frame and moves it in a random direction at a constant speed of 2-5 px per frame.
When a digit's patch would leave the frame, the velocity component along that axis is
reflected (it bounces off the wall). The digits are combined by pixelwise max. Trajectories are
computed for all sequences at once, and patches are pasted with flat fancy indexing per chunk.
"""

from __future__ import annotations

import numpy as np

from realsys_cli.data.render_digits import make_digits

_CHUNK = 256  # sequences pasted at once (bounds the index arrays' memory)


def bouncing_trajectories(
    n: int, num_digits: int, num_frames: int, limit: float, rng: np.random.Generator
) -> np.ndarray:
    """Top-left corners (n, num_digits, num_frames, 2) as (x, y) floats in [0, limit]."""
    pos = rng.uniform(0, limit, (n, num_digits, 2))
    angle = rng.uniform(0, 2 * np.pi, (n, num_digits))
    speed = rng.uniform(2, 5, (n, num_digits, 1))  # px per frame, less than the room to move
    vel = speed * np.stack([np.cos(angle), np.sin(angle)], -1)  # (n, num_digits, 2)
    out = np.empty((n, num_digits, num_frames, 2))
    for t in range(num_frames):
        out[:, :, t] = pos
        pos = pos + vel
        low, high = pos < 0, pos > limit  # reflect position and velocity at the walls
        pos = np.where(low, -pos, np.where(high, 2 * limit - pos, pos))
        vel = np.where(low | high, -vel, vel)
    return out


def render_moving_digits(
    digits: np.ndarray,
    n: int,
    rng: np.random.Generator,
    num_frames: int = 20,
    size: int = 64,
    num_digits: int = 2,
) -> np.ndarray:
    """n sequences of bouncing digits from a pool (m, p, p) -> uint8 (n, T, size, size, 1)."""
    p = digits.shape[1]
    pick = rng.integers(0, len(digits), (n, num_digits))
    corners = np.rint(bouncing_trajectories(n, num_digits, num_frames, size - p, rng))
    corners = corners.astype(np.int64)
    # Flat offsets of a patch's pixels inside one (size, size) frame: (p*p,).
    offsets = (np.arange(p)[:, None] * size + np.arange(p)[None, :]).ravel()
    out = np.zeros((n, num_frames, size, size, 1), np.uint8)
    for s in range(0, n, _CHUNK):
        c = min(_CHUNK, n - s)
        canvas = np.zeros(c * num_frames * size * size, np.uint8)  # (c, T, size, size) flat
        frame0 = np.arange(c * num_frames).reshape(c, num_frames) * size * size  # (c, T)
        for j in range(num_digits):
            xy = corners[s : s + c, j]  # (c, T, 2)
            base = frame0 + xy[..., 1] * size + xy[..., 0]  # (c, T) flat top-left corner
            flat = base[..., None] + offsets  # (c, T, p*p)
            patch = digits[pick[s : s + c, j]].reshape(c, 1, p * p)
            canvas[flat] = np.maximum(canvas[flat], patch)
        out[s : s + c] = canvas.reshape(c, num_frames, size, size, 1)
    return out


def make_moving_digits(n: int, seed: int, num_frames: int = 20, size: int = 64) -> np.ndarray:
    """n two-digit sequences uint8 (n, num_frames, size, size, 1), determined by the args.

    The digit pool (2 per sequence, 1,000 to 20,000 digits) comes from make_digits with a seed
    drawn from `seed`, so it is fixed by `seed` too.
    """
    rng = np.random.default_rng(seed)
    pool, _ = make_digits(int(np.clip(2 * n, 1000, 20000)), int(rng.integers(1 << 31)))
    return render_moving_digits(pool, n, rng, num_frames, size)
