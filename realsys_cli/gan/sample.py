"""`realsys sample`: a trained generator's samples, latent walks, and its quality report.

    realsys sample --from W -n 64 --out grid.png        an 8x8 grid (by default from the same
                                                        fixed z as samples/epoch_NNN.png)
    realsys sample --from W --interpolate               walk.gif: n walks through random points
    realsys sample --from W --interpolate --out walk.png  the same walks as a strip PNG
    realsys sample --from W --score                     FID, floor, class coverage (train-gan's)
    realsys sample --from W --by-class                  classes.png: per class, the samples the
                                                        judge labels it most surely

The latent walk is the DCGAN paper's figure 4 (section 6.1): if moving through z changes the
images smoothly, with no sharp jumps, G has not memorised its training images. Walks are linear
for uniform z (as in the paper) and spherical (slerp) for normal z, which keeps the walk where
normal samples lie.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from realsys_cli.data.dataset import open_dataset
from realsys_cli.errors import CheckpointError, ConfigError
from realsys_cli.gan import quality as quality_lib
from realsys_cli.gan.config import GanConfig
from realsys_cli.gan.judge import Judge, check_classes, load_judge
from realsys_cli.gan.steps import GanSteps, build, sampling_params
from realsys_cli.gan.train import GanFacts
from realsys_cli.outputs import check_picture
from realsys_cli.pictures import grid, save_gif, save_grid
from realsys_cli.training.run import load_run


@dataclasses.dataclass
class TrainedGan:
    workdir: Path
    cfg: GanConfig
    facts: GanFacts
    steps: GanSteps
    state: dict[str, Any]
    step: int
    epochs: float
    checkpoint: str  # "latest" or "best" (lowest FID)

    def sample(self, z: jax.Array) -> np.ndarray:
        """uint8 (N, S, S, C) for z (N, nz)."""
        return quality_lib.generate(self.steps.make_sampler(), sampling_params(self.state),
                                    self.state["g_rest"], z)


def load_generator(workdir: str | Path, *, best: bool = False) -> TrainedGan:
    """The generator in `workdir`: the latest checkpoint, or with `best` the one of lowest FID
    (an error when no epoch has ended yet)."""

    def build_shapes(cfg: GanConfig, meta: dict[str, Any]) -> tuple[GanSteps, Any]:
        facts = GanFacts.from_dict(meta["facts"])
        built: list[GanSteps] = []

        def state() -> Any:  # traced only: no weights drawn just to be overwritten
            steps, initial = build(cfg, image_size=facts.image_size, channels=facts.channels,
                                   num_classes=len(facts.class_names))
            built.append(steps)  # graph definitions and optimizers: no arrays
            return initial

        template = jax.eval_shape(state)
        return built[0], template

    run = load_run(workdir, GanConfig, command="train-gan", markers=("latent_dim",),
                   build=build_shapes, prefer="best" if best else "latest", require=best)
    return TrainedGan(run.workdir, run.cfg, GanFacts.from_dict(run.meta["facts"]), run.steps,
                      run.state, run.step, round(float(run.meta["epoch"]), 3), run.checkpoint)


def _z(gan: TrainedGan, seed: int | None, n: int, stream: int) -> jax.Array:
    """The training's fixed z (seed None) or a fresh one from --seed."""
    if seed is None:
        return quality_lib.fixed_z(gan.steps.sample_z, gan.cfg.seed, n, stream)
    return gan.steps.sample_z(jax.random.key(seed), n)


def class_index(gan: TrainedGan, wanted: str) -> int:
    """--class's value (a class name, or its index) as the index a class-conditional G takes;
    a ConfigError for an unconditional G or a class it does not have."""
    names = list(gan.facts.class_names)
    if not gan.steps.num_classes:
        raise ConfigError(f"the GAN in {gan.workdir} is not class-conditional: --class needs "
                          "one trained with --set conditional=true")
    if wanted in names:
        return names.index(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise ConfigError(f"--class {wanted!r}: the GAN's classes are {', '.join(names[:20])}"
                      + (" ..." if len(names) > 20 else ""))


def with_class(gan: TrainedGan, z: jax.Array, index: int) -> jax.Array:
    """z (n, nz + K) with every row asking for class `index`."""
    one_hot = jax.nn.one_hot(jnp.full((len(z),), index), gan.steps.num_classes)
    return jnp.concatenate([z[:, : gan.steps.latent_dim], one_hot], axis=1)


def _header(gan: TrainedGan) -> dict[str, Any]:
    return {"workdir": str(gan.workdir), "checkpoint": gan.checkpoint, "step": gan.step,
            "epochs": gan.epochs}


def sample_grid(workdir: str | Path, *, n: int, out: str | Path, seed: int | None = None,
                best: bool = False, wanted_class: str | None = None) -> dict[str, Any]:
    """n samples as a grid; a class-conditional G's samples are in class order, or all of
    `wanted_class` (a name or an index)."""
    out = check_picture(out)  # before the generator is loaded, not after
    gan = load_generator(workdir, best=best)
    z, shown = _z(gan, seed, n, stream=1), {}
    if wanted_class is not None:
        index = class_index(gan, wanted_class)
        z, shown = with_class(gan, z, index), {"class": gan.facts.class_names[index]}
    images = gan.sample(z)  # (n, S, S, C)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(out, images, columns=math.ceil(math.sqrt(n)), min_side=56)
    return {**_header(gan), "num_samples": n, "image_size": gan.facts.image_size, **shown,
            "out": str(out)}


def walk_points(z0: jax.Array, z1: jax.Array, t: jax.Array, spherical: bool) -> jax.Array:
    """Points between z0 and z1 (B, nz) at fractions t (F,) -> (B, F, nz)."""
    t = t[None, :, None]
    a, b = z0[:, None, :], z1[:, None, :]
    if not spherical:
        return (1 - t) * a + t * b
    cos = jnp.sum(a * b, -1, keepdims=True) / (jnp.linalg.norm(a, axis=-1, keepdims=True)
                                              * jnp.linalg.norm(b, axis=-1, keepdims=True))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    sin = jnp.maximum(jnp.sin(omega), 1e-6)
    return (jnp.sin((1 - t) * omega) * a + jnp.sin(t * omega) * b) / sin


def latent_walk(workdir: str | Path, *, n: int, out: str | Path, points: int, frames: int,
                seed: int | None = None, best: bool = False) -> dict[str, Any]:
    """n walks through `points` random z, `frames` steps between two points.

    A .gif plays all walks side by side and loops back to its first point; any other suffix
    gives a strip PNG with one walk per row."""
    if points < 2 or frames < 1:
        raise ConfigError("a walk needs --points >= 2 and --frames >= 1")
    out = check_picture(out)
    gan = load_generator(workdir, best=best)
    as_gif = out.suffix.lower() == ".gif"
    key = jax.random.key(gan.cfg.seed + 3 if seed is None else seed)
    anchors = gan.steps.sample_z(key, n * points).reshape(n, points, -1)  # (n, P, nz)
    if as_gif:
        anchors = jnp.concatenate([anchors, anchors[:, :1]], axis=1)  # close the loop
    t = jnp.arange(frames) / frames  # the end point is the next leg's start
    spherical = gan.cfg.latent_distribution == "normal"
    legs = [walk_points(anchors[:, i], anchors[:, i + 1], t, spherical)
            for i in range(anchors.shape[1] - 1)]
    path = jnp.concatenate(legs, axis=1)  # (n, L, nz)
    if not as_gif:
        path = jnp.concatenate([path, anchors[:, -1:]], axis=1)  # end on the last point
    length = path.shape[1]
    images = gan.sample(path.reshape(n * length, -1))
    images = images.reshape(n, length, *images.shape[1:])  # (n, L, S, S, C)
    out.parent.mkdir(parents=True, exist_ok=True)
    if as_gif:
        sheets = [grid(images[:, f], columns=min(n, 8), min_side=56) for f in range(length)]
        save_gif(out, sheets, fps=8)
    else:
        save_grid(out, images.reshape(n * length, *images.shape[2:]), columns=length,
                  min_side=56)
    return {**_header(gan), "walks": n, "points": points, "frames_between_points": frames,
            "images_per_walk": length, "interpolation": "slerp" if spherical else "linear",
            "out": str(out)}


def _judge_of(gan: TrainedGan, judge: str | None) -> Judge:
    """--judge, else the run's judge (its config's, or the one train-gan trained for it)."""
    judge_dir = judge or gan.cfg.judge or gan.workdir / "judge"
    if not (Path(judge_dir) / "config.json").exists():
        raise CheckpointError(f"no judge classifier in {judge_dir}; pass --judge WORKDIR (a "
                              "train-classifier run on the same dataset)")
    the_judge = load_judge(judge_dir, trained_here=judge is None and gan.cfg.judge is None)
    check_classes(the_judge, gan.facts.class_names, gan.cfg.dataset)
    return the_judge


def samples_by_class(workdir: str | Path, *, n: int, out: str | Path, num_samples: int,
                     judge: str | None = None, seed: int | None = None,
                     best: bool = False) -> dict[str, Any]:
    """One row per class: of `num_samples` samples, the n the judge labels as that class with
    the highest probability, captioned with it; a row with fewer than n ends in blanks.

    It shows which classes G draws and what they look like to the judge. The rows are chosen
    by the judge, so read them next to an unselected grid (`sample_grid`)."""
    if num_samples < 1:
        raise ConfigError("--samples must be at least 1")
    out = check_picture(out)
    gan = load_generator(workdir, best=best)
    the_judge = _judge_of(gan, judge)
    images = gan.sample(_z(gan, seed, num_samples, stream=3))  # (N, S, S, C)
    _, probs = the_judge.features_and_probs(images)  # (N, classes)
    labels, confidence = probs.argmax(axis=1), probs.max(axis=1)
    names = the_judge.class_names
    blank = np.full_like(images[0], 255)
    cells, captions, shares = [], [], {}
    for c, name in enumerate(names):
        members = np.flatnonzero(labels == c)
        shares[name] = round(len(members) / num_samples, 4)
        chosen = members[np.argsort(-confidence[members], kind="stable")][:n]
        cells += [images[i] for i in chosen] + [blank] * (n - len(chosen))
        captions += [f"{name} {confidence[i]:.2f}" for i in chosen] + [""] * (n - len(chosen))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(out, np.stack(cells), captions, columns=n, min_side=80)
    return {**_header(gan), "num_samples": num_samples, "per_class": n,
            "class_share": shares,
            "confident_fraction": round(float(np.mean(confidence >= 0.9)), 4),
            "judge": the_judge.describe(), "out": str(out)}


def score(workdir: str | Path, *, judge: str | None = None, num_samples: int | None = None,
          best: bool = False) -> dict[str, Any]:
    """train-gan's quality report for a saved generator (the same z and real sets)."""
    gan = load_generator(workdir, best=best)
    cfg = gan.cfg
    the_judge = _judge_of(gan, judge)
    dataset = open_dataset(cfg.dataset, data_dir=cfg.data_dir, tfds_dir=cfg.tfds_data_dir)
    meter = quality_lib.QualityMeter.build(
        the_judge, dataset.source(dataset.train_split), image_size=gan.facts.image_size,
        num_samples=num_samples or cfg.fid_samples, seed=cfg.seed)
    z = quality_lib.fixed_z(gan.steps.sample_z, cfg.seed, meter.num_samples, stream=2)
    quality = meter.measure(gan.sample(z))
    sampler = gan.steps.make_sampler()
    _, untrained = build(cfg, image_size=gan.facts.image_size, channels=gan.facts.channels,
                         num_classes=len(gan.facts.class_names))
    fid_untrained = meter.measure(quality_lib.generate(
        sampler, untrained["g_params"], untrained["g_rest"], z))["fid"]
    declared = meter.declared()
    result_path = gan.workdir / "result.json"
    trained = json.loads(result_path.read_text()) if result_path.exists() else {}
    return {**_header(gan), "train_seconds": trained.get("train_seconds"),
            "dataset": cfg.dataset, "fid": quality["fid"],
            "fid_real_floor": declared.pop("fid_real_floor"), "fid_untrained": fid_untrained,
            "fid_ratio": quality["fid"] / fid_untrained if fid_untrained > 0 else None,
            **{k: declared[k] for k in ("num_samples", "num_real_samples")},
            "class_coverage": quality["class_coverage"],
            "min_class_share": quality["min_class_share"],
            "confident_fraction": quality["confident_fraction"],
            "real_confident_fraction": declared["real_confident_fraction"],
            "judge": declared["judge"]}
