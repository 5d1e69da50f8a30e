"""The GAN's pictures: losses.png (losses, D's outputs, FID per epoch) and sample grids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from realsys_cli.pictures import save_grid


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["epoch"], r[key]) for r in records
              if key in r and isinstance(r[key], (int, float))]
    return ([p[0] for p in points], [p[1] for p in points]) if points else ([], [])


def save_losses(records: list[dict[str, Any]], out: Path, *, fid_floor: float | None = None,
                fid_untrained: float | None = None) -> None:
    """Three panels against epoch: D and G loss; mean D(x) and D(G(z)); FID (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for key, label in (("d_loss", "D loss"), ("g_loss", "G loss (non-saturating)")):
        axes[0].plot(*_series(records, key), label=label)
    axes[0].set_title("losses")
    for key, label in (("d_real", "D(x), real"), ("d_fake", "D(G(z)), fake")):
        axes[1].plot(*_series(records, key), label=label)
    axes[1].set_ylim(0, 1)
    axes[1].set_title("discriminator outputs")
    xs, ys = _series(records, "eval_fid")
    if xs:
        axes[2].plot(xs, ys, "o-", label="FID (samples vs real)")
        axes[2].set_yscale("log")
    for value, label, style in ((fid_untrained, "untrained G", ":"),
                                (fid_floor, "real vs real floor", "--")):
        if value is not None and value > 0:
            axes[2].axhline(value, linestyle=style, color="grey", label=f"{label} {value:.3g}")
    axes[2].set_title("FID on the judge's features")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def save_samples(path: Path, images: np.ndarray, *, columns: int | None = None) -> None:
    """A grid of uint8 samples (N, S, S, C), upscaled so that 28 px digits stay readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_grid(path, images, columns=columns, min_side=56)
