"""`realsys predict-frames` (training): train_and_evaluate(config, workdir) -> a result dict.

Read top to bottom: input pipeline / resume? / model and optimizer / the shared loop / the final
per-horizon evaluation and its pictures. The loop (realsys_cli/training/loop.py) brings
checkpoints with the data position (exact resume), Ctrl-C saving, NaN stops, progress and
metrics.jsonl; this module brings the frame predictor's steps and its evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from realsys_cli import config as config_lib
from realsys_cli.data import pipeline
from realsys_cli.data.dataset import Dataset
from realsys_cli.errors import CheckpointError
from realsys_cli.frames import report, setup
from realsys_cli.frames.config import RESUMABLE_CHANGES, FramesConfig
from realsys_cli.frames.evaluate import evaluate_state, headline
from realsys_cli.frames.steps import FramesSteps, init_state
from realsys_cli.models import count_params
from realsys_cli.progress import SILENT, Progress
from realsys_cli.training import distributed, run_status
from realsys_cli.training.distributed import ClusterSpec
from realsys_cli.training.loop import LoopSpec, finishing, run_loop
from realsys_cli.training.run import join_and_open, start_or_resume

log = logging.getLogger("realsys")
MODEL_LABELS = {"convlstm": "ConvLSTM", "simvp": "SimVP"}  # the horizon plot's legend


@dataclasses.dataclass
class FramesJob:
    """The frame predictor's part of the shared loop: its step, evaluation, checkpoint JSON."""

    steps: FramesSteps
    cfg: FramesConfig
    eval_data: Dataset
    frame_shape: tuple[int, int, int]
    mesh: Any

    def __post_init__(self) -> None:
        self.train_step = self.steps.make_train_step()
        self.eval_step = self.steps.make_eval_step()
        self.last_scores: dict[str, Any] = {}

    def evaluate(self, state: dict[str, Any]) -> dict[str, Any]:
        self.last_scores = evaluate_state(
            self.eval_step, state["params"], state["rest"],
            self.eval_data.source(self.eval_data.eval_split), batch_size=self.cfg.batch_size,
            mesh=self.mesh, limit=self.cfg.eval_limit or None,
        )
        return self.last_scores

    def end_of_epoch(self, state: dict[str, Any], epoch: int):
        scores = self.evaluate(state)
        mse = float(np.mean(scores["model/mse"]))
        shown = {"mse": mse, "ssim": float(np.mean(scores["model/ssim"])),
                 "copy_last_mse": float(np.mean(scores["copy_last/mse"]))}
        return state, shown, -mse  # best checkpoint = lowest mean MSE per frame

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": config_lib.config_to_dict(self.cfg),
                "frame_shape": list(self.frame_shape), "eval_dataset": self.eval_data.name}


def training_batches(cfg: FramesConfig, source: Any, local_batch: int,
                     shard: pipeline.Shard = pipeline.Shard(), **options: Any) -> Any:
    """predict-frames' training input pipeline (bench/data_bench.py times this one)."""
    return pipeline.train_batches(source, batch_size=local_batch, seed=cfg.seed, shard=shard,
                                  **options)


def train_and_evaluate(cfg: FramesConfig, workdir: str | Path, *,
                       cluster: ClusterSpec = ClusterSpec(),
                       progress: Progress = SILENT) -> dict[str, Any]:
    # ---------------------------------------------------------------- data and input pipeline
    workdir = Path(workdir)
    local_batch, dataset = join_and_open(
        cluster, cfg.batch_size, lambda: setup.open_video_dataset(cfg.dataset, cfg.tfds_data_dir))
    frame_shape = setup.check_frames(cfg, dataset)
    eval_data = dataset
    if cfg.eval_dataset:
        eval_data = distributed.first_on_process_zero(
            lambda: setup.open_video_dataset(cfg.eval_dataset, cfg.tfds_data_dir),
            "eval-dataset-prepared")
        if setup.check_frames(cfg, eval_data) != frame_shape:
            raise CheckpointError(f"{cfg.eval_dataset} has frames of another shape than "
                                  f"{cfg.dataset} {frame_shape}")
    train_source = dataset.source(dataset.train_split)
    shard = distributed.process_shard()
    steps_per_epoch = pipeline.steps_per_epoch(len(train_source), local_batch, shard)
    total_steps = cfg.max_steps or cfg.num_epochs * steps_per_epoch

    # ------------------------------------------------------------------------------- resume?
    run = start_or_resume(workdir, cfg, resumable=RESUMABLE_CHANGES,
                          max_to_keep=cfg.checkpoints_to_keep)

    # ------------------------------------------------------------------ model and optimizer
    if cfg.model == "simvp" and cfg.observed_loss_weight > 0:
        log.info("observed_loss_weight is the ConvLSTM's (its predictions of observed frames); "
                 "SimVP predicts future frames only: not used")
    model = setup.make_model(cfg, frame_shape[2])
    discriminator = setup.make_discriminator(cfg, frame_shape[2])
    steps = setup.make_steps(cfg, model, total_steps, discriminator)
    state = init_state(model, steps.tx, cfg.seed, discriminator=discriminator, d_tx=steps.d_tx)
    num_params, d_params = count_params(state["params"]), count_params(state.get("d_params", {}))
    mesh = distributed.data_mesh()
    batches = training_batches(cfg, train_source, local_batch, shard)
    state, start_step = run.restore(state, batches, steps_per_epoch)
    state = distributed.replicate(state, mesh)
    job = FramesJob(steps, cfg, eval_data, frame_shape, mesh)
    metrics_log = run.metrics_log(start_step)
    checkpointer = run.checkpointer

    # -------------------------------------------------------------------------------- train
    spec = LoopSpec(total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                    log_every_steps=min(cfg.log_every_steps, steps_per_epoch),
                    checkpoint_every_steps=cfg.checkpoint_every_steps,
                    checkpoint_every_seconds=60 * cfg.checkpoint_every_minutes,
                    images_per_step=cfg.batch_size, progress_keys=("loss", "mse", "d_loss"))
    t0 = time.perf_counter()
    result = run_loop(job, state, batches, lambda b: distributed.shard_batch(b, mesh), spec,
                      start_step=start_step, checkpointer=checkpointer, metrics_log=metrics_log,
                      progress=progress)
    # Every step is saved now: a signal from here on stops at once (see finishing);
    # the workdir is freed last, once result.json is written.
    with finishing(workdir, result.step), contextlib.closing(run):
        train_seconds = time.perf_counter() - t0
        scores = job.last_scores or job.evaluate(result.state)

        # -------------------------------------------------------------- results and pictures
        writer = jax.process_index() == 0  # every process has the same scores; one writes them
        if writer:
            observed, truth, pred = report.sample_predictions(steps, result.state, eval_data, cfg)
            report.save_predictions(workdir / "predictions.png", observed, truth, pred)
            report.save_horizon(workdir / "horizon.png", scores,
                                model_label=MODEL_LABELS[cfg.model], title=(
                f"trained on {dataset.name} for {result.step} steps; scored on {scores['count']} "
                f"{eval_data.name} {eval_data.eval_split} clips"))
            records = metrics_log.read()
            if records:
                report.save_curves(records, workdir / "curves.png")
        summary = {
            "dataset": dataset.name,
            "eval_dataset": eval_data.name,
            "eval_split": eval_data.eval_split,
            "eval_sequences": scores["count"],
            "frames_in": cfg.input_frames,
            "frames_out": cfg.output_frames,
            "model": cfg.model,
            "loss": cfg.loss + ("+adversarial+gdl" if cfg.adversarial else ""),
            "num_params": num_params,
            **({"discriminator_params": d_params} if cfg.adversarial else {}),
            "steps": result.step,
            "epochs": round(result.step / steps_per_epoch, 3),
            "resumed_from_step": start_step or None,
            **headline(scores),
            "train_seconds": round(train_seconds, 2),
            "train_steps_per_second": round(result.steady_images_per_second / cfg.batch_size, 4),
            "devices": jax.device_count(),
            "processes": jax.process_count(),
            "workdir": str(workdir),
        }
        if writer:
            (workdir / "horizon.json").write_text(json.dumps(scores, indent=1) + "\n")
            run_status.write_result(workdir, summary)
        return summary
