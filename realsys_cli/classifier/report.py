"""The classifier's pictures: learning curves and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realsys_cli.training.metrics import plot_curves


def save_curves(records: list[dict[str, Any]], out: Path) -> None:
    plot_curves(records, out, train_keys=("loss", "accuracy"),
                eval_keys=("eval_loss", "eval_accuracy"))


def save_confusion(confusion: np.ndarray, class_names: Sequence[str], out: Path) -> None:
    """Row-normalised confusion matrix (true class down, predicted across)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = min(2 + 0.45 * k, 14)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    accuracy = confusion.trace() / max(confusion.sum(), 1)
    ax.set_title(f"confusion ({int(confusion.sum())} images, accuracy {accuracy:.4f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
