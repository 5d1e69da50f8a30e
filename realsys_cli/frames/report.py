"""The frame predictor's pictures: per-horizon curves, a predictions strip, learning curves.

  horizon.png      MSE per frame, MAE, SSIM and PSNR against the horizon t = 1..T, for the model
                   and the copy-last-frame and mean-frame baselines (OpenSTL's conventions)
  predictions.png  for a few test clips, three rows each: the observed frames, the true future,
                   the predicted future
  curves.png       training loss and MSE per frame, and the evaluation MSE
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from realsys_cli import pictures
from realsys_cli.data.dataset import Dataset
from realsys_cli.frames.config import FramesConfig
from realsys_cli.frames.steps import FramesSteps
from realsys_cli.training.distributed import to_host
from realsys_cli.training.metrics import plot_curves

PANELS = (("mse", "MSE per frame (sum over pixels)"), ("mae", "MAE per frame (sum over pixels)"),
          ("ssim", "SSIM (11x11 Gaussian, sigma 1.5)"), ("psnr", "PSNR (dB)"))
STYLES = {"model": ("the model", "C0", "o-"), "copy_last": ("copy last frame", "C3", "s--"),
          "mean_frame": ("mean of observed frames", "C2", "^:")}


def save_horizon(out: str | Path, scores: dict[str, Any], *, title: str = "",
                 others: dict[str, dict[str, Any]] | None = None,
                 model_label: str = "ConvLSTM") -> None:
    """Four panels against the horizon; `others` adds more models ({label: scores}) as lines;
    `model_label` names the model's line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.6))
    for ax, (score, label) in zip(axes, PANELS):
        for name, (legend, color, style) in STYLES.items():
            legend = model_label if name == "model" else legend
            values = scores[f"{name}/{score}"]
            ax.plot(range(1, len(values) + 1), values, style, color=color, label=legend,
                    markersize=4)
        for i, (legend, other) in enumerate((others or {}).items()):
            values = other[f"model/{score}"]
            ax.plot(range(1, len(values) + 1), values, "d-", color=f"C{4 + i}", label=legend,
                    markersize=4)
        ax.set_xlabel("horizon t (frames after the last observed one)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def sample_predictions(steps: FramesSteps, state: dict[str, Any], data: Dataset,
                       cfg: FramesConfig, count: int = 3) -> tuple[np.ndarray, ...]:
    """The first `count` test clips: observed, true future (uint8) and the prediction (float)."""
    source = data.source(data.eval_split)
    clips = np.stack([source[i]["video"] for i in range(min(count, len(source)))])
    n_in, n_out = cfg.input_frames, cfg.output_frames
    state = to_host({"params": state["params"], "rest": state["rest"]})
    pred = steps.make_predict(n_out)(state["params"], state["rest"], clips[:, :n_in])
    return clips[:, :n_in], clips[:, n_in : n_in + n_out], np.asarray(pred)


def save_predictions(out: str | Path, observed: np.ndarray, truth: np.ndarray,
                     pred: np.ndarray) -> None:
    """Per clip three rows: observed t=-9..0, truth t=1..T, predicted t=1..T."""
    n_in, n_out = observed.shape[1], truth.shape[1]
    columns = max(n_in, n_out)
    cells, labels = [], []
    blank = np.zeros_like(observed[0, 0])
    for obs, true, guess in zip(observed, truth, pictures.to_uint8(pred)):
        rows = (("in", obs, range(1 - n_in, 1)), ("true", true, range(1, n_out + 1)),
                ("pred", guess, range(1, n_out + 1)))
        for name, frames, times in rows:
            for j in range(columns):
                cells.append(frames[j] if j < len(frames) else blank)
                labels.append(f"{name} t={list(times)[j]}" if j < len(frames) else "")
    pictures.save_grid(out, np.stack(cells), labels, columns=columns, min_side=64)


def save_curves(records: list[dict[str, Any]], out: Path) -> None:
    plot_curves(records, out, train_keys=("loss", "mse"), eval_keys=("eval_mse",))
