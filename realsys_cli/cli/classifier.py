"""`realsys train-classifier`, `realsys evaluate`, `realsys classify`."""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path
from typing import Annotated

import typer

from realsys_cli.cli import options as opt
from realsys_cli.cli.trainer import TrainerArgs, train_or_print, trainer_command


@opt.handle_errors
@trainer_command()
def train_classifier(
    *,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="digits | shapes | shapes/size=224 | a TFDS name (mnist, "
        "imagenette/320px-v2, ...) | a label for --data-dir.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="lenet | alexnet-small | alexnet (default: the dataset's "
        "recipe).")] = None,
    steps: opt.StepsOpt = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", "-e", min=1, help="Exactly this many epochs (default: the recipe's; "
        "lenet: 3/4 of one, but at least 350 steps).")] = None,
    batch_size: opt.BatchSizeOpt = None,
    learning_rate: opt.LearningRateOpt = None,
    bf16: opt.Bf16Opt = False,
    common: TrainerArgs,
) -> None:
    """Train a classifier; the dataset picks the recipe (imagenette: alexnet, digits, mnist:
    lenet, cifar10: alexnet-small at 32 px) unless --model or --config says (default: digits)."""
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()
    from realsys_cli import console
    from realsys_cli.classifier.recipes import resolve_train_config

    with console.held_back():  # the recipe line: not before a bad input's error
        cfg = resolve_train_config(
            config_file=common.config, set_items=common.set_,
            options={"dataset": dataset, "model": model, "max_steps": steps,
                     "num_epochs": epochs, "batch_size": batch_size,
                     "learning_rate": learning_rate, "dtype": "bfloat16" if bf16 else None,
                     "seed": common.seed, "data_dir": opt.path_or_none(common.data_dir),
                     "tfds_data_dir": opt.path_or_none(common.tfds_data_dir)},
        )
    train_or_print(cfg, common, command="train-classifier", workdir_parts=(cfg.dataset, cfg.model),
                   train=lambda: import_module("realsys_cli.classifier.train").train_and_evaluate)


def classifier_run(classifier: Path | None, old_workdir: Path | None) -> Path:
    """--classifier, or --workdir as evaluate and classify called it until this release."""
    run = opt.renamed(classifier, old_workdir, new="--classifier/-C", old="--workdir/-w")
    return opt.required(run, option="'--classifier' / '-C'", what="the train-classifier run "
                        "to read")


@opt.handle_errors
def evaluate(
    *,
    classifier: opt.ClassifierRunOpt = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="Another dataset with the same classes.")] = None,
    split: Annotated[str | None, typer.Option(help="Split (default: test/validation).")]
    = None,
    ten_crop: Annotated[bool | None, typer.Option(
        "--ten-crop/--center-crop", help="10-crop evaluation (AlexNet) or the centre crop.")]
    = None,
    data_dir: opt.DataDirOpt = None,
    tfds_data_dir: opt.TfdsDirOpt = None,
    no_download: opt.NoDownloadOpt = False,
    json: opt.JsonOpt = False,
    workdir: opt.OldWorkdirOpt = None,
) -> None:
    """Top-1, top-5, per-class accuracy and the confusion matrix of a trained classifier."""
    from realsys_cli.xla_flags import use_inference_flags

    use_inference_flags()
    from realsys_cli import console
    from realsys_cli.classifier.evaluate import evaluate_workdir

    run = classifier_run(classifier, workdir)
    result = evaluate_workdir(run, dataset=dataset, split=split,
                              data_dir=opt.path_or_none(data_dir),
                              tfds_dir=opt.path_or_none(tfds_data_dir), ten_crop=ten_crop)
    if not json:
        result = {k: v for k, v in result.items() if k != "confusion"}
    console.print_result(result, json_mode=json, title="evaluate")


@opt.handle_errors
def classify(
    images: Annotated[list[str], typer.Argument(help="Image files; - reads paths from stdin.")],
    *,
    classifier: opt.ClassifierRunOpt = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Labels per image.")] = 5,
    json: opt.JsonOpt = False,
    workdir: opt.OldWorkdirOpt = None,
) -> None:
    """Top-k labels with probabilities for each image."""
    from realsys_cli.xla_flags import use_inference_flags

    use_inference_flags()
    from realsys_cli import console
    from realsys_cli.classifier.evaluate import classify_images

    run = classifier_run(classifier, workdir)
    paths = [line.strip() for line in sys.stdin if line.strip()] if images == ["-"] else images
    rows = classify_images(run, paths, top=top)
    if json:
        console.print_result({"workdir": str(run), "images": rows}, json_mode=True)
        return
    flat = [{"image": r["image"], "rank": i + 1, "label": t["label"],
             "probability": t["probability"]} for r in rows for i, t in enumerate(r["top"])]
    console.print_rows(flat, json_mode=False, title="classify", key="images")
