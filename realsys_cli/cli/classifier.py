"""`realsys train-classifier`, `realsys evaluate`, `realsys classify`."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from realsys_cli.cli.options import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    NoDownloadOpt,
    SeedOpt,
    SetOpt,
    TfdsDirOpt,
    WorkdirOpt,
    handle_errors,
)


def register(app: typer.Typer) -> None:
    app.command("train-classifier")(train_classifier)
    app.command("evaluate")(evaluate)
    app.command("classify")(classify)


def default_workdir(command: str, *parts: str) -> Path:
    from realsys_cli.config import default_runs_dir

    label = "-".join(p.replace("/", "_").replace("=", "").replace(",", "_") for p in parts if p)
    return default_runs_dir() / f"{command}-{label}-{time.strftime('%Y%m%d-%H%M%S')}"


@handle_errors
def train_classifier(
    *,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="digits | shapes | shapes/size=224 | a TFDS name (mnist, "
        "imagenette/320px-v2, ...) | a label for --data-dir.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="lenet | alexnet-small | alexnet (default: the dataset's "
        "recipe).")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", "-e", min=1, help="Exactly this many epochs (default: the recipe's; "
        "lenet: 2, but at least 500 steps).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", min=1)] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 compute (mixed precision).")]
    = False,
    seed: SeedOpt = None,
    data_dir: DataDirOpt = None,
    tfds_data_dir: TfdsDirOpt = None,
    no_download: NoDownloadOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    coordinator_address: Annotated[str | None, typer.Option(
        help="Multi-process training: HOST:PORT of process 0.")] = None,
    num_processes: Annotated[int, typer.Option(min=1, help="Number of processes.")] = 1,
    process_id: Annotated[int, typer.Option(min=0, help="This process's index.")] = 0,
    json: JsonOpt = False,
) -> None:
    """Train a classifier; the dataset picks the recipe (imagenette: alexnet, digits, mnist:
    lenet, cifar10: alexnet-small at 32 px) unless --model or --config says (default: digits)."""
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()
    from realsys_cli import console
    from realsys_cli.classifier.recipes import resolve_train_config
    from realsys_cli.classifier.train import train_and_evaluate
    from realsys_cli.training.distributed import ClusterSpec

    cfg = resolve_train_config(
        config_file=config, set_items=set_,
        options={"dataset": dataset, "model": model, "num_epochs": epochs,
                 "batch_size": batch_size, "learning_rate": learning_rate,
                 "dtype": "bfloat16" if bf16 else None, "seed": seed,
                 "data_dir": str(data_dir) if data_dir else None,
                 "tfds_data_dir": str(tfds_data_dir) if tfds_data_dir else None},
    )
    workdir = workdir or default_workdir("train-classifier", cfg.dataset, cfg.model)
    console.note(f"workdir: {workdir}")
    cluster = ClusterSpec(coordinator_address, num_processes, process_id)
    quiet_native = console.native_stdout_to_stderr() if num_processes > 1 else nullcontext()
    with quiet_native:
        result = train_and_evaluate(cfg, workdir, cluster=cluster,
                                    progress=console.progress_reporter(json_mode=json))
        console.print_result(result, json_mode=json, title="train-classifier")


@handle_errors
def evaluate(
    *,
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="A train-classifier run.")],
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="Another dataset with the same classes.")] = None,
    split: Annotated[str | None, typer.Option(help="Split (default: test/validation).")]
    = None,
    ten_crop: Annotated[bool | None, typer.Option(
        "--ten-crop/--center-crop", help="10-crop evaluation (AlexNet) or the centre crop.")]
    = None,
    data_dir: DataDirOpt = None,
    tfds_data_dir: TfdsDirOpt = None,
    no_download: NoDownloadOpt = False,
    json: JsonOpt = False,
) -> None:
    """Top-1, top-5, per-class accuracy and the confusion matrix of a trained classifier."""
    from realsys_cli import console
    from realsys_cli.classifier.evaluate import evaluate_workdir

    result = evaluate_workdir(workdir, dataset=dataset, split=split,
                              data_dir=str(data_dir) if data_dir else None,
                              tfds_dir=str(tfds_data_dir) if tfds_data_dir else None,
                              ten_crop=ten_crop)
    if not json:
        result = {k: v for k, v in result.items() if k != "confusion"}
    console.print_result(result, json_mode=json, title="evaluate")


@handle_errors
def classify(
    images: Annotated[list[str], typer.Argument(help="Image files; - reads paths from stdin.")],
    *,
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="A train-classifier run.")],
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Labels per image.")] = 5,
    json: JsonOpt = False,
) -> None:
    """Top-k labels with probabilities for each image."""
    from realsys_cli import console
    from realsys_cli.classifier.evaluate import classify_images

    paths = [line.strip() for line in sys.stdin if line.strip()] if images == ["-"] else images
    rows = classify_images(workdir, paths, top=top)
    if json:
        console.print_result({"workdir": str(workdir), "images": rows}, json_mode=True)
        return
    flat = [{"image": r["image"], "rank": i + 1, "label": t["label"],
             "probability": t["probability"]} for r in rows for i, t in enumerate(r["top"])]
    console.print_rows(flat, json_mode=False, title="classify", key="images")
