"""Procedural coloured shapes: a 10-class, offline, generated RGB image classification task.

Each image holds one shape of its class (circle, square, ... arrow) at a random position, size
(~30-70 % of the frame), rotation, slight aspect change and fill colour, over a background made
of a random two-colour gradient, a little clutter (a few thin lines and small dots, too thin or
too small to look like any class) and mild pixel noise. Every shape is a list of polygons with
a coverage value (holes are polygons drawn back to 0), so all images of a class are transformed
at once in numpy; PIL fills the polygons at 2x resolution and box-downsamples them, which gives
anti-aliased edges. Works at any size from 28 to 256 pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# fmt: off
SHAPE_NAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross",
    "pentagon", "hexagon", "ring", "crescent", "arrow",
)
# fmt: on

_SUPER = 2  # supersampling factor
_CHUNK_PIXELS = 1 << 20  # pixels composited at once (keeps float32 work arrays cache-sized)


def _ngon(k: int, radius: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Regular k-gon vertices (k, 2) with one vertex pointing up."""
    a = -np.pi / 2 + 2 * np.pi * np.arange(k) / k
    return np.stack([np.cos(a), np.sin(a)], -1) * radius + np.asarray(offset)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return _ngon(2 * points) * radii[:, None]


# fmt: off
_CROSS = np.array([(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3),
                   (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)])
_ARROW = np.array([(-1, -0.2), (0.1, -0.2), (0.1, -0.6), (1, 0), (0.1, 0.6), (0.1, 0.2),
                   (-1, 0.2)])
# fmt: on

# Per class: polygons in a unit-circumradius frame, each with the coverage it is filled with
# (255 ink, 0 to cut a hole). Drawn in order.
_TEMPLATES: dict[str, tuple[tuple[np.ndarray, int], ...]] = {
    "circle": ((_ngon(96), 255),),
    "square": ((_ngon(4), 255),),
    "triangle": ((_ngon(3), 255),),
    "star": ((_star(), 255),),
    "cross": ((_CROSS / np.sqrt(1 + 0.3**2), 255),),
    "pentagon": ((_ngon(5), 255),),
    "hexagon": ((_ngon(6), 255),),
    "ring": ((_ngon(96), 255), (_ngon(96, 0.55), 0)),
    "crescent": ((_ngon(96), 255), (_ngon(96, 0.85, (0.0, -0.45)), 0)),
    "arrow": ((_ARROW, 255),),
}


def _contrasting_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Background and fill colours (n, 3) in 0-255 that differ clearly in colour and luminance."""
    lum = np.array([0.299, 0.587, 0.114])
    bg = rng.uniform(0, 255, (n, 3))
    fill = rng.uniform(0, 255, (n, 3))
    bad = np.ones(n, bool)
    while bad.any():  # resample only the low-contrast pairs; terminates almost surely
        fill[bad] = rng.uniform(0, 255, (bad.sum(), 3))
        bad = (np.linalg.norm(fill - bg, axis=1) < 120) | (np.abs((fill - bg) @ lum) < 40)
    return bg, fill


def _shape_polygons(labels: np.ndarray, rng: np.random.Generator, big: int) -> list[list]:
    """Per image, its [(vertices (k, 2) in supersampled pixels, coverage), ...] polygons."""
    n = len(labels)
    radius = rng.uniform(0.15, 0.35, n) * big  # circumradius: diameter 30-70 % of the frame
    centre = radius[:, None] + rng.uniform(0, 1, (n, 2)) * (big - 2 * radius[:, None])
    angle = rng.uniform(0, 2 * np.pi, n)
    aspect = rng.uniform(0.9, 1.1, n)
    out: list[list] = [[] for _ in range(n)]
    for c, name in enumerate(SHAPE_NAMES):
        idx = np.flatnonzero(labels == c)
        cos, sin = np.cos(angle[idx])[:, None], np.sin(angle[idx])[:, None]  # (m, 1)
        for verts, value in _TEMPLATES[name]:
            x = verts[:, 0] * aspect[idx, None]  # (m, k)
            y = verts[:, 1] / aspect[idx, None]
            xy = np.stack([x * cos - y * sin, x * sin + y * cos], -1)  # (m, k, 2) rotated
            xy = xy * radius[idx, None, None] + centre[idx, None, :]
            for i, poly in zip(idx, xy, strict=True):
                out[i].append((poly, value))
    return out


def _mask(polygons: list, big: int) -> np.ndarray:
    """Fill (vertices, coverage) polygons at big x big and box-downsample: (size, size) uint8."""
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    for verts, value in polygons:
        draw.polygon(verts.ravel().tolist(), fill=value)
    return np.asarray(img.reduce(_SUPER))


def _clutter_mask(rng: np.random.Generator, big: int) -> np.ndarray:
    """A few thin random lines and small dots at partial opacity: (size, size) uint8 alpha."""
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    thin = max(1, round(big / 128))  # ~1 px at 64 px output
    for _ in range(rng.integers(0, 4)):
        ends = rng.uniform(0, big, 4).tolist()
        draw.line(ends, fill=int(rng.integers(80, 200)), width=thin)
    for _ in range(rng.integers(0, 8)):
        x, y = rng.uniform(0, big, 2)
        r = rng.uniform(0.5, 1.5) * thin
        draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(80, 200)))
    return np.asarray(img.reduce(_SUPER))


def _background(rng: np.random.Generator, bg: np.ndarray, size: int) -> np.ndarray:
    """Linear two-colour gradients along random directions: (n, size, size, 3) float32."""
    n = len(bg)
    delta = rng.uniform(-45, 45, (n, 1, 1, 3)).astype(np.float32)  # colour change across frame
    a = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1)).astype(np.float32)
    g = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # (size,) pixel centres
    t = np.cos(a) * g[:, None] + np.sin(a) * g[:, None, None]  # (n, size, size, 1), |t| <= 0.71
    return np.clip(bg[:, None, None, :] + t * delta, 0, 255)


def _render_chunk(labels: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Background, then clutter, then the shape, alpha-blended: uint8 (n, size, size, 3)."""
    n, big = len(labels), size * _SUPER
    bg, fill = (c.astype(np.float32) for c in _contrasting_colours(rng, n))
    clutter_colour = rng.uniform(0, 255, (n, 1, 1, 3)).astype(np.float32)
    noise = rng.uniform(0, 6, (n, 1, 1, 1)).astype(np.float32)
    polygons = _shape_polygons(labels, rng, big)
    clutter = np.stack([_clutter_mask(rng, big) for _ in range(n)])  # (n, size, size)
    shape = np.stack([_mask(p, big) for p in polygons])
    img = _background(rng, bg, size)  # (n, size, size, 3)
    a = clutter[..., None].astype(np.float32) / 255
    img += a * (clutter_colour - img)
    a = shape[..., None].astype(np.float32) / 255
    img += a * (fill[:, None, None, :] - img)
    img += noise * rng.standard_normal((n, size, size, 1), dtype=np.float32)  # grey noise
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_shapes(labels: np.ndarray, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One shape per label (index into SHAPE_NAMES) -> uint8 (n, size, size, 3) RGB images."""
    labels = np.asarray(labels)
    out = np.empty((len(labels), size, size, 3), np.uint8)
    chunk = max(1, _CHUNK_PIXELS // size**2)
    for s in range(0, len(labels), chunk):
        out[s : s + chunk] = _render_chunk(labels[s : s + chunk], rng, size)
    return out


def make_shapes(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """n random shapes: (images uint8 (n, size, size, 3), labels int64 (n,)), set by the args."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPE_NAMES), n).astype(np.int64)
    return render_shapes(labels, rng, size), labels
