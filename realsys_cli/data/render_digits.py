"""Procedural handwritten-style digits: an offline, generated stand-in for MNIST.

Each digit 0-9 has 2-3 hand-designed stroke skeletons (style variants such as a 1 with or
without a base, a 7 with or without a bar). A skeleton is a list of strokes, each a Catmull-Rom
spline through a few waypoints; sampling the spline is linear in the waypoints, so it is a fixed
matrix per variant and all images of a variant are transformed at once in numpy. Per image the
waypoints are jittered, a smooth random displacement field (elastic distortion) bends the curve,
and slant, aspect, rotation, scale and position are drawn at random. The strokes are drawn with
a random pen width by PIL at 4x resolution, box-downsampled (anti-aliasing), softened a little
and given a little noise. As in MNIST the digit is fitted into a ~20 px box and its ink centroid
placed near the centre of the 28x28 frame (white ink on black).

The variability is tuned so that the task is a real learning problem: a linear classifier gets
well below 100 % while every digit stays readable.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

_SUPER = 4  # supersampling factor of the PIL rasteriser
_STEP = 0.03  # spline sampling step, in digit heights

# A stroke is (waypoints, closed); waypoints are (x, y) with y pointing down, the digit box
# about 0.6 wide and 1 high. Sharp corners are where one stroke ends and the next begins.
Stroke = tuple[tuple[tuple[float, float], ...], bool]


def _s(*pts: tuple[float, float], closed: bool = False) -> Stroke:
    return pts, closed


# fmt: off
_VARIANTS: dict[int, tuple[tuple[Stroke, ...], ...]] = {
    0: (
        (_s((0.3, 0), (0.05, 0.2), (0, 0.5), (0.08, 0.85), (0.3, 1), (0.52, 0.85), (0.6, 0.5),
            (0.55, 0.18), closed=True),),
        (_s((0.45, 0.06), (0.25, 0), (0.06, 0.25), (0.02, 0.6), (0.15, 0.92), (0.35, 1),
            (0.55, 0.8), (0.6, 0.45), (0.5, 0.1), (0.3, 0.02)),),
    ),
    1: (
        (_s((0.32, 0), (0.27, 1)),),
        (_s((0.16, 0.18), (0.33, 0)), _s((0.33, 0), (0.3, 1))),
        (_s((0.16, 0.17), (0.33, 0)), _s((0.33, 0), (0.31, 1)), _s((0.1, 1), (0.54, 1))),
    ),
    2: (
        (_s((0.03, 0.25), (0.2, 0.03), (0.42, 0.02), (0.57, 0.2), (0.5, 0.45), (0.25, 0.72),
            (0, 1)),
         _s((0, 1), (0.62, 0.98))),
        (_s((0.03, 0.22), (0.25, 0), (0.52, 0.1), (0.52, 0.38), (0.3, 0.66), (0.05, 0.95),
            (0.15, 1), (0.4, 0.93), (0.62, 0.98)),),
    ),
    3: (
        (_s((0.03, 0.12), (0.25, 0), (0.5, 0.08), (0.52, 0.3), (0.25, 0.46)),
         _s((0.25, 0.46), (0.5, 0.55), (0.6, 0.78), (0.4, 0.98), (0.15, 1), (0, 0.88))),
        (_s((0.03, 0), (0.55, 0)), _s((0.55, 0), (0.22, 0.4)),
         _s((0.22, 0.4), (0.5, 0.48), (0.6, 0.72), (0.42, 0.95), (0.15, 1), (0, 0.85))),
    ),
    4: (
        (_s((0.45, 0), (0, 0.65)), _s((0, 0.65), (0.62, 0.65)), _s((0.45, 0), (0.45, 1))),
        (_s((0.05, 0), (0.02, 0.58)), _s((0.02, 0.58), (0.62, 0.56)),
         _s((0.48, 0.1), (0.46, 1))),
    ),
    5: (
        (_s((0.58, 0), (0.12, 0.02)), _s((0.12, 0.02), (0.06, 0.45)),
         _s((0.06, 0.45), (0.3, 0.37), (0.55, 0.5), (0.58, 0.78), (0.38, 0.98), (0.15, 1),
            (0, 0.88))),
        (_s((0.14, 0.03), (0.6, -0.02)),
         _s((0.14, 0.03), (0.08, 0.42), (0.35, 0.4), (0.6, 0.6), (0.5, 0.9), (0.25, 1),
            (0.02, 0.92))),
    ),
    6: (
        (_s((0.5, 0), (0.22, 0.25), (0.06, 0.6), (0.12, 0.92), (0.33, 1), (0.55, 0.82),
            (0.5, 0.58), (0.28, 0.52), (0.08, 0.68)),),
        (_s((0.5, 0), (0.1, 0.72)),
         _s((0.1, 0.78), (0.32, 1), (0.54, 0.78), (0.32, 0.56), closed=True)),
    ),
    7: (
        (_s((0, 0.02), (0.6, 0)), _s((0.6, 0), (0.4, 0.45), (0.25, 1))),
        (_s((0, 0.02), (0.6, 0)), _s((0.6, 0), (0.4, 0.45), (0.25, 1)),
         _s((0.2, 0.5), (0.58, 0.48))),
        (_s((0, 0.15), (0.03, 0.02)), _s((0.03, 0.02), (0.6, 0.02)), _s((0.6, 0.02), (0.22, 1))),
    ),
    8: (
        (_s((0.52, 0.1), (0.3, 0), (0.08, 0.12), (0.12, 0.33), (0.3, 0.47), (0.52, 0.62),
            (0.58, 0.85), (0.32, 1), (0.05, 0.88), (0.08, 0.65), (0.3, 0.47), (0.5, 0.32),
            (0.55, 0.15), (0.45, 0.05)),),
        (_s((0.3, 0), (0.1, 0.24), (0.3, 0.48), (0.5, 0.24), closed=True),
         _s((0.3, 0.48), (0.03, 0.74), (0.3, 1), (0.57, 0.74), closed=True)),
    ),
    9: (
        (_s((0.55, 0.22), (0.3, 0), (0.05, 0.18), (0.12, 0.42), (0.35, 0.45), (0.55, 0.3),
            closed=True),
         _s((0.56, 0.2), (0.5, 1))),
        (_s((0.55, 0.22), (0.3, 0), (0.05, 0.18), (0.12, 0.42), (0.35, 0.45), (0.55, 0.3),
            closed=True),
         _s((0.56, 0.2), (0.57, 0.55), (0.45, 0.85), (0.2, 1))),
    ),
}
# fmt: on


def _catmull_rom_matrix(pts: np.ndarray, closed: bool) -> np.ndarray:
    """(m, w) weights mapping a stroke's w waypoints to m samples along its spline."""
    w = len(pts)
    eye = np.eye(w)
    if closed:  # neighbour rows of waypoint i, wrapping around
        rows = [eye[i % w] for i in range(-1, w + 2)]
    else:  # phantom end points reflected through the first / last waypoint
        rows = [2 * eye[0] - eye[1], *eye, 2 * eye[-1] - eye[-2]]
    n_seg = w if closed else w - 1
    blocks = []
    for i in range(n_seg):
        p0, p1, p2, p3 = rows[i : i + 4]
        seg_len = np.linalg.norm((p2 - p1) @ pts)
        n = max(2, int(np.ceil(seg_len / _STEP)))
        last = i == n_seg - 1
        t = np.linspace(0, 1, n + 1 if last else n, endpoint=last)[:, None]  # (n, 1)
        blocks.append(
            0.5
            * (
                (-(t**3) + 2 * t**2 - t) * p0
                + (3 * t**3 - 5 * t**2 + 2) * p1
                + (-3 * t**3 + 4 * t**2 + t) * p2
                + (t**3 - t**2) * p3
            )
        )
    return np.concatenate(blocks)


def _compile(strokes: tuple[Stroke, ...]) -> tuple[np.ndarray, np.ndarray, list[slice]]:
    """One variant -> waypoints (w, 2), sampling matrix (p, w), and each stroke's sample slice."""
    waypoints = np.concatenate([np.asarray(s[0], float) for s in strokes])
    mats, slices, w0, p0 = [], [], 0, 0
    for pts, closed in strokes:
        m = _catmull_rom_matrix(np.asarray(pts, float), closed)
        full = np.zeros((len(m), len(waypoints)))
        full[:, w0 : w0 + len(pts)] = m
        mats.append(full)
        slices.append(slice(p0, p0 + len(m)))
        w0, p0 = w0 + len(pts), p0 + len(m)
    return waypoints, np.concatenate(mats), slices


_COMPILED = {d: [_compile(v) for v in variants] for d, variants in _VARIANTS.items()}


def _distort(
    base: np.ndarray, mat: np.ndarray, rng: np.random.Generator, m: int, size: int
) -> np.ndarray:
    """m random handwritten instances of one variant: (m, p, 2) sample points in pixels."""
    way = base + rng.normal(0, 0.03, (m, *base.shape))  # (m, w, 2) jittered waypoints
    pts = np.einsum("pw,mwc->mpc", mat, way)  # (m, p, 2) points on the splines
    # Elastic distortion: a sum of 3 smooth random waves, wavelength ~0.5-1 digit heights.
    freq = rng.uniform(6, 12, (m, 3, 1)) * _unit(rng.uniform(0, 2 * np.pi, (m, 3)))  # (m,3,2)
    amp = rng.normal(0, 0.03, (m, 3, 1)) * _unit(rng.uniform(0, 2 * np.pi, (m, 3)))  # (m,3,2)
    phase = rng.uniform(0, 2 * np.pi, (m, 3, 1))
    waves = np.sin(np.einsum("mpc,mkc->mkp", pts, freq) + phase)  # (m, 3, p)
    pts = pts + np.einsum("mkp,mkc->mpc", waves, amp)
    # Slant (top leans right, mostly), aspect, rotation about the middle.
    slant = rng.uniform(-0.2, 0.45, (m, 1))
    x = (pts[..., 0] - 0.3 + slant * (0.5 - pts[..., 1])) * rng.uniform(0.75, 1.25, (m, 1))
    y = pts[..., 1] - 0.5
    ang = np.clip(rng.normal(0, 0.16, (m, 1)), -0.35, 0.35)
    x, y = x * np.cos(ang) - y * np.sin(ang), x * np.sin(ang) + y * np.cos(ang)
    pts = np.stack([x, y], -1)
    # MNIST-style normalisation: largest side fitted to a ~20 px box, ink centroid near centre.
    lo, hi = pts.min(1, keepdims=True), pts.max(1, keepdims=True)  # (m, 1, 2)
    box = rng.uniform(0.58, 0.74, (m, 1, 1)) * size
    pts = pts * box / (hi - lo).max(-1, keepdims=True)
    pts = pts - pts.mean(1, keepdims=True) + size / 2 + rng.normal(0, 0.045 * size, (m, 1, 2))
    # Pull back inside the frame if the jitter pushed the ink too close to an edge.
    lo, hi = pts.min(1, keepdims=True), pts.max(1, keepdims=True)
    margin = 0.08 * size
    pts = pts + np.maximum(margin - lo, 0) - np.maximum(hi - (size - margin), 0)
    return pts


def _unit(angle: np.ndarray) -> np.ndarray:
    """Angles (...) -> unit vectors (..., 2)."""
    return np.stack([np.cos(angle), np.sin(angle)], -1)


def _draw(pts: np.ndarray, slices: list[slice], width: float, size: int) -> np.ndarray:
    """Rasterise one digit's strokes at _SUPER x resolution and box-downsample them.

    Returns (size, size) uint8 ink coverage, anti-aliased by the supersampling.
    """
    big = size * _SUPER
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    pen = max(1, round(width * _SUPER))
    r = pen / 2
    for sl in slices:
        xy = [tuple(p) for p in (pts[sl] * _SUPER).tolist()]
        draw.line(xy, fill=255, width=pen)
        for x, y in (xy[0], xy[-1]):  # round pen caps
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img.reduce(_SUPER))


def render_digits(labels: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """Render handwritten-style digits: labels (n,) in 0-9 -> uint8 (n, size, size), white ink."""
    labels = np.asarray(labels)
    n = len(labels)
    cover = np.zeros((n, size, size), np.uint8)
    widths = rng.uniform(0.06, 0.12, n) * size  # pen width in output pixels
    # Vectorised per (digit, variant) group; each image picks its style variant at random.
    variant = rng.integers(0, 6, n)  # 6: divisible by every variant count (2 or 3)
    for d in range(10):
        idx_d = np.flatnonzero(labels == d)
        v_of = variant[idx_d] % len(_COMPILED[d])
        for v, (base, mat, slices) in enumerate(_COMPILED[d]):
            idx = idx_d[v_of == v]
            if len(idx) == 0:
                continue
            pts = _distort(base, mat, rng, len(idx), size)
            for i, p in zip(idx, pts, strict=True):
                cover[i] = _draw(p, slices, widths[i], size)
    img = gaussian_filter(cover.astype(np.float32) / 255, (0, 0.45, 0.45))
    ink = rng.uniform(0.85, 1.0, (n, 1, 1)) * 255 * 1.15  # pen pressure; saturate the core
    img = img * ink + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random digits: (images uint8 (n, 28, 28), labels int64 (n,)), determined by (n, seed)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int64)
    return render_digits(labels, rng, 28), labels
