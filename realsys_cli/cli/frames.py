"""`realsys predict-frames`: train and score a next-frame predictor, or make its movie."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Annotated, Literal

import typer

from realsys_cli.cli import options as opt
from realsys_cli.cli.trainer import TrainerArgs, train_or_print, trainer_command

HELP = """Next-frame prediction: SimVP (Gao et al. 2022, the default), or the ConvLSTM encoder-forecaster of Shi et al. 2015 (--model convlstm), continues a movie.

[bold]Train and score[/] (default: built-in moving-digits, 10 frames in, 10 out; rerun with the same --workdir to resume):

  realsys predict-frames --workdir runs/frames --steps 1200

prints MSE per frame (OpenSTL convention), MAE, SSIM and PSNR per horizon t=1..10 next to the copy-last-frame and mean-frame baselines, and writes horizon.png, predictions.png and curves.png into the workdir. --adversarial adds Mathieu et al.'s discriminator. The model picks the recipe: SimVP (gSTA translator, all 10 frames at once, one epoch: configs/simvp_moving_digits.toml), or with --model convlstm the ConvLSTM (convlstm_moving_digits); --config simvp_openstl is SimVP as OpenSTL trains it.

[bold]Make the movie[/] of the run in --workdir (no training; the GIF goes into the run unless --out says):

  realsys predict-frames --workdir runs/frames --rollout 30 --out movie.gif

feeds 10 real test frames and predicts 30 autoregressively, past the training horizon (SimVP: its 10 predictions read as the next 10 observed frames, 10 at a time); the GIF shows input, truth (where it exists) and prediction side by side.
"""



@opt.handle_errors
@trainer_command(data_dir=False)
def predict_frames(
    *,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="Training: a video dataset, e.g. moving-digits or moving-digits/train=2000. "
        "Movie: where the test clips come from (default: the run's evaluation set).")] = None,
    model: Annotated[Literal["convlstm", "simvp"] | None, typer.Option(
        "--model", "-m", help="The network, and the recipe it picks: simvp (default) "
        "or convlstm (config field model).")] = None,
    steps: opt.StepsOpt = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", "-e", min=1, help="Epochs to train (default 1).")] = None,
    batch_size: opt.BatchSizeOpt = None,
    learning_rate: opt.LearningRateOpt = None,
    loss: Annotated[Literal["mse", "bce"] | None, typer.Option(
        "--loss", help="Per-pixel reconstruction loss.")] = None,
    adversarial: Annotated[bool | None, typer.Option(
        "--adversarial/--no-adversarial", help="Add a frame discriminator with the adversarial "
        "and gradient-difference losses of Mathieu et al. 2015 (weights 0.05 / 1 / 1).")] = None,
    rollout: Annotated[int | None, typer.Option(
        "--rollout", min=1, help="Make the movie: predict this many frames with the model "
        "trained in --workdir instead of training.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="The movie GIF (with --rollout; default <workdir>/movie.gif).")] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1,
                                       help="Test clips in the movie.")] = 3,
    common: TrainerArgs,
) -> None:
    if rollout is not None or out is not None:
        _movie(rollout=rollout, out=out, count=count, workdir=common.workdir, dataset=dataset,
               tfds_data_dir=common.tfds_data_dir, json=common.json,
               training_options={"--model": model, "--steps": steps, "--epochs": epochs,
                                 "--batch-size": batch_size, "--lr": learning_rate,
                                 "--loss": loss, "--seed": common.seed,
                                 "--adversarial": adversarial, "--config": common.config,
                                 "--set": common.set_,
                                 "--print-config": common.print_config or None})
        return
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()
    from realsys_cli import console
    from realsys_cli.frames.recipes import resolve_frames_config

    with console.held_back():  # the recipe line: not before a bad input's error
        cfg = resolve_frames_config(
            config_file=common.config, set_items=common.set_,
            # --epochs alone replaces the recipe's step count (max_steps would win over it)
            options={"dataset": dataset, "model": model, "num_epochs": epochs,
                     "max_steps": 0 if steps is None and epochs is not None else steps,
                     "batch_size": batch_size, "learning_rate": learning_rate, "loss": loss,
                     "adversarial": adversarial, "seed": common.seed,
                     "tfds_data_dir": opt.path_or_none(common.tfds_data_dir)})
    train_or_print(cfg, common, command="predict-frames",
                   workdir_parts=(cfg.dataset, "simvp" if cfg.model == "simvp" else "",
                                  "adversarial" if cfg.adversarial else cfg.loss),
                   train=lambda: import_module("realsys_cli.frames.train").train_and_evaluate)


def _movie(*, rollout: int | None, out: Path | None, count: int, workdir: Path | None,
           dataset: str | None, tfds_data_dir: Path | None, json: bool,
           training_options: dict[str, object]) -> None:
    from realsys_cli import console
    from realsys_cli.errors import ConfigError
    from realsys_cli.frames.rollout import make_movie

    if rollout is None:
        raise ConfigError("--out is the movie of --rollout N: add --rollout (e.g. --rollout 30)")
    if workdir is None:
        raise ConfigError("--rollout makes the movie of a trained run: pass its --workdir")
    given = [name for name, value in training_options.items() if value not in (None, [])]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to training; --rollout makes the movie "
                          f"of the model already trained in {workdir}")
    result = make_movie(workdir, rollout_frames=rollout, out=out or workdir / "movie.gif",
                        count=count, dataset=dataset, tfds_dir=opt.path_or_none(tfds_data_dir))
    console.print_result(result, json_mode=json, title="predict-frames --rollout")
