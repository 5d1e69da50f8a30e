"""Scoring a frame predictor per horizon, during training and later from a workdir alone.

`evaluate_state` runs the jitted eval step over a test split (sharded like training) and returns
per-horizon MSE / MAE / SSIM / PSNR / sharpness for the model and, through the same code, the
copy-last-frame and mean-frame baselines. `load_trained` rebuilds a trained predictor from its
workdir (config + checkpoint) for the movie.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from realsys_cli.data import pipeline
from realsys_cli.frames import metrics, setup
from realsys_cli.frames.config import FramesConfig
from realsys_cli.frames.steps import FramesSteps, init_state
from realsys_cli.training import distributed
from realsys_cli.training.run import load_run


def evaluate_state(eval_step: Any, params: Any, rest: Any, source: Sequence, *,
                   batch_size: int, mesh: Any, limit: int | None = None) -> dict[str, Any]:
    """{"model/mse": [T], ..., "copy_last/ssim": [T], "truth/sharpness": [T], "count": N}."""
    shard = distributed.process_shard()
    local = batch_size // jax.process_count()
    totals = None
    for batch in pipeline.eval_batches(source, batch_size=local, shard=shard, limit=limit):
        sums = eval_step(params, rest, distributed.shard_batch(batch, mesh))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = distributed.to_host(totals)
    return {**metrics.summarize(totals), "count": int(totals["count"])}


def headline(scores: dict[str, Any]) -> dict[str, Any]:
    """The result fields people read first, from `evaluate_state`'s per-horizon scores."""
    def r(values: list[float], digits: int = 4) -> list[float]:
        return [round(v, digits) for v in values]

    mse, copy = scores["model/mse"], scores["copy_last/mse"]
    out: dict[str, Any] = {
        "mean_mse": round(float(np.mean(mse)), 3),
        "mean_mae": round(float(np.mean(scores["model/mae"])), 3),
        "mean_ssim": round(float(np.mean(scores["model/ssim"])), 4),
        "mean_psnr": round(float(np.mean(scores["model/psnr"])), 3),
        "mse_per_frame": r(mse, 3),
        "mae_per_frame": r(scores["model/mae"], 3),
        "ssim_per_frame": r(scores["model/ssim"]),
        "psnr_per_frame": r(scores["model/psnr"], 3),
        "sharpness_per_frame": r(scores["model/sharpness"], 5),
        "truth_sharpness_per_frame": r(scores["truth/sharpness"], 5),
        "mse_t1_over_copy_last": round(mse[0] / max(copy[0], 1e-12), 4),
        "beats_copy_last_every_horizon": bool(all(m < c for m, c in zip(mse, copy))),
    }
    for base in metrics.BASELINES:
        out[f"baseline_{base}_mean_mse"] = round(float(np.mean(scores[f"{base}/mse"])), 3)
        out[f"baseline_{base}_mean_ssim"] = round(float(np.mean(scores[f"{base}/ssim"])), 4)
        for score in ("mse", "ssim", "psnr"):
            out[f"baseline_{base}_{score}_per_frame"] = r(scores[f"{base}/{score}"], 4)
    return out


@dataclasses.dataclass
class TrainedPredictor:
    """A frame predictor rebuilt from its workdir: config, frame shape, steps and weights."""

    workdir: Path
    cfg: FramesConfig
    frame_shape: tuple[int, int, int]  # (H, W, C)
    steps: FramesSteps
    state: dict[str, Any]
    step: int
    checkpoint: str  # "best" or "latest"

    def predict(self, observed: np.ndarray, horizon: int, batch_size: int = 16) -> np.ndarray:
        """uint8 (N, T, H, W, C) observed clips -> float32 (N, horizon, H, W, C) in [0, 1]."""
        predict = self.steps.make_predict(horizon)
        out = [np.asarray(predict(self.state["params"], self.state["rest"],
                                  observed[i : i + batch_size]))
               for i in range(0, len(observed), batch_size)]
        return np.concatenate(out)


def load_trained(workdir: str | Path, *, best: bool = True) -> TrainedPredictor:
    """The predictor in `workdir`: its best checkpoint (lowest MSE) when it has one and
    `best`, else the latest."""

    def build(cfg: FramesConfig, meta: dict[str, Any]) -> tuple[FramesSteps, Any]:
        channels = int(meta["frame_shape"][2])
        # Shapes only (as classifier.evaluate.load_trained): no weights drawn to be overwritten.
        model = nnx.eval_shape(lambda: setup.make_model(cfg, channels))
        discriminator = nnx.eval_shape(lambda: setup.make_discriminator(cfg, channels))
        steps = setup.make_steps(cfg, model, total_steps=1, discriminator=discriminator)
        return steps, jax.eval_shape(lambda: init_state(
            setup.make_model(cfg, channels), steps.tx, cfg.seed,
            discriminator=setup.make_discriminator(cfg, channels), d_tx=steps.d_tx))

    run = load_run(workdir, FramesConfig, command="predict-frames",
                   markers=("hidden_channels", "output_frames"), build=build,
                   prefer="best" if best else "latest",
                   hint=f"; train one first with `realsys predict-frames --workdir {workdir}`")
    frame_shape = tuple(int(v) for v in run.meta["frame_shape"])
    return TrainedPredictor(run.workdir, run.cfg, frame_shape, run.steps,  # type: ignore[arg-type]
                            run.state, run.step, run.checkpoint)
