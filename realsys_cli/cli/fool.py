"""`realsys fool` (fooling images) and `realsys fool-defence` (the paper's retraining defence)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from realsys_cli.cli.options import (
    ConfigOpt,
    JsonOpt,
    NoDownloadOpt,
    SeedOpt,
    SetOpt,
    TfdsDirOpt,
    handle_errors,
)

ClassifierOpt = Annotated[Path | None, typer.Option(
    "--workdir", "-w", help="A train-classifier run (default: the most recent one in runs/).")]
MethodOpt = Annotated[str | None, typer.Option(
    "--method", "-m", help="ascent (gradient ascent on the logit margin, default) | evolve "
    "(MAP-Elites) | perturb (targeted PGD on real test images).")]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", help="evolve: direct (a value per pixel) | cppn (a pattern-producing net).")]
CountOpt = Annotated[int | None, typer.Option("--count", "-n", min=1, help="Images per class.")]
ConfidenceOpt = Annotated[float | None, typer.Option(
    "--confidence", help="Stop an image at this softmax confidence (default 0.9999).")]


def register(app: typer.Typer) -> None:
    app.command("fool")(fool)
    app.command("fool-defence")(fool_defence)


def classifier_workdir(workdir: Path | None) -> tuple[Path, str | None]:
    """--workdir, or the most recent classifier run and a line naming it for stderr (logged
    once the run has checked its input, so that bad input stays a one-line error)."""
    from realsys_cli.config import default_runs_dir
    from realsys_cli.fool.target import latest_classifier_run

    if workdir is not None:
        return workdir, None
    found = latest_classifier_run(default_runs_dir())
    return found, f"classifier: {found} (the most recent run)"


def default_out(command: str, method: str) -> Path:
    from realsys_cli.config import default_runs_dir

    return default_runs_dir() / f"{command}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"


@handle_errors
def fool(
    *,
    workdir: ClassifierOpt = None,
    method: MethodOpt = None,
    encoding: EncodingOpt = None,
    target_class: Annotated[list[str] | None, typer.Option(
        "--target-class", "-t", help="A class by index or name (9, parachute); repeatable.")]
    = None,
    all_classes: Annotated[bool, typer.Option(
        "--all-classes", help="Every class (the default when no --target-class is given).")]
    = False,
    count: CountOpt = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, help="ascent: at most this many steps (300); perturb: PGD steps "
        "(40; 1 = FGSM).")] = None,
    generations: Annotated[int | None, typer.Option(
        "--generations", min=1, help="evolve: generations (200).")] = None,
    confidence: ConfidenceOpt = None,
    epsilon: Annotated[float | None, typer.Option(
        "--epsilon", help="perturb: L-infinity radius in [0, 1] pixel units (0.3).")] = None,
    also_check: Annotated[Path | None, typer.Option(
        "--also-check", help="A second classifier run: the confidence it gives each image.")]
    = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default: runs/fool-<method>-<time>).")] = None,
    seed: SeedOpt = None,
    tfds_data_dir: TfdsDirOpt = None,
    no_download: NoDownloadOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json: JsonOpt = False,
) -> None:
    """Images the classifier is sure of and a person cannot recognise (Nguyen et al. 2015)."""
    from realsys_cli import console
    from realsys_cli.config import resolve_config
    from realsys_cli.errors import ConfigError
    from realsys_cli.fool.config import FoolConfig

    if all_classes and target_class:
        raise ConfigError("give --target-class or --all-classes, not both")
    method_now = method or "ascent"
    options = {"method": method, "encoding": encoding, "count_per_class": count,
               "generations": generations, "confidence": confidence, "epsilon": epsilon,
               "seed": seed, "tfds_data_dir": str(tfds_data_dir) if tfds_data_dir else None,
               "target_classes": tuple(target_class) if target_class else None}
    if steps is not None:
        options["pgd_steps" if method_now == "perturb" else "ascent_steps"] = steps
    cfg = resolve_config(FoolConfig, config_file=config, set_items=set_, options=options)
    workdir, picked = classifier_workdir(workdir)
    out = out or default_out("fool", cfg.method)

    from realsys_cli.fool.report import per_class_rows
    from realsys_cli.fool.run import run

    result = run(cfg, workdir, out, also_check=also_check, announce=picked,
                 progress=console.progress_reporter(json_mode=json))
    if json:
        console.print_result(result, json_mode=True)
        return
    summary = {k: v for k, v in result.items() if k not in ("images", "config")}
    console.print_result(summary, json_mode=False, title=f"fool ({cfg.method})")
    console.print_rows(per_class_rows(result["images"]), json_mode=False,
                       title=f"per class (median {result['unit']} to reach each threshold)",
                       key="classes")


@handle_errors
def fool_defence(
    *,
    workdir: ClassifierOpt = None,
    rounds: Annotated[int | None, typer.Option(
        "--rounds", "-k", min=1, help="Retrain-and-fool rounds after the original (3).")] = None,
    retrain_epochs: Annotated[int | None, typer.Option(
        "--retrain-epochs", min=1, help="Epochs of each retraining (1).")] = None,
    method: MethodOpt = None,
    encoding: EncodingOpt = None,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Fooling images per class and round (100).")] = None,
    confidence: ConfidenceOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default: runs/fool-defence-<method>-<time>); "
        "rerun with the same --out to resume.")] = None,
    seed: SeedOpt = None,
    tfds_data_dir: TfdsDirOpt = None,
    no_download: NoDownloadOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json: JsonOpt = False,
) -> None:
    """Retrain with an extra "fooling" class, fool the new network, K rounds (the paper's
    defence); prints the median confidence of new fooling images per round."""
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()
    from realsys_cli import console
    from realsys_cli.config import field_names, resolve_config
    from realsys_cli.fool.config import DefenceConfig, FoolConfig

    ours = set(field_names(DefenceConfig))  # --set key=value goes to the config that has key
    defence_set = [s for s in set_ or [] if s.partition("=")[0].strip() in ours]
    fool_set = [s for s in set_ or [] if s not in defence_set]
    fool_cfg = resolve_config(
        FoolConfig, config_file=config, set_items=fool_set,
        options={"method": method, "encoding": encoding,
                 "count_per_class": count if count is not None or config else 100,
                 "confidence": confidence, "seed": seed,
                 "tfds_data_dir": str(tfds_data_dir) if tfds_data_dir else None})
    defence_cfg = resolve_config(DefenceConfig, set_items=defence_set,
                                 options={"rounds": rounds, "retrain_epochs": retrain_epochs})
    workdir, picked = classifier_workdir(workdir)
    out = out or default_out("fool-defence", fool_cfg.method)

    from realsys_cli.fool.defence import run_defence

    result = run_defence(fool_cfg, defence_cfg, workdir, out, announce=picked,
                         progress=console.progress_reporter(json_mode=json))
    if json:
        console.print_result(result, json_mode=True)
        return
    console.print_result({k: v for k, v in result.items() if k != "rounds"}, json_mode=False,
                         title="fool-defence")
    console.print_rows(result["rounds"], json_mode=False, title="rounds", key="rounds")
