"""`realsys train-classifier`: train_and_evaluate(config, workdir) -> a result dict.

Read top to bottom: distributed set-up / input pipeline / model and optimizer / resume /
the loop / final evaluation and pictures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from realsys_cli import config as config_lib
from realsys_cli.classifier import report
from realsys_cli.classifier.augment import PixelStats
from realsys_cli.classifier.config import (
    RESUMABLE_CHANGES,
    ClassifierConfig,
    describe_length,
    total_steps,
)
from realsys_cli.classifier.evaluate import evaluate_state
from realsys_cli.classifier.setup import (
    DataFacts,
    data_facts,
    make_model,
    make_steps,
    sample_stats,
)
from realsys_cli.classifier.steps import ClassifierSteps, init_state
from realsys_cli.data import pipeline
from realsys_cli.data.dataset import Dataset, open_dataset
from realsys_cli.models import count_params
from realsys_cli.progress import SILENT, Progress
from realsys_cli.training import distributed, optim, run_status
from realsys_cli.training.distributed import ClusterSpec
from realsys_cli.training.loop import LoopSpec, finishing, run_loop
from realsys_cli.training.run import join_and_open, start_or_resume

log = logging.getLogger("realsys")


@dataclasses.dataclass
class ClassifierJob:
    """The classifier's part of the shared loop: its step, its evaluation, its checkpoint JSON."""

    steps: ClassifierSteps
    cfg: ClassifierConfig
    facts: DataFacts
    dataset: Dataset
    mesh: Any
    plateau: optim.Plateau

    def __post_init__(self) -> None:
        self.train_step = self.steps.make_train_step()
        self.eval_step = self.steps.make_eval_step()
        self.last_eval: dict[str, Any] = {}

    def evaluate(self, state: dict[str, Any]) -> dict[str, Any]:
        self.last_eval = evaluate_state(
            self.eval_step, state["params"], state["rest"],
            self.dataset.source(self.dataset.eval_split),
            batch_size=self.cfg.batch_size, resize_size=self.facts.resize_size,
            mesh=self.mesh, channels=self.facts.in_channels, limit=self.cfg.eval_limit or None,
        )
        return self.last_eval

    def end_of_epoch(self, state: dict[str, Any], epoch: int):
        result = self.evaluate(state)
        if self.cfg.schedule == "plateau" and self.plateau.update(result["accuracy"]):
            log.info("validation accuracy stalled: learning rate divided by 10 (x%g)",
                     self.plateau.factor)
            state = dict(state, opt=optim.set_lr_factor(state["opt"], self.plateau.factor))
        shown = {k: result[k] for k in ("loss", "accuracy", "top5_accuracy")}
        return state, shown, result["accuracy"]

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": config_lib.config_to_dict(self.cfg), "facts": self.facts.to_dict(),
                "stats": self.steps.stats.to_dict(), "plateau": self.plateau.to_dict(),
                "dataset": self.dataset.name, "eval_split": self.dataset.eval_split}


def training_batches(cfg: ClassifierConfig, facts: DataFacts, source: Any, local_batch: int,
                     shard: pipeline.Shard = pipeline.Shard(), **options: Any) -> Any:
    """train-classifier's training input pipeline (bench/data_bench.py times this one);
    `options` go to `pipeline.train_batches` (e.g. num_threads)."""
    return pipeline.train_batches(source, batch_size=local_batch, seed=cfg.seed,
                                  image_size=facts.resize_size, channels=facts.in_channels,
                                  shard=shard, **options)


def train_and_evaluate(
    cfg: ClassifierConfig,
    workdir: str | Path,
    *,
    cluster: ClusterSpec = ClusterSpec(),
    progress: Progress = SILENT,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """`dataset`: train on this already opened dataset instead of opening `cfg.dataset` (the
    fooling-images defence adds a class of generated images to it in memory)."""
    # ---------------------------------------------------------------- devices and input pipeline
    workdir = Path(workdir)
    given = dataset
    local_batch, dataset = join_and_open(cluster, cfg.batch_size, lambda: given if given is not None
                                         else open_dataset(cfg.dataset, data_dir=cfg.data_dir,
                                                           tfds_dir=cfg.tfds_data_dir))
    facts = data_facts(cfg, dataset)
    train_source = dataset.source(dataset.train_split)
    shard = distributed.process_shard()
    steps_per_epoch = pipeline.steps_per_epoch(len(train_source), local_batch, shard)
    num_steps = total_steps(cfg, steps_per_epoch)

    # ------------------------------------------------------------------------------- resume?
    run = start_or_resume(workdir, cfg, resumable=RESUMABLE_CHANGES,
                          max_to_keep=cfg.checkpoints_to_keep)
    if run.resuming:
        stats = PixelStats.from_dict(run.meta["stats"])
    else:
        stats = sample_stats(train_source, facts.resize_size, seed=cfg.seed)

    # ------------------------------------------------------------------ model and optimizer
    model = make_model(cfg, facts)
    steps = make_steps(cfg, facts, model, stats, num_steps)
    state = init_state(model, steps.tx, cfg.seed)
    num_params = count_params(state["params"])
    mesh = distributed.data_mesh()
    batches = training_batches(cfg, facts, train_source, local_batch, shard)
    state, start_step = run.restore(state, batches, steps_per_epoch)
    plateau = optim.Plateau(**run.meta["plateau"]) if run.resuming else optim.Plateau(
        patience=cfg.plateau_patience_epochs)
    state = distributed.replicate(state, mesh)
    job = ClassifierJob(steps, cfg, facts, dataset, mesh, plateau)
    metrics_log = run.metrics_log(start_step)
    checkpointer = run.checkpointer

    # -------------------------------------------------------------------------------- train
    log.info("%s", describe_length(cfg, steps_per_epoch))
    spec = LoopSpec(total_steps=num_steps, steps_per_epoch=steps_per_epoch,
                    log_every_steps=min(cfg.log_every_steps, steps_per_epoch),
                    checkpoint_every_steps=cfg.checkpoint_every_steps,
                    checkpoint_every_seconds=60 * cfg.checkpoint_every_minutes,
                    images_per_step=cfg.batch_size)
    t0 = time.perf_counter()
    result = run_loop(
        job, state, batches, lambda b: distributed.shard_batch(b, mesh), spec,
        start_step=start_step, checkpointer=checkpointer, metrics_log=metrics_log,
        progress=progress,
    )
    # Every step is saved now: a signal from here on stops at once (see finishing);
    # the workdir is freed last, once result.json is written.
    with finishing(workdir, result.step), contextlib.closing(run):
        final = job.last_eval or job.evaluate(result.state)

        # -------------------------------------------------------------- results and pictures
        if jax.process_index() == 0:
            records = metrics_log.read()
            if records:
                report.save_curves(records, workdir / "curves.png")
            report.save_confusion(np.asarray(final["confusion"]), facts.class_names,
                                  workdir / "confusion.png")
        train_seconds = time.perf_counter() - t0
        summary = {
            "dataset": dataset.name,
            "recipe": cfg.recipe or None,
            "model": cfg.model,
            "num_params": num_params,
            "image_size": facts.image_size,
            "epochs": round(result.step / steps_per_epoch, 3),
            "steps": result.step,
            "resumed_from_step": start_step or None,
            "eval_split": dataset.eval_split,
            "eval_examples": int(final["count"]),
            "eval_accuracy": final["accuracy"],
            "eval_top5_accuracy": final["top5_accuracy"],
            "eval_loss": final["loss"],
            "train_seconds": round(train_seconds, 2),
            "train_images_per_second": round(result.steady_images_per_second, 1),
            "devices": jax.device_count(),
            "processes": jax.process_count(),
            "workdir": str(workdir),
        }
        if jax.process_index() == 0:
            run_status.write_result(workdir, summary)
        return summary
