"""`realsys train-gan` and `realsys sample`: DCGAN with a built-in quality measure (FID)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Annotated

import typer

from realsys_cli.cli import options as opt
from realsys_cli.cli.trainer import TrainerArgs, train_or_print, trainer_command

JudgeOpt = Annotated[Path | None, typer.Option(
    "--judge", help="A train-classifier run on the same dataset, whose features FID is "
    "measured on (default: train one into WORKDIR/judge first).")]



@opt.handle_errors
@trainer_command()
def train_gan(
    *,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="digits | shapes | shapes/size=32 | a TFDS name | a label for "
        "--data-dir. Images of 28, 32 or 64 px (--set image_size=... resizes).")] = None,
    steps: opt.StepsOpt = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", "-e", min=1, help="Epochs to train (default: the recipe's).")] = None,
    batch_size: opt.BatchSizeOpt = None,
    learning_rate: Annotated[float | None, typer.Option(
        "--lr", help="Adam learning rate of D, and of G unless the recipe gives G its own (paper: "
        "2e-4 for both).")] = None,
    latent_dim: Annotated[int | None, typer.Option(
        "--latent-dim", min=1, help="Numbers in z (paper: 100).")] = None,
    latent: Annotated[str | None, typer.Option(
        "--latent", help="z distribution: uniform (U(-1, 1), the paper's) or normal.")] = None,
    judge: JudgeOpt = None,
    common: TrainerArgs,
) -> None:
    """Train a DCGAN; report FID, its real-vs-real floor and class coverage at the end. The
    dataset picks the recipe (digits, mnist: configs/dcgan_digits.toml; shapes: dcgan_shapes)
    unless --config says; --config dcgan_paper is the paper's settings."""
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()
    from realsys_cli import console
    from realsys_cli.gan.recipes import resolve_gan_config

    with console.held_back():  # the recipe line: not before a bad input's error
        cfg = resolve_gan_config(
            config_file=common.config, set_items=common.set_,
            options={"dataset": dataset, "max_steps": steps, "num_epochs": epochs,
                     "batch_size": batch_size, "learning_rate": learning_rate,
                     "latent_dim": latent_dim, "latent_distribution": latent,
                     "seed": common.seed, "judge": opt.path_or_none(judge),
                     "data_dir": opt.path_or_none(common.data_dir),
                     "tfds_data_dir": opt.path_or_none(common.tfds_data_dir)})
    train_or_print(cfg, common, command="train-gan", workdir_parts=(cfg.dataset,),
                   train=lambda: import_module("realsys_cli.gan.train").train_and_evaluate)


@opt.handle_errors
def sample(
    *,
    from_: Annotated[Path | None, typer.Option(
        "--from", help="The train-gan run to sample.")] = None,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Images in the grid (default 64), walks (default 8), or "
        "images per class row (default 8).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output file (default grid.png; walk.gif with --interpolate; a "
        ".png walk is a strip, one walk per row).")] = None,
    interpolate: Annotated[bool, typer.Option(
        "--interpolate", help="A latent walk between random points (DCGAN figure 4).")] = False,
    points: Annotated[int | None, typer.Option(
        "--points", min=2, help="Random points per walk (default 2 for a strip, 5 for a GIF).")]
    = None,
    frames: Annotated[int, typer.Option(
        "--frames", min=1, help="Images from one point to the next.")] = 8,
    score: Annotated[bool, typer.Option(
        "--score", help="Report FID, its floor and class coverage instead of a picture.")]
    = False,
    by_class: Annotated[bool, typer.Option(
        "--by-class", help="One row per class: the samples the judge labels it most surely "
        "(--count per row, of --samples).")] = False,
    judge: JudgeOpt = None,
    samples: Annotated[int | None, typer.Option(
        "--samples", min=2, help="Samples for --score (default: the run's fid_samples) or "
        "--by-class (default 1000).")] = None,
    best: Annotated[bool, typer.Option(
        "--best/--latest", help="The checkpoint with the lowest FID, or the latest one.")]
    = False,
    seed: Annotated[int | None, typer.Option(
        "--seed", min=0, max=opt.SEED_MAX,
        help="Draw a new z (default: the training's fixed z).")] = None,
    wanted_class: Annotated[str | None, typer.Option(
        "--class", help="Only this class (its name or index), for a class-conditional GAN "
        "(the digits recipe's); the grid only.")] = None,
    json: opt.JsonOpt = False,
    workdir: opt.OldWorkdirOpt = None,
    num: Annotated[int | None, typer.Option(
        "--num", min=1, hidden=True, help="Deprecated spelling of --count.")] = None,
) -> None:
    """Samples of a trained generator: a grid, a latent walk, the samples per class, or its
    quality report."""
    from realsys_cli import console
    from realsys_cli.gan import sample as sample_lib

    run = opt.required(opt.renamed(from_, workdir, new="--from", old="--workdir/-w"),
                       option="'--from'", what="the train-gan run to sample")
    n = opt.renamed(count, num, new="--count/-n", old="--num")
    judge_run = opt.path_or_none(judge)
    if wanted_class is not None and (score or by_class or interpolate):
        raise opt.UsageError("--class draws a grid; it does not go with --score, --by-class "
                              "or --interpolate")
    if score:
        result = sample_lib.score(run, judge=judge_run, num_samples=samples, best=best)
        console.print_result(result, json_mode=json, title="sample --score")
        return
    if by_class:
        result = sample_lib.samples_by_class(
            run, n=n or 8, out=out or Path("classes.png"), num_samples=samples or 1000,
            judge=judge_run, seed=seed, best=best)
        console.print_result(result, json_mode=json, title="sample --by-class")
        return
    if interpolate:
        out = out or Path("walk.gif")
        result = sample_lib.latent_walk(
            run, n=n or 8, out=out, frames=frames, seed=seed, best=best,
            points=points or (5 if out.suffix.lower() == ".gif" else 2))
    else:
        result = sample_lib.sample_grid(run, n=n or 64, out=out or Path("grid.png"),
                                        seed=seed, best=best, wanted_class=wanted_class)
    console.print_result(result, json_mode=json, title="sample")
