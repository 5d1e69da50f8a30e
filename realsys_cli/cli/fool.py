"""`realsys fool` (fooling images) and `realsys fool-defence` (the paper's retraining defence).

Both read a train-classifier run (--classifier/-C) and write their own (--workdir/-w). Until this
release --workdir/-w named the classifier and --out/-o the folder written: those spellings still
work for one release, with a warning.
"""

from __future__ import annotations

import json as json_lib
from pathlib import Path
from typing import Annotated

import typer

from realsys_cli.cli import options as opt

ClassifierOpt = Annotated[Path | None, typer.Option(
    "--classifier", "-C", help="The train-classifier run to fool (default: the most recent one "
    "in runs/).")]
OldOutOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", hidden=True, help="Deprecated spelling of --workdir.")]
MethodOpt = Annotated[str | None, typer.Option(
    "--method", help="ascent (gradient ascent on the logit margin, default) | evolve "
    "(MAP-Elites) | perturb (targeted PGD on real test images).")]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", help="evolve: direct (a value per pixel) | cppn (a pattern-producing net).")]
ConfidenceOpt = Annotated[float | None, typer.Option(
    "--confidence", help="Stop an image at this softmax confidence (default 0.9999).")]


def _steps_renamed(value: int | None) -> int | None:
    if value is not None:
        raise opt.UsageError("fool's --steps is now --attack-steps (--steps is a trainer's "
                             f"optimizer steps): --attack-steps {value}")
    return value


OldStepsOpt = Annotated[int | None, typer.Option(
    "--steps", hidden=True, callback=_steps_renamed, help="Renamed --attack-steps.")]



def _holds_classifier(path: Path) -> bool:
    try:
        saved = json_lib.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and {"model", "dataset"} <= saved.keys()


def runs_read_and_written(classifier: Path | None, workdir: Path | None, old_out: Path | None,
                          command: str) -> tuple[Path | None, Path | None]:
    """(--classifier, --workdir), also from the spellings of the last release: `-w CLASSIFIER`
    (recognised by the run it holds) and `--out DIR`."""
    if classifier is None and workdir is not None and (old_out is not None
                                                       or _holds_classifier(workdir)):
        from realsys_cli import console

        console.warning(
            f"{command} --workdir/-w is now the run {command} writes; reading {workdir} as "
            f"--classifier/-C {workdir} (the old meaning goes away in the next release)")
        classifier, workdir = workdir, None
    workdir = opt.renamed(workdir, old_out, new="--workdir/-w", old="--out/-o")
    if workdir is not None and _holds_classifier(workdir):
        from realsys_cli.errors import ConfigError

        raise ConfigError(f"{workdir} holds a train-classifier run; --workdir/-w is the run "
                          f"{command} writes: give it another folder")
    return classifier, workdir


def classifier_run(classifier: Path | None) -> tuple[Path, str | None]:
    """--classifier, or the most recent classifier run and a line naming it for stderr (logged
    once the run has checked its input, so that bad input stays a one-line error)."""
    from realsys_cli.config import default_runs_dir
    from realsys_cli.fool.target import latest_classifier_run

    if classifier is not None:
        return classifier, None
    found = latest_classifier_run(default_runs_dir())
    return found, f"classifier: {found} (the most recent run)"


@opt.handle_errors
def fool(
    *,
    classifier: ClassifierOpt = None,
    method: MethodOpt = None,
    encoding: EncodingOpt = None,
    target_class: Annotated[list[str] | None, typer.Option(
        "--target-class", "-t", help="A class by index or name (9, parachute); repeatable.")]
    = None,
    all_classes: Annotated[bool, typer.Option(
        "--all-classes", help="Every class (the default when no --target-class is given).")]
    = False,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Images per class.")] = None,
    attack_steps: Annotated[int | None, typer.Option(
        "--attack-steps", min=1, help="ascent: at most this many steps (300); perturb: PGD "
        "steps (40; 1 = FGSM).")] = None,
    generations: Annotated[int | None, typer.Option(
        "--generations", min=1, help="evolve: generations (200).")] = None,
    confidence: ConfidenceOpt = None,
    epsilon: Annotated[float | None, typer.Option(
        "--epsilon", help="perturb: L-infinity radius in [0, 1] pixel units (0.3).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="perturb: take the real images from this folder "
        "ROOT/{train,val,test}/<class>/ (default: the classifier's own data).")] = None,
    also_check: Annotated[Path | None, typer.Option(
        "--also-check", help="A second classifier run: the confidence it gives each image.")]
    = None,
    seed: opt.SeedOpt = None,
    tfds_data_dir: opt.TfdsDirOpt = None,
    no_download: opt.NoDownloadOpt = False,
    config: opt.ConfigOpt = None,
    set_: opt.SetOpt = None,
    print_config: opt.PrintConfigOpt = False,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", "-w", help="The folder to write the images and report.json into "
        "(default: runs/fool-<method>-<time>).")] = None,
    json: opt.JsonOpt = False,
    out: OldOutOpt = None,
    steps: OldStepsOpt = None,
) -> None:
    """Images the classifier is sure of and a person cannot recognise (Nguyen et al. 2015)."""
    from realsys_cli import console
    from realsys_cli.config import resolve_config
    from realsys_cli.errors import ConfigError
    from realsys_cli.fool.config import FoolConfig

    if all_classes and target_class:
        raise ConfigError("give --target-class or --all-classes, not both")
    classifier, workdir = runs_read_and_written(classifier, workdir, out, "fool")
    method_now = method or "ascent"
    options = {"method": method, "encoding": encoding, "count_per_class": count,
               "generations": generations, "confidence": confidence, "epsilon": epsilon,
               "seed": seed, "data_dir": opt.path_or_none(data_dir),
               "tfds_data_dir": opt.path_or_none(tfds_data_dir),
               "target_classes": tuple(target_class) if target_class else None}
    if attack_steps is not None:
        options["pgd_steps" if method_now == "perturb" else "ascent_steps"] = attack_steps
    cfg = resolve_config(FoolConfig, config_file=config, set_items=set_, options=options)
    if cfg.realness_weight > 0:  # refused here, before the classifier is even loaded
        raise ConfigError("realness_weight is for `realsys fool-screen`'s joint attack, "
                          "which has a discriminator to ascend; leave it at 0 for fool")
    if print_config:
        from realsys_cli.cli.printing import print_config as print_resolved

        print_resolved(cfg, command="fool", json_mode=json)
        return
    from realsys_cli import xla_flags

    # Ascent and perturbation differentiate through the network; evolution only runs it.
    xla_flags.use_inference_flags() if cfg.method == "evolve" else xla_flags.use_training_flags()
    classifier, picked = classifier_run(classifier)
    workdir = workdir or opt.default_workdir("fool", cfg.method)

    from realsys_cli.fool.report import per_class_rows
    from realsys_cli.fool.run import run

    result = run(cfg, classifier, workdir, also_check=also_check, announce=picked,
                 progress=console.progress_reporter(json_mode=json))
    if json:
        console.print_result(result, json_mode=True)
        return
    summary = {k: v for k, v in result.items() if k not in ("images", "config")}
    console.print_result(summary, json_mode=False, title=f"fool ({cfg.method})")
    console.print_rows(per_class_rows(result["images"]), json_mode=False,
                       title=f"per class (median {result['unit']} to reach each threshold)",
                       key="classes")


@opt.handle_errors
def fool_defence(
    *,
    classifier: ClassifierOpt = None,
    rounds: Annotated[int | None, typer.Option(
        "--rounds", min=1, help="Retrain-and-fool rounds after the original (3).")] = None,
    retrain_epochs: Annotated[int | None, typer.Option(
        "--retrain-epochs", min=1, help="Epochs of each retraining (1).")] = None,
    method: MethodOpt = None,
    encoding: EncodingOpt = None,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Fooling images per class and round (100).")] = None,
    confidence: ConfidenceOpt = None,
    seed: opt.SeedOpt = None,
    tfds_data_dir: opt.TfdsDirOpt = None,
    no_download: opt.NoDownloadOpt = False,
    config: opt.ConfigOpt = None,
    set_: opt.SetOpt = None,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", "-w", help="The run to write; an existing one is resumed (default: "
        "runs/fool-defence-<method>-<time>).")] = None,
    json: opt.JsonOpt = False,
    out: OldOutOpt = None,
) -> None:
    """Retrain with an extra "fooling" class, fool the new network, K rounds (the paper's
    defence); prints the median confidence of new fooling images per round."""
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()
    from realsys_cli import console
    from realsys_cli.config import field_names, resolve_config
    from realsys_cli.fool.config import DefenceConfig, FoolConfig

    classifier, workdir = runs_read_and_written(classifier, workdir, out, "fool-defence")
    ours = set(field_names(DefenceConfig))  # --set key=value goes to the config that has key
    defence_set = [s for s in set_ or [] if s.partition("=")[0].strip() in ours]
    fool_set = [s for s in set_ or [] if s not in defence_set]
    fool_cfg = resolve_config(
        FoolConfig, config_file=config, set_items=fool_set,
        options={"method": method, "encoding": encoding,
                 "count_per_class": count if count is not None or config else 100,
                 "confidence": confidence, "seed": seed,
                 "tfds_data_dir": opt.path_or_none(tfds_data_dir)})
    defence_cfg = resolve_config(DefenceConfig, set_items=defence_set,
                                 options={"rounds": rounds, "retrain_epochs": retrain_epochs})
    classifier, picked = classifier_run(classifier)
    workdir = workdir or opt.default_workdir("fool-defence", fool_cfg.method)

    from realsys_cli.fool.defence import run_defence

    result = run_defence(fool_cfg, defence_cfg, classifier, workdir, announce=picked,
                         progress=console.progress_reporter(json_mode=json))
    if json:
        console.print_result(result, json_mode=True)
        return
    console.print_result({k: v for k, v in result.items() if k != "rounds"}, json_mode=False,
                         title="fool-defence")
    console.print_rows(result["rounds"], json_mode=False, title="rounds", key="rounds")


SCREEN_COLUMNS = {  # the per-group table's headers (report.json keeps the long names)
    "group": "group", "images": "n", "fooled_share": "fooled", "auroc": "AUROC",
    "rejected_share": "rejected", "median_d_score": "median D",
    "median_confidence": "median conf", "fooled_and_accepted_share": "fooled+accepted"}


def _refuse_negative(value: float | None) -> float | None:
    if value is not None and not value >= 0:  # NaN too
        raise opt.UsageError(f"--realness-weight must be 0 or more, got {value}")
    return value


@opt.handle_errors
def fool_screen(
    *,
    gan: Annotated[Path | None, typer.Option(
        "--gan", help="The train-gan run whose discriminator screens the images (required).")]
    = None,
    classifier: ClassifierOpt = None,
    fooled: Annotated[list[Path] | None, typer.Option(
        "--fooled", metavar="<path>", help="A `realsys fool` run whose images.npz to screen; repeatable "
        "(default: make them here with every method: ascent, evolve direct and cppn, "
        "perturb).")] = None,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Images per class of each method made here, and of the "
        "joint attack (3).")] = None,
    confidence: ConfidenceOpt = None,
    realness_weight: Annotated[float | None, typer.Option(
        "--realness-weight", callback=_refuse_negative, help="The joint attack ascends the "
        "target margin + this x D's realness logit (1).")] = None,
    seed: opt.SeedOpt = None,
    tfds_data_dir: opt.TfdsDirOpt = None,
    no_download: opt.NoDownloadOpt = False,
    config: opt.ConfigOpt = None,
    set_: opt.SetOpt = None,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", "-w", help="The folder to write the sheets, images and report.json into "
        "(default: runs/fool-screen-<time>).")] = None,
    json: opt.JsonOpt = False,
) -> None:
    """Does a GAN's discriminator catch fooling images? D's AUROC of real test images against
    the fooling images of every method, the share it rejects at the threshold that keeps 95%
    of real images, and a joint attack on the classifier and D together."""
    from realsys_cli.xla_flags import use_training_flags

    use_training_flags()  # ascent, perturb and the joint attack differentiate through the nets
    from realsys_cli import console
    from realsys_cli.fool.screen import resolve_configs, run_screen

    gan = opt.required(gan, option="--gan", what="the train-gan run whose discriminator "
                       "screens the images")
    defaults = config is None  # fool-screen's small defaults, unless a recipe says otherwise
    screen_cfg, fool_cfg = resolve_configs(
        config_file=config, set_items=set_, screen_options={},
        fool_options={"count_per_class": count if count is not None or not defaults else 3,
                      "generations": None if not defaults else 100,
                      "confidence": confidence, "seed": seed,
                      "realness_weight": (realness_weight if realness_weight is not None
                                          or not defaults else 1.0),
                      "tfds_data_dir": opt.path_or_none(tfds_data_dir)})
    classifier, picked = classifier_run(classifier)
    if workdir is None:
        import time

        from realsys_cli.config import default_runs_dir

        workdir = default_runs_dir() / f"fool-screen-{time.strftime('%Y%m%d-%H%M%S')}"

    result = run_screen(screen_cfg, fool_cfg, classifier, gan, workdir,
                        fooled_runs=list(fooled or []), announce=picked,
                        progress=console.progress_reporter(json_mode=json))
    print_screen(result, json_mode=json)


def print_screen(result: dict, *, json_mode: bool) -> None:
    """fool-screen's result: one JSON object, or the summary and the per-group and per-class
    tables (the same numbers, fewer columns)."""
    from realsys_cli import console

    if json_mode:
        console.print_result(result, json_mode=True)
        return
    summary = {k: v for k, v in result.items()
               if k not in ("groups", "joint_per_class", "config", "fool_config")}
    console.print_result(summary, json_mode=False, title="fool-screen")
    console.print_rows([{short: row[key] for key, short in SCREEN_COLUMNS.items()}
                        for row in result["groups"]], json_mode=False,
                       title=f"per group (D's threshold {result['threshold']:+.3f} keeps "
                       f"{result['real_kept_share']:.1%} of real images)", key="groups")
    if "joint_per_class" in result:
        console.print_rows(
            [{"class": r["class"], "n": r["images"], "confident": r["confident_share"],
              "accepted": r["accepted_share"], "both": r["fooled_both_share"],
              "median D": r["median_d_score"]} for r in result["joint_per_class"]],
            json_mode=False, title="joint attack, per class", key="joint_per_class")
