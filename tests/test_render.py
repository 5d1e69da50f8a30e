"""The procedural dataset renderers: digits, shapes and moving digits.

Small n throughout; the checks are on real numbers (ink fractions, centroids, a linear
classifier's accuracy, centre-of-mass trajectories), not just on shapes and dtypes.
"""

import numpy as np
import pytest

from realsys_cli.data.render_digits import make_digits, render_digits
from realsys_cli.data.render_moving import (
    bouncing_trajectories,
    make_moving_digits,
    render_moving_digits,
)
from realsys_cli.data.render_shapes import (
    SHAPE_NAMES,
    _mask,
    _shape_polygons,
    make_shapes,
    render_shapes,
)

# ---------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_determinism():
    x, y = make_digits(300, seed=0)
    assert x.shape == (300, 28, 28) and x.dtype == np.uint8
    assert y.shape == (300,) and y.dtype == np.int64
    assert set(y.tolist()) == set(range(10))  # every label 0..9 occurs, and nothing else
    x2, y2 = make_digits(300, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, y3 = make_digits(300, seed=1)
    assert not np.array_equal(y, y3)
    assert np.abs(x.astype(int) - x3).mean() > 10


def test_digits_look_like_mnist():
    labels = np.repeat(np.arange(10), 20)
    x = render_digits(labels, np.random.default_rng(3)).astype(np.float64)
    ink = (x > 128).mean(axis=(1, 2))  # per image: MNIST averages ~0.13
    assert ink.min() > 0.03 and ink.max() < 0.4
    assert 0.08 < ink.mean() < 0.25
    assert x.max(axis=(1, 2)).min() > 200  # every digit has saturated strokes
    border = np.concatenate(
        [x[:, :2].ravel(), x[:, -2:].ravel(), x[:, :, :2].ravel(), x[:, :, -2:].ravel()]
    )
    assert border.mean() < 8  # margins like MNIST
    # The ink centroid sits near the centre of the frame.
    grid = np.arange(28)
    mass = x.sum(axis=(1, 2))
    cy = (x.sum(2) * grid).sum(1) / mass
    cx = (x.sum(1) * grid).sum(1) / mass
    assert np.abs(cy - 13.5).max() < 4 and np.abs(cx - 13.5).max() < 4
    # Digits of the same class are all different from each other.
    for d in range(10):
        same = x[labels == d].reshape(20, -1)
        dist = np.abs(same[:, None] - same[None]).mean(-1)
        assert dist[~np.eye(20, dtype=bool)].min() > 5


def test_digits_are_learnable_but_not_linearly_trivial():
    x, y = make_digits(4000, seed=7)
    feats = np.c_[x.reshape(len(x), -1) / 255.0, np.ones(len(x))]
    tr, te = slice(0, 3000), slice(3000, 4000)
    a = feats[tr]
    w = np.linalg.solve(a.T @ a + 10.0 * np.eye(a.shape[1]), a.T @ np.eye(10)[y[tr]])
    acc = ((feats[te] @ w).argmax(1) == y[te]).mean()
    assert 0.5 < acc < 0.98, acc


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("size", [32, 64, 224])
def test_shapes_render_at_size(size):
    labels = np.repeat(np.arange(10), 3)
    x = render_shapes(labels, np.random.default_rng(0), size)
    assert x.shape == (30, size, size, 3) and x.dtype == np.uint8
    assert x.reshape(30, -1).std(1).min() > 5  # never a blank frame
    assert not np.array_equal(x[0], x[1])  # same class, different images


def test_shapes_dataset_determinism_and_classes():
    assert len(SHAPE_NAMES) == 10 and len(set(SHAPE_NAMES)) == 10
    x, y = make_shapes(200, seed=0, size=32)
    assert x.shape == (200, 32, 32, 3) and y.dtype == np.int64
    assert set(y.tolist()) == set(range(10))
    x2, y2 = make_shapes(200, seed=0, size=32)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = make_shapes(200, seed=1, size=32)
    assert not np.array_equal(x, x3)


def test_shape_masks_are_distinct_and_sized():
    big = 128
    labels = np.repeat(np.arange(10), 20)
    polys = _shape_polygons(labels, np.random.default_rng(0), big)
    masks = np.stack([_mask(p, big) for p in polys]).astype(np.float64) / 255  # (200, 64, 64)
    cover = masks.mean(axis=(1, 2)).reshape(10, 20)
    assert cover.min() > 0.02 and cover.max() < 0.45  # shape ~30-70 % of the frame across
    mean_cover = dict(zip(SHAPE_NAMES, cover.mean(1), strict=True))
    # Holes and cut-outs are really there: a ring / crescent covers much less than a circle.
    assert mean_cover["ring"] < 0.8 * mean_cover["circle"]
    assert mean_cover["crescent"] < 0.6 * mean_cover["circle"]
    # The ring's centre pixel is background, the circle's is ink.
    for label, ink in ((SHAPE_NAMES.index("ring"), 0), (SHAPE_NAMES.index("circle"), 1)):
        for i in np.flatnonzero(labels == label):
            verts = polys[i][0][0] / 2  # outer polygon in output pixels
            cx, cy = verts.mean(0).astype(int)
            assert round(masks[i, cy, cx]) == ink


# ---------------------------------------------------------------- moving digits


def test_moving_digits_shapes_and_determinism():
    v = make_moving_digits(6, seed=0)
    assert v.shape == (6, 20, 64, 64, 1) and v.dtype == np.uint8
    assert (v.reshape(6, 20, -1).max(-1) > 200).all()  # every frame shows ink
    np.testing.assert_array_equal(v, make_moving_digits(6, seed=0))
    assert not np.array_equal(v, make_moving_digits(6, seed=1))
    assert make_moving_digits(2, seed=0, num_frames=5, size=48).shape == (2, 5, 48, 48, 1)


def test_moving_digits_stay_in_frame_and_combine_by_max():
    block = np.full((1, 28, 28), 255, np.uint8)
    rng = np.random.default_rng(0)
    v = render_moving_digits(block, 20, rng, num_frames=40, num_digits=1)[..., 0] > 0
    # Every frame holds the whole block as one 28x28 square: nothing cut off or wrapped around.
    assert (v.sum(axis=(2, 3)) == 28 * 28).all()
    assert (v.any(3).sum(-1) == 28).all() and (v.any(2).sum(-1) == 28).all()
    # Two blocks: overlapping pixels stay 255 (max, not a wrapping uint8 sum).
    v2 = render_moving_digits(block, 20, np.random.default_rng(1), num_digits=2)
    assert set(np.unique(v2).tolist()) == {0, 255}
    area = (v2 > 0).reshape(20, 20, -1).sum(-1)
    assert area.min() >= 28 * 28 and area.max() <= 2 * 28 * 28
    assert area.min() < 2 * 28 * 28  # some frames really overlap
    # Real digits: each frame's ink is the pool digit's ink, frame after frame.
    pool, _ = make_digits(50, seed=0)
    r = render_moving_digits(pool, 10, np.random.default_rng(0), num_digits=1)
    totals = r.reshape(10, 20, -1).sum(-1, dtype=np.int64)
    assert (totals == totals[:, :1]).all() and np.isin(totals[:, 0], pool.sum((1, 2))).all()


def test_moving_digits_move_steadily_and_bounce():
    block = np.full((1, 28, 28), 255, np.uint8)  # centre of mass = top-left corner + 13.5
    n, frames = 20, 60
    v = render_moving_digits(block, n, np.random.default_rng(2), num_frames=frames, num_digits=1)[
        ..., 0
    ].astype(np.float64)
    grid = np.arange(64)
    mass = v.sum(axis=(2, 3))
    com = np.stack([(v.sum(2) * grid).sum(-1) / mass, (v.sum(3) * grid).sum(-1) / mass], -1)
    assert (com >= 13.5).all() and (com <= 64 - 14.5).all()
    step = np.linalg.norm(np.diff(com, axis=1), axis=-1)  # (n, frames - 1)
    assert step.max() < 6  # never jumps: at most 5 px/frame plus rounding
    assert np.median(step, axis=1).min() > 1.4  # keeps moving at >= 2 px/frame
    # 59 steps of >= 2 px cannot fit in the 36 px of room: every sequence turns back on some
    # axis, i.e. its centre of mass moves both ways along it.
    d = np.diff(com, axis=1)
    assert ((d > 0).any(1) & (d < 0).any(1)).any(-1).all()


def test_trajectories_reflect_at_the_walls():
    traj = bouncing_trajectories(200, 2, 40, 36.0, np.random.default_rng(0))
    assert traj.shape == (200, 2, 40, 2)
    assert traj.min() >= 0 and traj.max() <= 36
    step = np.linalg.norm(np.diff(traj, axis=2), axis=-1)  # (200, 2, 39)
    speed = step.max(-1, keepdims=True)
    assert speed.min() >= 1.9 and speed.max() <= 5.0 + 1e-9
    # Away from the walls a digit moves at exactly its constant speed.
    assert np.isclose(step, speed).mean() > 0.7
