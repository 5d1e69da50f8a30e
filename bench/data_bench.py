"""Is the data layer ever the bottleneck? Each trainer's step fed by its real input pipeline
(A) against the same step on one batch held on the device (B) (`make bench-data`).

    make bench-data
    .venv/bin/python bench/data_bench.py --cases classifier-digits,jpeg-224 --json
    .venv/bin/python bench/data_bench.py --cases jpeg-224 --threads 1,2,4,8   # decode threads

For every case the trainer's own pieces are built as its command builds them: the config (the
command's defaults or recipe), the model, the jitted train step (`...Job.train_step` /
`make_train_step`), and the input pipeline through the trainer's `training_batches` (the
function `train_and_evaluate` calls). Then, in rounds (ROUNDS: 5 to 11) of back-to-back
pairs B A (A B in every other round), one pair per pipeline setting:

  A: N steps exactly as training.loop.run_loop runs them: `next(batches)`, then the loop's
     host->device path (`distributed.shard_batch` on the data mesh), then the step;
  B: N steps of the same jitted step on one batch that is on the device already.

slowdown = 1 - A/B, the median over the rounds of each pair's (A and B of a pair ran under the
same load of this shared machine): what feeding real data costs the training; the goal is < 5%
everywhere. steps/s A and B are the medians of their runs. cpu_extra = the CPU time of this
process (all threads) in A over that in B, minus 1, median over rounds: the work the pipeline
and the host->device path add to a step, which other processes' load hardly changes (on 2
cores with the step using both, about the slowdown they cost when nothing else runs).
After each A its pipeline is left idle until its prefetch buffer is full again (its threads
would otherwise refill it while the next run is timed), and each A first runs `prefetch`
untimed steps, so that batches decoded while it sat idle are not counted as free (skipped
where the step is so slow next to the pipeline that the buffer is always full anyway).

Cases (the trainers' default model/recipe for each dataset):

  classifier-digits   train-classifier, built-in digits, recipe lenet_digits (the default job)
  classifier-shapes   train-classifier, built-in shapes (64 px), recipe alexnet_shapes
  gan-digits          train-gan, built-in digits, GanConfig's defaults (--config dcgan_paper)
  frames              predict-frames, built-in moving-digits, FramesConfig's defaults (the
                      ConvLSTM, --model convlstm; the default SimVP reads the same batches)
  jpeg-224            train-classifier --data-dir on a generated folder of 320x320 JPEGs (2
                      classes x 200), recipe alexnet_imagenette: decode, resize to 256 on the
                      host, random 224 crop + flip (+ PCA noise) in the step; batch 32
                      (--jpeg-batch; the recipe's is 128); the decode threads are swept
                      (--threads) and the fewest under 5% reported

The built-in datasets are prepared into the TFDS data dir (--tfds-data-dir, $TFDS_DATA_DIR, or
~/tensorflow_datasets) if they are not yet; the JPEG folder goes into a temporary directory.
Progress goes to stderr; the table (or, with --json, one JSON object) to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = ("classifier-digits", "classifier-shapes", "gan-digits", "frames", "jpeg-224")
GOAL = 0.05  # the slowdown under which the data layer is "not the bottleneck"
SWEEP = (1, 2, 4, 8)  # decode threads tried on jpeg-224
# Steps per timed run (N) and rounds for each case, sized for a 2-core CPU: the slow steps
# (0.3-5 s) in short pairs and many rounds, so that A and B of a pair see the same load of a
# shared machine; the whole bench in about 6 minutes when the machine is idle.
STEPS = {"classifier-digits": 20, "classifier-shapes": 2, "gan-digits": 4, "frames": 2,
         "jpeg-224": 1}
ROUNDS = {"classifier-digits": 11, "classifier-shapes": 7, "gan-digits": 7, "frames": 7,
          "jpeg-224": 5}
# The 224-px case trains at batch 32, not the recipe's 128 (--jpeg-batch 128 for that): one
# step of the paper's AlexNet at 128 takes ~10 s on 2 cores, too long to sweep threads in
# interleaved rounds; both the step and the host's decoding cost the same per image at any
# batch, so their ratio, the slowdown, hardly depends on it.
JPEG_BATCH = 32


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ------------------------------------------------------------------------------ the JPEG folder
def make_jpeg_folder(root: Path, *, per_class: int = 200, val_per_class: int = 20,
                     side: int = 320, classes: int = 2, seed: int = 0) -> Path:
    """ROOT/{train,val}/class<k>/*.jpg: `side` x `side` JPEGs (quality 90) of smooth random
    colour fields with shapes and grain, about the size a 320-px photograph compresses to."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for k in range(classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                im = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
                draw = ImageDraw.Draw(im)
                for _ in range(int(rng.integers(3, 8))):
                    x0, y0 = (int(v) for v in rng.integers(0, side - 40, 2))
                    w, h = (int(v) for v in rng.integers(20, side // 2, 2))
                    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                    box = (x0, y0, min(side, x0 + w), min(side, y0 + h))
                    (draw.ellipse if (i + k) % 2 else draw.rectangle)(box, fill=colour)
                im = im.filter(ImageFilter.GaussianBlur(1.0))
                grain = rng.normal(0, 6, (side, side, 3))
                pixels = np.clip(np.asarray(im, np.float64) + grain, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
    return root


# ------------------------------------------------------------------------------------ the cases
@dataclasses.dataclass
class Case:
    """One trainer's step and pipeline, as its command builds them."""

    name: str
    describe: str
    batch_size: int
    state: Any  # the replicated train state (donated by every step: always the latest here)
    train_step: Callable  # the command's jitted step: (state, batch) -> (state, metrics)
    put_batch: Callable  # the loop's host->device path (distributed.shard_batch on the mesh)
    make_batches: Callable[..., Any]  # (**options) -> the trainer's own training iterator
    threads: int  # the pipeline's decode threads when nothing is passed (train_batches')
    prefetch: int  # its prefetch buffer, in batches
    steps: int = 4  # N per timed run
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    last_cpu_s: float = 0.0  # CPU seconds of this process (every thread) in the last run


def _pipeline_defaults() -> tuple[int, int]:
    import inspect

    from realsys_cli.data import pipeline

    params = inspect.signature(pipeline.train_batches).parameters
    return params["num_threads"].default, params["prefetch"].default


def classifier_case(name: str, *, dataset: str | None = None, data_dir: str | None = None,
                    recipe: str | None = None, overrides: dict[str, Any] | None = None,
                    steps: int = 4) -> Case:
    """train-classifier's step and pipeline for `dataset` (or the folder `data_dir`), with the
    recipe the command picks for it or `recipe` (--config), as resolve_train_config gives."""
    from realsys_cli.classifier import train as trainer
    from realsys_cli.classifier.config import total_steps
    from realsys_cli.classifier.recipes import resolve_train_config
    from realsys_cli.classifier.setup import data_facts, make_model, make_steps, sample_stats
    from realsys_cli.classifier.steps import init_state
    from realsys_cli.config import recipe_path
    from realsys_cli.data import pipeline
    from realsys_cli.data.dataset import open_dataset
    from realsys_cli.training import distributed, optim

    options = {"dataset": dataset, "data_dir": data_dir, **(overrides or {})}
    cfg = resolve_train_config(config_file=recipe_path(recipe) if recipe else None,
                               options=options, set_items=None)
    data = open_dataset(cfg.dataset, data_dir=cfg.data_dir, tfds_dir=cfg.tfds_data_dir)
    local_batch = distributed.check_batch_size(cfg.batch_size)
    facts = data_facts(cfg, data)
    source = data.source(data.train_split)
    shard = distributed.process_shard()
    steps_per_epoch = pipeline.steps_per_epoch(len(source), local_batch, shard)
    stats = sample_stats(source, facts.resize_size, seed=cfg.seed)
    model = make_model(cfg, facts)
    job_steps = make_steps(cfg, facts, model, stats, total_steps(cfg, steps_per_epoch))
    mesh = distributed.data_mesh()
    state = distributed.replicate(init_state(model, job_steps.tx, cfg.seed), mesh)
    job = trainer.ClassifierJob(job_steps, cfg, facts, data, mesh,
                                optim.Plateau(patience=cfg.plateau_patience_epochs))
    threads, prefetch = _pipeline_defaults()
    return Case(
        name=name,
        describe=(f"train-classifier {data.name}: {cfg.recipe or 'no recipe'}, {cfg.model} "
                  f"{facts.image_size} px (loader {facts.resize_size} px), batch "
                  f"{cfg.batch_size}"),
        batch_size=cfg.batch_size, state=state, train_step=job.train_step,
        put_batch=lambda b: distributed.shard_batch(b, mesh),
        make_batches=lambda **o: trainer.training_batches(cfg, facts, source, local_batch,
                                                          shard, **o),
        threads=threads, prefetch=prefetch, steps=steps,
        extra={"cfg": cfg, "facts": facts, "job": job, "recipe": cfg.recipe,
               "model": cfg.model, "image_size": facts.image_size,
               "resize_size": facts.resize_size},
    )


def gan_case(name: str, *, overrides: dict[str, Any] | None = None, steps: int = 4) -> Case:
    """train-gan's step and pipeline with GanConfig's defaults (`realsys train-gan`)."""
    from realsys_cli.config import resolve_config
    from realsys_cli.data import pipeline
    from realsys_cli.data.dataset import open_dataset
    from realsys_cli.gan import train as trainer
    from realsys_cli.gan.config import GanConfig
    from realsys_cli.gan.steps import build
    from realsys_cli.training import distributed

    cfg = resolve_config(GanConfig, options=dict(overrides or {}))
    data = open_dataset(cfg.dataset, data_dir=cfg.data_dir, tfds_dir=cfg.tfds_data_dir)
    local_batch = distributed.check_batch_size(cfg.batch_size)
    facts = trainer.gan_facts(cfg, data)
    source = data.source(data.train_split)
    shard = distributed.process_shard()
    steps_per_epoch = pipeline.steps_per_epoch(len(source), local_batch, shard)
    total = cfg.max_steps or cfg.num_epochs * steps_per_epoch
    gan_steps, state = build(cfg, image_size=facts.image_size, channels=facts.channels,
                             total_steps=total)
    mesh = distributed.data_mesh()
    state = distributed.replicate(state, mesh)
    threads, prefetch = _pipeline_defaults()
    return Case(
        name=name,
        describe=(f"train-gan {data.name}: defaults, {facts.image_size} px, width {cfg.width}, "
                  f"batch {cfg.batch_size}"),
        batch_size=cfg.batch_size, state=state,
        train_step=gan_steps.make_train_step(),  # GanJob.train_step
        put_batch=lambda b: distributed.shard_batch(b, mesh),
        make_batches=lambda **o: trainer.training_batches(cfg, facts, source, local_batch,
                                                          shard, **o),
        threads=threads, prefetch=prefetch, steps=steps,
        extra={"cfg": cfg, "facts": facts, "steps": gan_steps, "image_size": facts.image_size},
    )


def frames_case(name: str, *, overrides: dict[str, Any] | None = None, steps: int = 4) -> Case:
    """predict-frames' step and pipeline with FramesConfig's defaults (`realsys
    predict-frames --model convlstm`)."""
    from realsys_cli.config import resolve_config
    from realsys_cli.data import pipeline
    from realsys_cli.frames import setup
    from realsys_cli.frames import train as trainer
    from realsys_cli.frames.config import FramesConfig
    from realsys_cli.frames.steps import init_state
    from realsys_cli.training import distributed

    cfg = resolve_config(FramesConfig, options=dict(overrides or {}))
    data = setup.open_video_dataset(cfg.dataset, cfg.tfds_data_dir)
    local_batch = distributed.check_batch_size(cfg.batch_size)
    frame_shape = setup.check_frames(cfg, data)
    source = data.source(data.train_split)
    shard = distributed.process_shard()
    steps_per_epoch = pipeline.steps_per_epoch(len(source), local_batch, shard)
    total = cfg.max_steps or cfg.num_epochs * steps_per_epoch
    model = setup.make_model(cfg, frame_shape[2])
    discriminator = setup.make_discriminator(cfg, frame_shape[2])
    frames_steps = setup.make_steps(cfg, model, total, discriminator)
    mesh = distributed.data_mesh()
    state = distributed.replicate(init_state(model, frames_steps.tx, cfg.seed,
                                             discriminator=discriminator,
                                             d_tx=frames_steps.d_tx), mesh)
    job = trainer.FramesJob(frames_steps, cfg, data, frame_shape, mesh)
    threads, prefetch = _pipeline_defaults()
    return Case(
        name=name,
        describe=(f"predict-frames {data.name}: defaults, {cfg.input_frames}+"
                  f"{cfg.output_frames} frames of {frame_shape[0]}x{frame_shape[1]}, batch "
                  f"{cfg.batch_size}"),
        batch_size=cfg.batch_size, state=state, train_step=job.train_step,
        put_batch=lambda b: distributed.shard_batch(b, mesh),
        make_batches=lambda **o: trainer.training_batches(cfg, source, local_batch, shard, **o),
        threads=threads, prefetch=prefetch, steps=steps,
        extra={"cfg": cfg, "job": job},
    )


def build_case(name: str, *, tiny: bool = False, workdir: Path | None = None,
               steps: int | None = None, jpeg_batch: int = JPEG_BATCH,
               tfds_dir: str | None = None) -> Case:
    """A case by name. `tiny`: small datasets, batches and images (the tests), not the
    measured sizes; `workdir`: where the JPEG folder is written; `tfds_dir`: the built-ins'
    TFDS data dir (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)."""
    n = steps or STEPS[name]
    small = {"batch_size": 8} if tiny else {}
    if tfds_dir is not None:
        small["tfds_data_dir"] = tfds_dir
    if name == "classifier-digits":
        return classifier_case(name, dataset="digits/train=64,test=16" if tiny else "digits",
                               overrides=small, steps=n)
    if name == "classifier-shapes":
        return classifier_case(name, dataset="shapes/train=64,test=16" if tiny else "shapes",
                               overrides=small, steps=n)
    if name == "gan-digits":
        dataset = "digits/train=64,test=16" if tiny else "digits"
        return gan_case(name, overrides={"dataset": dataset, **small}, steps=n)
    if name == "frames":
        tiny_frames = {"dataset": "moving-digits/train=16,test=4", "batch_size": 4,
                       "hidden_channels": [4], "input_frames": 3, "output_frames": 2}
        return frames_case(name, overrides={**small, **tiny_frames} if tiny else small,
                           steps=n)
    if name == "jpeg-224":
        workdir = Path(workdir or tempfile.mkdtemp(prefix="realsys-data-bench-"))
        folder = workdir / "jpegs"
        if not (folder / "train").is_dir():
            say(f"writing the JPEG folder into {folder}")
            make_jpeg_folder(folder, **({"per_class": 8, "val_per_class": 2, "side": 96}
                                        if tiny else {}))
        # `train-classifier --config alexnet_imagenette --data-dir FOLDER` (the recipe the
        # command also picks by itself for a folder of 320-px images); prepared into a TFDS
        # dir of its own beside the folder, which goes with it
        overrides = {"tfds_data_dir": str(workdir / "tfds"),
                     **({"image_size": 64, "resize_size": 80, **small} if tiny
                        else {"batch_size": jpeg_batch})}
        case = classifier_case(name, data_dir=str(folder), recipe="alexnet_imagenette",
                               overrides=overrides, steps=n)
        case.extra["folder"] = str(folder)
        return case
    raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")


# ---------------------------------------------------------------------------------- the timing
def run_fed(case: Case, batches: Any, n: int) -> float:
    """A: n steps as run_loop runs them (next -> put_batch -> step); seconds."""
    import jax

    state, metrics = case.state, None
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        batch = case.put_batch(next(batches))
        state, metrics = case.train_step(state, batch)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - t0
    case.state, case.last_cpu_s = state, time.process_time() - c0
    return seconds


def run_held(case: Case, batch: dict[str, Any], n: int) -> float:
    """B: n steps of the same step on one batch already on the device; seconds."""
    import jax

    state, metrics = case.state, None
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        state, metrics = case.train_step(state, batch)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - t0
    case.state, case.last_cpu_s = state, time.process_time() - c0
    return seconds


def pipeline_rate(case: Case, options: dict[str, Any], batches_to_time: int) -> float:
    """Seconds per batch of the pipeline alone (a fresh iterator, nothing else running)."""
    batches = case.make_batches(**options)
    next(batches)  # threads started
    t0 = time.perf_counter()
    for _ in range(batches_to_time):
        next(batches)
    return (time.perf_counter() - t0) / batches_to_time


@dataclasses.dataclass
class Arm:
    """One pipeline setting under test (A), with its iterator kept across rounds."""

    label: str
    options: dict[str, Any]
    threads: int
    batches: Any = None
    batch_s: float = 0.0  # the pipeline alone, seconds per batch
    lead_in: int = 0  # untimed steps before each timed run
    times: list[float] = dataclasses.field(default_factory=list)  # A, per round
    held_times: list[float] = dataclasses.field(default_factory=list)  # its B, per round
    cpu: list[float] = dataclasses.field(default_factory=list)  # CPU seconds of each A
    held_cpu: list[float] = dataclasses.field(default_factory=list)  # ... and of each B


def refill_s(case: Case, arm: Arm, used: int | None = None) -> float:
    """How long an arm's pipeline needs to fill its prefetch buffer again, with room, after
    `used` batches were taken from it (None: all of them)."""
    used = case.prefetch if used is None else min(used, case.prefetch)
    return min(30.0, 1.5 * used * arm.batch_s + 0.05)


def measure(case: Case, thread_counts: list[int] | None, rounds: int, *,
            arms: list[Arm] | None = None) -> dict[str, Any]:
    """Rounds of pairs, B A for every pipeline setting (A B in every other round, so that a
    load that drifts during a round favours neither); the slowdown is the median over rounds
    of 1 - (A's steps/s) / (B's steps/s) of each pair: A and B of one pair ran back to back,
    under the same load of the (shared) machine.

    After each A its pipeline is left to refill its buffer before anything else is timed (its
    threads would otherwise take CPU from the next run); each A starts with untimed lead-in
    steps, which use up the batches decoded while it sat idle when the step is fast."""
    if arms is None:
        arms = ([Arm(f"threads={t}", {"num_threads": t}, t) for t in thread_counts]
                if thread_counts else [Arm("default", {}, case.threads)])
    for arm in arms:
        arm.batch_s = pipeline_rate(case, arm.options, max(2, case.prefetch))
        arm.batches = case.make_batches(**arm.options)
    held = case.put_batch(next(arms[0].batches))  # one real batch, on the device
    t0 = time.perf_counter()
    run_held(case, held, 1)  # trace + compile + one step
    compile_s = time.perf_counter() - t0
    step_s = run_held(case, held, 2) / 2
    for arm in arms:
        # Batches decoded while the pipeline sat idle would be free: used up first, unless
        # the step is so slow next to the pipeline that its buffer is always full anyway.
        arm.lead_in = case.prefetch if step_s < 0.5 or arm.batch_s > 0.25 * step_s else 0
        run_fed(case, arm.batches, 1)
    time.sleep(max(refill_s(case, arm) for arm in arms))
    n = case.steps

    def fed(arm: Arm) -> None:
        if arm.lead_in:
            run_fed(case, arm.batches, arm.lead_in)
        arm.times.append(run_fed(case, arm.batches, n))
        arm.cpu.append(case.last_cpu_s)
        # the pipeline's threads refill the buffer now: that CPU time belongs to A
        c0 = time.process_time()
        time.sleep(refill_s(case, arm, arm.lead_in + n))
        arm.cpu[-1] += (time.process_time() - c0) * n / (n + arm.lead_in)

    def held_run(arm: Arm) -> None:
        arm.held_times.append(run_held(case, held, n))
        arm.held_cpu.append(case.last_cpu_s)

    for r in range(rounds):
        for arm in arms:
            if r % 2 == 0:
                held_run(arm)
                fed(arm)
            else:
                fed(arm)
                held_run(arm)
        say(f"  {case.name} round {r + 1}/{rounds}: "
            + ", ".join(f"[{a.label}] A {n / a.times[-1]:.3g} B {n / a.held_times[-1]:.3g}"
                        for a in arms)
            + f" steps/s (load {load_average()})")
    results = []
    for arm in arms:
        per_round = [1 - h / a for a, h in zip(arm.times, arm.held_times)]
        slowdown = statistics.median(per_round)
        cpu_extra = statistics.median(a / h - 1 for a, h in zip(arm.cpu, arm.held_cpu))
        results.append({
            "arm": arm.label, "threads": arm.threads,
            "steps_per_s_fed": round(n / statistics.median(arm.times), 4),
            "steps_per_s_held": round(n / statistics.median(arm.held_times), 4),
            "slowdown": round(slowdown, 4),
            "slowdown_per_round": [round(x, 4) for x in per_round],
            "under_goal": slowdown < GOAL, "lead_in_steps": arm.lead_in,
            "cpu_extra": round(cpu_extra, 4),
            "pipeline_alone_images_per_s": round(case.batch_size / arm.batch_s, 1),
            "pipeline_alone_ms_per_batch": round(1e3 * arm.batch_s, 2),
        })
    out: dict[str, Any] = {
        "case": case.name, "describe": case.describe, "batch_size": case.batch_size,
        "steps_per_round": n, "rounds": rounds, "compile_s": round(compile_s, 2),
        "held_step_ms": round(1e3 * step_s, 1), "prefetch": case.prefetch}
    if thread_counts or len(results) > 1:
        fewest = [r["threads"] for r in results if r["under_goal"]]
        out["threads_needed"] = min(fewest) if fewest else None
        default = [r for r in results if r["threads"] == case.threads]
        out.update(default[0] if default else results[-1])
        out["sweep"] = results
    else:
        out.update(results[0])
    return out


# ------------------------------------------------------------------------------------- output
def table(results: list[dict[str, Any]]) -> str:
    lines = ["| case | what | steps/s fed (A) | steps/s held (B) | slowdown 1-A/B (per round "
             "min..max) | CPU extra | decode threads | pipeline alone, ms/batch | < 5% |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows = r.get("sweep", [r])
        for row in rows:
            spread = row["slowdown_per_round"]
            lines.append(
                f"| {r['case']} | {r['describe']} | {row['steps_per_s_fed']:.3g} | "
                f"{row['steps_per_s_held']:.3g} | {100 * row['slowdown']:.1f}% "
                f"({100 * min(spread):.0f}..{100 * max(spread):.0f}) | "
                f"{100 * row['cpu_extra']:.1f}% | {row['threads']} | "
                f"{row['pipeline_alone_ms_per_batch']:.3g} | "
                f"{'yes' if row['under_goal'] else '**no**'} |")
        if "sweep" in r:
            lines.append(f"| {r['case']} | fewest decode threads under 5% | | | | | "
                         f"{r['threads_needed']} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: "
                    + ", ".join(CASES))
    ap.add_argument("--rounds", type=int, default=0, help="rounds (0 = per case, ROUNDS)")
    ap.add_argument("--steps", type=int, default=0, help="N per timed run (0 = per case)")
    ap.add_argument("--jpeg-batch", type=int, default=JPEG_BATCH,
                    help="jpeg-224's batch size (the recipe's: 128)")
    ap.add_argument("--threads", default=",".join(map(str, SWEEP)),
                    help="decode threads swept on jpeg-224 ('' = its default only)")
    ap.add_argument("--tfds-data-dir", default=None)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke test, no result)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    if args.rounds < 0 or args.steps < 0 or args.jpeg_batch < 1:
        raise SystemExit("--rounds and --steps must be 0 or more, --jpeg-batch at least 1")
    if args.tfds_data_dir:
        os.environ["TFDS_DATA_DIR"] = args.tfds_data_dir
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()  # as the three trainers do, before jax is imported
    import jax

    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    for name in names:
        if name not in CASES:
            raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")
    sweep = [int(t) for t in args.threads.split(",") if t.strip()]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = load_average()
    say(f"data bench {started}, load average {load_before}, {os.cpu_count()} CPUs")
    results = []
    with tempfile.TemporaryDirectory(prefix="realsys-data-bench-") as tmp:
        for name in names:
            say(f"{name}: building")
            case = build_case(name, tiny=args.tiny, workdir=Path(tmp),
                              steps=args.steps or None, jpeg_batch=args.jpeg_batch)
            say(f"{name}: {case.describe}")
            result = measure(case, sweep if name == "jpeg-224" and sweep else None,
                             args.rounds or ROUNDS[name])
            results.append(result)
            say(f"{name}: A {result['steps_per_s_fed']:.3g} / B {result['steps_per_s_held']:.3g}"
                f" steps/s, slowdown {100 * result['slowdown']:.1f}%")
    report = {
        "date": started, "host": platform.node(), "cpus": os.cpu_count(),
        "backend": jax.default_backend(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_before": load_before, "load_after": load_average(), "goal": GOAL,
        "tiny": args.tiny, "cases": results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(table(results))
        print(f"\n{started}, load average {load_before} before, {report['load_after']} after")


if __name__ == "__main__":
    main()
