"""`realsys train-gan`: train_and_evaluate(config, workdir) -> a result dict.

Read top to bottom: input pipeline / resume? / the judge and the real reference / nets and
optimizers (and the untrained generator's FID) / the loop / the quality report and pictures.
The loop is the shared one (training.loop.run_loop): logging, NaN stop, Ctrl-C, checkpoints with
the data position and exact resume. This file adds, at the end of every epoch, a grid of samples
from a fixed z (samples/epoch_NNN.png), a collapse check, and FID on the judge's features.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli import config as config_lib
from realsys_cli.data import pipeline
from realsys_cli.data.dataset import Dataset, open_dataset
from realsys_cli.errors import DatasetError
from realsys_cli.gan import quality as quality_lib
from realsys_cli.gan.config import RESUMABLE_CHANGES, GanConfig
from realsys_cli.gan.judge import check_judge, find_or_train_judge, given_judge
from realsys_cli.gan.report import save_losses, save_samples
from realsys_cli.gan.steps import (
    GanSteps,
    batch_spread,
    build,
    sampling_params,
    to_unit_range,
)
from realsys_cli.models import count_params
from realsys_cli.models.dcgan import check_image_size
from realsys_cli.progress import SILENT, Progress
from realsys_cli.training import distributed, run_status
from realsys_cli.training.distributed import ClusterSpec
from realsys_cli.training.loop import LoopSpec, finishing, run_loop
from realsys_cli.training.run import join_and_open, start_or_resume

log = logging.getLogger("realsys")

COLLAPSE_D_LOSS = 0.05  # D tells every fake from every real: G gets no useful signal
COLLAPSE_SPREAD = 0.15  # samples differ 7x less than real images do: nearly identical


def collapse_reasons(d_loss: float, spread: float) -> list[str]:
    """Why training looks collapsed (empty when it does not), from D's loss on a real and a
    generated batch and the samples' spread relative to real images'."""
    why = []
    if d_loss < COLLAPSE_D_LOSS:
        why.append(f"D loss {d_loss:.3g} is near 0 (D tells every sample from real data)")
    if spread < COLLAPSE_SPREAD:
        why.append(f"the samples are nearly identical (they vary {spread:.2f}x as much as "
                   "real images)")
    return why


@dataclasses.dataclass(frozen=True)
class GanFacts:
    """What the nets are sized from, saved in every checkpoint."""

    dataset: str
    image_size: int
    channels: int
    class_names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GanFacts:
        return cls(d["dataset"], int(d["image_size"]), int(d["channels"]),
                   tuple(d["class_names"]))


def gan_facts(cfg: GanConfig, dataset: Dataset) -> GanFacts:
    if dataset.kind != "image":
        raise DatasetError(f"{dataset.name} is a video dataset; train-gan needs images")
    h, w, c = dataset.element_shape
    size = cfg.image_size or (h if h == w else None)
    if size is None:
        raise DatasetError(f"{dataset.name} has images of varying size; pick one with "
                           "--set image_size=64 (or 32, 28)")
    check_image_size(size)
    if c not in (1, 3):
        raise DatasetError(f"{dataset.name} has {c} channels; realsys needs 1 or 3")
    return GanFacts(dataset.name, int(size), int(c), tuple(dataset.class_names))


@dataclasses.dataclass
class GanJob:
    """The GAN's part of the shared loop: its step, its end-of-epoch pictures and measures."""

    steps: GanSteps
    cfg: GanConfig
    facts: GanFacts
    workdir: Path
    meter: quality_lib.QualityMeter
    total_steps: int
    real_probe: jax.Array  # uint8 (grid_samples, S, S, C) real images, for the collapse check
    real_probe_labels: jax.Array  # int32 (grid_samples,): their labels

    def __post_init__(self) -> None:
        self.train_step = self.steps.make_train_step()
        self.sampler = self.steps.make_sampler()
        self.grid_z = quality_lib.fixed_z(self.steps.sample_z, self.cfg.seed,
                                          self.cfg.grid_samples, stream=1)
        self.fid_z = quality_lib.fixed_z(self.steps.sample_z, self.cfg.seed,
                                         self.meter.num_samples, stream=2)
        self.last_quality: dict[str, Any] | None = None
        self.last_quality_step = -1
        self.last_grid: Path | None = None

        def probe(d_params: Any, d_rest: Any, real: jax.Array, real_labels: jax.Array,
                  fake: jax.Array, step: jax.Array):
            real, fake = to_unit_range(real), to_unit_range(fake)
            # D is judged on what it trains on, with its own loss: with instance noise, noisy
            # images; with DiffAugment, augmented ones (fixed keys: the same probe each epoch).
            key = jax.random.key(self.cfg.seed)
            real_noise, fake_noise = self.steps.noise_images(key, step, real.shape)
            real_in = self.steps.augment(jax.random.fold_in(key, 1), real) + real_noise
            fake_in = self.steps.augment(jax.random.fold_in(key, 2), fake) + fake_noise
            # a class-conditional D judges (image, class) pairs; the paper's ignores labels
            real_logits, _ = self.steps.discriminate(d_params, d_rest, real_in, real_labels)
            fake_logits, _ = self.steps.discriminate(d_params, d_rest, fake_in,
                                                     self.steps.class_of(self.grid_z))
            return (self.steps.d_loss(real_logits, fake_logits),
                    batch_spread(fake) / jnp.maximum(batch_spread(real), 1e-6))

        self._probe = jax.jit(probe)

    def measure(self, state: dict[str, Any]) -> dict[str, Any]:
        state = _local_copy(state)  # every process measures it: all agree on the best one
        images = quality_lib.generate(self.sampler, sampling_params(state), state["g_rest"],
                                      self.fid_z)
        self.last_quality = self.meter.measure(images)
        if "g_ema" in state:  # G's own weights too, to show what the average adds
            raw = quality_lib.generate(self.sampler, state["g_params"], state["g_rest"],
                                       self.fid_z)
            own = self.meter.measure(raw)
            self.last_quality.update(fid_own_weights=own["fid"],
                                     confident_fraction_own_weights=own["confident_fraction"],
                                     min_class_share_own_weights=own["min_class_share"])
        self.last_quality_step = int(state["step"])
        return self.last_quality

    def end_of_epoch(self, state: dict[str, Any], epoch: int):
        local = _local_copy(state)
        grid = quality_lib.generate(self.sampler, sampling_params(local), local["g_rest"],
                                    self.grid_z)
        self.last_grid = self.workdir / "samples" / f"epoch_{epoch:03d}.png"
        if jax.process_index() == 0:
            save_samples(self.last_grid, grid)
        d_loss, spread = (float(v) for v in self._probe(local["d_params"], local["d_rest"],
                                                        self.real_probe,
                                                        self.real_probe_labels,
                                                        jnp.asarray(grid),
                                                        local["step"]))
        shown: dict[str, float] = {"d_loss": d_loss, "spread": spread}
        self._warn_if_collapsed(epoch, d_loss, spread)
        best = None
        every = self.cfg.fid_every_epochs
        if (every and epoch % every == 0) or int(state["step"]) >= self.total_steps:
            q = self.measure(local)
            shown.update({k: v for k, v in q.items() if k != "class_coverage"})
            best = -q["fid"]
        return state, shown, best

    def _warn_if_collapsed(self, epoch: int, d_loss: float, spread: float) -> None:
        why = collapse_reasons(d_loss, spread)
        if why:
            log.warning("training may have collapsed at epoch %d: %s; see %s. Resume from an "
                        "earlier checkpoint or retry with another --seed or a lower --lr",
                        epoch, "; ".join(why), self.last_grid)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": config_lib.config_to_dict(self.cfg), "facts": self.facts.to_dict(),
                "dataset": self.facts.dataset}


def _local_copy(state: dict[str, Any]) -> dict[str, Any]:
    """The nets (and step) as host arrays: each process samples and measures its own copy of
    the replicated state, which jit can mix with local inputs under several processes too."""
    keys = ("g_params", "g_rest", "g_ema", "d_params", "d_rest", "step")
    return distributed.to_host({k: state[k] for k in keys if k in state})


def _real_probe(source: Any, n: int, image_size: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n real training images, uint8 (n, S, S, C), and their labels, int32 (n,)."""
    rng = np.random.default_rng(seed + 7)
    idx = rng.choice(len(source), size=min(n, len(source)), replace=False)
    examples = [source[int(i)] for i in idx]
    return (np.stack([pipeline.resize_square(e["image"], image_size) for e in examples]),
            np.asarray([int(e.get("label", 0)) for e in examples], np.int32))


def training_batches(cfg: GanConfig, facts: GanFacts, source: Any, local_batch: int,
                     shard: pipeline.Shard = pipeline.Shard(), **options: Any) -> Any:
    """train-gan's training input pipeline (bench/data_bench.py times this one)."""
    return pipeline.train_batches(source, batch_size=local_batch, seed=cfg.seed,
                                  image_size=facts.image_size, shard=shard, **options)


def train_and_evaluate(cfg: GanConfig, workdir: str | Path, *,
                       cluster: ClusterSpec = ClusterSpec(),
                       progress: Progress = SILENT) -> dict[str, Any]:
    # ---------------------------------------------------------------------- input pipeline
    t_start = time.perf_counter()
    workdir = Path(workdir)
    local_batch, dataset = join_and_open(cluster, cfg.batch_size, lambda: open_dataset(
        cfg.dataset, data_dir=cfg.data_dir, tfds_dir=cfg.tfds_data_dir))
    facts = gan_facts(cfg, dataset)
    train_source = dataset.source(dataset.train_split)
    shard = distributed.process_shard()
    steps_per_epoch = pipeline.steps_per_epoch(len(train_source), local_batch, shard)
    total_steps = cfg.max_steps or cfg.num_epochs * steps_per_epoch

    # ------------------------------------------ a given judge, checked before the workdir is made
    t_judge = time.perf_counter()
    judge = given_judge(cfg.judge, facts.class_names, facts.channels, cfg.dataset)

    # ------------------------------------------------------------------------------ resume?
    run = start_or_resume(workdir, cfg, resumable=RESUMABLE_CHANGES,
                          max_to_keep=cfg.checkpoints_to_keep)

    # ------------------------------------------------------- the judge and the real reference
    if judge is None:  # none given: trained into <workdir>/judge (once)
        judge = find_or_train_judge(
            judge=None, workdir=workdir, dataset=cfg.dataset, data_dir=cfg.data_dir,
            tfds_data_dir=cfg.tfds_data_dir, image_size=facts.image_size,
            model=cfg.judge_model, epochs=cfg.judge_epochs, batch_size=cfg.batch_size,
            seed=cfg.seed, progress=progress)
        check_judge(judge, facts.class_names, facts.channels, cfg.dataset)
    judge_seconds = time.perf_counter() - t_judge
    meter = quality_lib.QualityMeter.build(judge, train_source, image_size=facts.image_size,
                                           num_samples=cfg.fid_samples, seed=cfg.seed)

    # --------------------------------------------------------------- nets and optimizers
    steps, state = build(cfg, image_size=facts.image_size, channels=facts.channels,
                         total_steps=total_steps, num_classes=len(facts.class_names))
    g_count, d_count = count_params(state["g_params"]), count_params(state["d_params"])
    probe, probe_labels = _real_probe(train_source, cfg.grid_samples, facts.image_size,
                                      cfg.seed)
    job = GanJob(steps, cfg, facts, workdir, meter, total_steps, jnp.asarray(probe),
                 jnp.asarray(probe_labels))
    fid_untrained = job.measure(state)["fid"]  # the same measure, before any step
    log.info("FID of the untrained generator %.4g; real-vs-real floor %.4g (%d samples each, "
             "%s)", fid_untrained, meter.floor, meter.num_samples, judge.describe()["layer"])
    if judge.unreliable_because():
        log.warning("%s", judge.unreliable_because())
    batches = training_batches(cfg, facts, train_source, local_batch, shard)
    state, start_step = run.restore(state, batches, steps_per_epoch)
    mesh = distributed.data_mesh()
    state = distributed.replicate(state, mesh)
    metrics_log = run.metrics_log(start_step)
    checkpointer = run.checkpointer

    # ------------------------------------------------------------------------------- train
    spec = LoopSpec(total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                    log_every_steps=min(cfg.log_every_steps, steps_per_epoch),
                    checkpoint_every_steps=cfg.checkpoint_every_steps,
                    checkpoint_every_seconds=60 * cfg.checkpoint_every_minutes,
                    images_per_step=1, progress_keys=("d_loss", "g_loss", "d_real", "d_fake"))
    result = run_loop(job, state, batches, lambda b: distributed.shard_batch(b, mesh), spec,
                      start_step=start_step, checkpointer=checkpointer, metrics_log=metrics_log,
                      progress=progress)
    # Every step is saved now: a signal from here on stops at once (see finishing);
    # the workdir is freed last, once result.json is written.
    with finishing(workdir, result.step), contextlib.closing(run):

        # -------------------------------------------------------- quality report and pictures
        quality = (job.last_quality if job.last_quality_step == result.step
                   else job.measure(result.state))
        writer = jax.process_index() == 0
        if writer:
            save_losses(metrics_log.read(), workdir / "losses.png", fid_floor=meter.floor,
                        fid_untrained=fid_untrained)
        summary = {
            "dataset": dataset.name,
            "recipe": cfg.recipe or None,
            "image_size": facts.image_size,
            "channels": facts.channels,
            "latent_dim": cfg.latent_dim,
            "latent_distribution": cfg.latent_distribution,
            "conditional": cfg.conditional,
            "g_params": g_count,
            "d_params": d_count,
            "epochs": round(result.step / steps_per_epoch, 3),
            "steps": result.step,
            "resumed_from_step": start_step or None,
            "fid": quality["fid"],
            "fid_real_floor": meter.floor,
            "fid_untrained": fid_untrained,
            "fid_ratio": quality["fid"] / fid_untrained if fid_untrained > 0 else None,
            "num_samples": meter.num_samples,
            "num_real_samples": meter.num_samples,
            "class_coverage": quality["class_coverage"],
            "min_class_share": quality["min_class_share"],
            "confident_fraction": quality["confident_fraction"],
            "real_confident_fraction": meter.real_confident_fraction,
            "ema_decay": cfg.ema_decay or None,
            **{k: v for k, v in quality.items() if k.endswith("_own_weights")},
            "judge": judge.describe(),
            "judge_seconds": round(judge_seconds, 2),
            "train_seconds": round(result.train_seconds, 2),
            # all of this run: the data, the judge, the FID meter, training and the report
            "seconds": round(time.perf_counter() - t_start, 2),
            "steps_per_second": round(result.steady_images_per_second, 3),
            "samples": str(job.last_grid) if job.last_grid else None,
            "devices": jax.device_count(),
            "processes": jax.process_count(),
            "workdir": str(workdir),
        }
        if writer:
            run_status.write_result(workdir, summary)
        return summary
