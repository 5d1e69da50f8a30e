"""Making the movie: 10 real frames in, an autoregressive rollout past the training horizon out.

`realsys predict-frames --workdir W --rollout 30 --out movie.gif` rebuilds the trained predictor
from W, feeds it the first `input_frames` frames of a few test clips, lets the forecaster run for
`rollout` steps on its own predictions (nothing but the observed frames enters the model), and
writes a GIF in which every clip is a row of three panels:

  input        the observed frames as they are read, then the last one, held
  truth        the real frame at that time, where the clip has one ("no truth" after its end)
  prediction   the model's frame (black while it is still reading the input)

so one sees the prediction follow the truth for the first frames and drift, blur and fade later,
in particular past the training horizon (`output_frames`), which the labels mark with "+".
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from realsys_cli import pictures
from realsys_cli.errors import ConfigError
from realsys_cli.frames import metrics as frame_metrics
from realsys_cli.frames import setup
from realsys_cli.frames.evaluate import TrainedPredictor, load_trained
from realsys_cli.outputs import MOVIE_SUFFIXES, check_picture

MAX_ROLLOUT = 200


def rollout(trained: TrainedPredictor, observed: np.ndarray, steps: int) -> np.ndarray:
    """uint8 (N, T_in, H, W, C) observed frames -> float32 (N, steps, H, W, C) in [0, 1]."""
    if not 1 <= steps <= MAX_ROLLOUT:
        raise ConfigError(f"--rollout must be between 1 and {MAX_ROLLOUT} frames, got {steps}")
    return trained.predict(observed, steps)


def movie_frames(observed: np.ndarray, truth: np.ndarray, pred: np.ndarray, *,
                 training_horizon: int, min_side: int = 96) -> list[Image.Image]:
    """One grayscale picture per time step: rows = clips, columns = input | truth | prediction.

    observed uint8 (N, T_in, H, W, C); truth uint8 (N, T_true, ...) for the frames after the
    input (T_true may be 0); pred float (N, R, ...) in [0, 1].
    """
    n, n_in = observed.shape[:2]
    n_true, n_pred = truth.shape[1], pred.shape[1]
    guess = pictures.to_uint8(pred)
    black = np.zeros_like(observed[0, 0])
    grey = np.full_like(observed[0, 0], 64)
    out = []
    for t in range(n_in + n_pred):  # t = 0-based frame index in the clip
        cells, labels = [], []
        ahead = t - n_in + 1  # frames after the last observed one (<= 0 while reading)
        for i in range(n):
            cells.append(observed[i, min(t, n_in - 1)])
            labels.append(f"input {min(t, n_in - 1) + 1}")
            if ahead <= 0:
                cells += [observed[i, t], black]
                labels += [f"truth {t + 1}", "(reading)"]
                continue
            has_truth = ahead <= n_true
            cells += [truth[i, ahead - 1] if has_truth else grey, guess[i, ahead - 1]]
            mark = "+" if ahead > training_horizon else ""
            labels += [f"truth {t + 1}" if has_truth else "no truth", f"pred {t + 1}{mark}"]
        sheet = pictures.grid(np.stack(cells), labels, columns=3, min_side=min_side)
        # Grey frames in 32 levels: a small grey palette keeps the GIF about 3x smaller.
        out.append(ImageOps.posterize(sheet.convert("L"), 5))
    return out


def make_movie(workdir: str | os.PathLike, *, rollout_frames: int, out: str | os.PathLike,
               count: int = 3, dataset: str | None = None, tfds_dir: str | None = None,
               fps: float = 4.0, min_side: int = 96) -> dict[str, Any]:
    """Write the GIF; returns what it shows and the rollout's MSE where the truth exists."""
    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    out = check_picture(out, suffixes=MOVIE_SUFFIXES)  # before the model is loaded
    trained = load_trained(workdir)
    cfg = trained.cfg
    name = dataset or cfg.eval_dataset or cfg.dataset
    data = setup.open_video_dataset(name, tfds_dir or cfg.tfds_data_dir)
    shape = setup.check_frames(cfg, data, scored=False)
    if shape != trained.frame_shape:
        raise ConfigError(f"{name} has frames of {shape}; the model in {workdir} was trained on "
                          f"{trained.frame_shape}")
    source = data.source(data.eval_split)
    clips = np.stack([source[i]["video"] for i in range(min(count, len(source)))])
    n_in = cfg.input_frames
    observed, truth = clips[:, :n_in], clips[:, n_in : n_in + rollout_frames]
    pred = rollout(trained, observed, rollout_frames)  # (N, R, H, W, C)
    frames = movie_frames(observed, truth, pred, training_horizon=cfg.output_frames,
                          min_side=min_side)
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures.save_gif(out, frames, fps=fps)
    result: dict[str, Any] = {
        "workdir": str(workdir), "checkpoint": trained.checkpoint, "step": trained.step,
        "dataset": data.name, "split": data.eval_split, "sequences": len(clips),
        "frames_in": n_in, "rollout": rollout_frames, "training_horizon": cfg.output_frames,
        "truth_frames": truth.shape[1], "gif_frames": len(frames), "out": str(out),
        "gif_bytes": out.stat().st_size,
    }
    if truth.shape[1]:  # where the truth exists: the same scores as the evaluation
        scores = frame_metrics.frame_scores(pred[:, : truth.shape[1]], truth / 255.0)
        result["mse_per_frame"] = [round(float(v), 3) for v in np.mean(scores["mse"], axis=0)]
        result["ssim_per_frame"] = [round(float(v), 4) for v in np.mean(scores["ssim"], axis=0)]
    return result
