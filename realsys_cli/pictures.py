"""Pictures people look at: labelled image grids (PNG) and movie strips (GIF).

Shared by `datasets preview`, the fooling contact sheets, GAN sample grids and frame-prediction
movies. Inputs are uint8 numpy arrays; small images are upscaled with nearest-neighbour so that
a 28x28 digit is still visible, never smoothed into something it is not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_LABEL_HEIGHT = 14
_PAD = 2


def to_uint8(x: Any, low: float = 0.0, high: float = 1.0) -> Any:
    """Float pixels in [low, high] -> uint8 [0, 255]: scaled, rounded half to even, clipped.

    [0, 1] (the default) for sigmoid outputs and attack images, low=-1.0 for tanh outputs (G's).
    Numpy in, numpy out; a jax array in (inside jit too), a jax array out. Anything else (a
    list) is read as a numpy array."""
    x = x if hasattr(x, "astype") else np.asarray(x)
    return ((x - low) * (255.0 / (high - low))).round().clip(0, 255).astype(np.uint8)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 1|3) uint8 -> (..., H, W, 3) uint8."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def upscale(images: np.ndarray, min_side: int = 64) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor until the side is >= min_side."""
    factor = max(1, math.ceil(min_side / images.shape[-2]))
    return images.repeat(factor, axis=-3).repeat(factor, axis=-2) if factor > 1 else images


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default(size=11)


def grid(
    images: np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    columns: int | None = None,
    min_side: int = 64,
) -> Image.Image:
    """A grid of (N, H, W, C) uint8 images, each with an optional caption underneath."""
    images = upscale(to_rgb(np.asarray(images)), min_side)
    n, h, w, _ = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    label_h = _LABEL_HEIGHT if labels else 0
    cell_w, cell_h = w + _PAD, h + label_h + _PAD
    sheet = Image.new("RGB", (columns * cell_w + _PAD, rows * cell_h + _PAD), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font()
    for i in range(n):
        x, y = _PAD + (i % columns) * cell_w, _PAD + (i // columns) * cell_h
        sheet.paste(Image.fromarray(images[i]), (x, y))
        if labels:
            text = _fit(draw, labels[i], font, w)
            draw.text((x + 1, y + h + 1), text, fill=(0, 0, 0), font=font)
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text


def save_grid(path: str | os.PathLike, images: np.ndarray, labels: Sequence[str] | None = None,
              **kwargs) -> None:
    grid(images, labels, **kwargs).save(path)


def save_gif(path: str | os.PathLike, frames: Sequence[Image.Image], *, fps: float = 4) -> None:
    """An endlessly looping GIF of PIL frames."""
    first, *rest = frames
    first.save(path, save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)


def clips_gif(path: str | os.PathLike, clips: np.ndarray, labels: Sequence[str] | None = None,
              *, fps: float = 4, min_side: int = 96) -> None:
    """(N, T, H, W, C) uint8 clips played side by side, one grid per time step."""
    clips = np.asarray(clips)
    frames = [grid(clips[:, t], labels, columns=len(clips), min_side=min_side)
              for t in range(clips.shape[1])]
    save_gif(path, frames, fps=fps)
