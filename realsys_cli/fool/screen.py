"""`realsys fool-screen`: does a GAN's discriminator catch fooling images?

The lecture note puts generative models right after fooling images as a "possible solution":
a model of what real images look like should reject the noise and patterns a classifier is
sure of. Measured here, in three parts:

  1. the images: fooling images of every method (`realsys fool` runs given with --fooled, or
     made here: ascent, evolve direct, evolve cppn, perturb), real test images of the
     classifier's own dataset (D never saw its test split) and, as a check that D still
     separates anything, G's own samples;
  2. the screen: D's realness logit for every image; per group, the AUROC of real (positive)
     against that group (negative), the threshold that keeps `keep_real` (95%) of the real
     images, the share of the group it rejects, and the medians of D's score and of the
     classifier's confidence;
  3. the joint attack: gradient ascent from noise on the target's margin plus
     realness_weight x D's logit (fool/ascent.py with a `Realness`), an image stopping once
     it is both confident and accepted; reported: the share that fools both.

D is the GAN's discriminator in eval mode (fool/discriminator.py says why); the statistics
are in fool/screen_stats.py, the pictures in fool/screen_sheets.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realsys_cli.config import apply_overrides, check_fields, config_to_dict, field_names
from realsys_cli.errors import ConfigError
from realsys_cli.fool import report
from realsys_cli.fool.config import FoolConfig
from realsys_cli.fool.discriminator import (
    FrozenDiscriminator,
    check_matches,
    discriminator_of,
    generated_samples,
    load_gan,
)
from realsys_cli.fool.result import Fooled, passes
from realsys_cli.fool.screen_sheets import save_joint_sheet, save_screened_sheet
from realsys_cli.fool.screen_stats import auroc, rejected_share, threshold_keeping
from realsys_cli.fool.target import FrozenClassifier, fit_images, load_frozen
from realsys_cli.outputs import check_creatable
from realsys_cli.progress import SILENT, Progress

log = logging.getLogger("realsys")

# The groups made when no --fooled run is given: (FoolConfig method, encoding, label).
METHODS = {"ascent": ("ascent", "direct"), "evolve/direct": ("evolve", "direct"),
           "evolve/cppn": ("evolve", "cppn"), "perturb": ("perturb", "direct")}


@dataclasses.dataclass(frozen=True)
class ScreenConfig:
    """fool-screen's own fields; the attacks' (count, confidence, steps, ...) are FoolConfig's."""

    real_images: int = 1000  # real test images scored (the first N of the classifier's test split)
    generated_images: int = 1000  # G's samples scored (the check that D separates anything)
    keep_real: float = 0.95  # the threshold keeps this share of the real images
    methods: tuple[str, ...] = tuple(METHODS)  # made when no --fooled run is given
    joint: bool = True  # run the joint attack (classifier and D together)
    # the joint attack stops an image at D logit >= threshold + joint_margin: its in-step D
    # (jax resize, one noise draw) differs a little from the host scoring that is reported
    joint_margin: float = 0.5
    noise_draws: int = 8  # D trained under instance noise: mean logit over this many draws
    sheet_per_group: int = 10  # screened_sheet.png: the images D scores highest, per group

    def __post_init__(self) -> None:
        for name in ("real_images", "generated_images", "noise_draws", "sheet_per_group"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.joint_margin >= 0:
            raise ValueError(f"joint_margin must be >= 0, got {self.joint_margin}")
        if not 0.0 < self.keep_real < 1.0:
            raise ValueError(f"keep_real must be in (0, 1), got {self.keep_real}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be some of {', '.join(METHODS)}, got "
                             f"{', '.join(self.methods) or 'none'}")
        check_fields(self)


def resolve_configs(*, config_file: str | Path | None, set_items: Sequence[str] | None,
                    screen_options: dict[str, Any], fool_options: dict[str, Any],
                    ) -> tuple[ScreenConfig, FoolConfig]:
    """Both configs from one TOML and one list of --set items: a key goes to the config that
    has it (ScreenConfig first). Order as everywhere: defaults, file, options, --set."""
    from realsys_cli.config import parse_set_options, read_config_file

    ours = set(field_names(ScreenConfig))
    layers = [(read_config_file(config_file) if config_file else {}, str(config_file)),
              (None, "the command line"), (parse_set_options(list(set_items or [])), "--set")]
    screen, fool = ScreenConfig(), FoolConfig()
    for values, source in layers:
        if values is None:  # the explicit options sit between the file and --set
            screen = apply_overrides(screen, _given(screen_options), source=source)
            fool = apply_overrides(fool, _given(fool_options), source=source)
            continue
        screen = apply_overrides(screen, {k: v for k, v in values.items() if k in ours},
                                 source=source)
        fool = apply_overrides(fool, {k: v for k, v in values.items() if k not in ours},
                               source=source)
    return screen, fool


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


# -------------------------------------------------------------------------------- the images
@dataclasses.dataclass
class Group:
    """One set of images to screen, with what the classifier and D make of them."""

    label: str  # "ascent", "evolve/cppn", "real (test)", ...
    images: np.ndarray  # uint8 (N, S, S, C) at the classifier's side
    targets: np.ndarray | None  # (N,) fooling images' target classes; None for real/generated
    method: str = ""  # the FoolConfig method (perturb's success is the argmax)
    source: str = ""  # the run it came from, or "made here"
    confidences: np.ndarray | None = None  # (N,) target prob (fooling) or max prob (others)
    fooled: np.ndarray | None = None  # (N,) bool: counts as a fooling image (fooling groups)
    scores: np.ndarray | None = None  # (N,) D's realness logits

    @property
    def is_fooling(self) -> bool:
        return self.targets is not None


def read_fool_run(path: str | Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(report, images uint8 (N, H, W, C), targets (N,)) of a `realsys fool` run, or a
    ConfigError saying why `path` is not one."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"--fooled {path} does not exist (give a `realsys fool` run)")
    try:
        saved = json.loads((path / "report.json").read_text())
        with np.load(path / "images.npz") as arrays:
            images, targets = arrays["images"], arrays["targets"]
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"--fooled {path} is not a `realsys fool` run (it needs the "
                          "report.json and images.npz that fool writes)") from None
    if not isinstance(saved, dict) or saved.get("method") not in ("ascent", "evolve",
                                                                  "perturb"):
        raise ConfigError(f"--fooled {path} is not a `realsys fool` run (its report.json names "
                          "no fool method)")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or (
            len(targets) != len(images)):
        raise ConfigError(f"--fooled {path}: images.npz does not hold fool's uint8 images")
    if not len(images):
        raise ConfigError(f"--fooled {path} holds no images")
    return saved, images, targets.astype(np.int64)


def fool_run_group(path: str | Path, net: FrozenClassifier) -> Group:
    saved, images, targets = read_fool_run(path)
    if targets.min() < 0 or targets.max() >= net.num_classes:
        raise ConfigError(f"--fooled {path} has target classes the classifier in "
                          f"{net.workdir} does not have")
    made_against = saved.get("checkpoint")
    if made_against and Path(made_against).resolve() != net.workdir.resolve():
        log.warning("--fooled %s was made against %s, not %s: its confidences here are the "
                    "latter's", path, made_against, net.workdir)
    method = saved["method"]
    label = f"evolve/{saved.get('encoding') or 'direct'}" if method == "evolve" else method
    images = fit_images(images, net.image_size, net.in_channels)
    return Group(label, images, targets, method=method, source=str(path))


def made_groups(net: FrozenClassifier, cfg: FoolConfig, screen: ScreenConfig, out: Path, *,
                progress: Progress) -> list[Group]:
    """Fooling images of every method in screen.methods, `cfg.count_per_class` per class,
    each saved like a fool run in out/made/<method>/ (so it can be given as --fooled)."""
    from realsys_cli.fool.run import attack

    targets = list(range(net.num_classes))
    groups = []
    for label in screen.methods:
        method, encoding = METHODS[label]
        mine = dataclasses.replace(cfg, method=method, encoding=encoding, realness_weight=0.0)
        t0 = time.perf_counter()
        fooled = attack(net, mine, targets, progress=progress)
        folder = out / "made" / label.replace("/", "_")
        _save_as_fool_run(folder, fooled, net, mine, time.perf_counter() - t0)
        if fooled.interrupted:
            raise KeyboardInterrupt
        log.info("made %d %s image(s) in %.1f s -> %s", len(fooled), label,
                 time.perf_counter() - t0, folder)
        groups.append(Group(label, fooled.images, fooled.targets, method=method,
                            source=str(folder)))
    return groups


def _save_as_fool_run(folder: Path, fooled: Fooled, net: FrozenClassifier, cfg: FoolConfig,
                      seconds: float) -> None:
    """images.npz, a PNG per image, sheet.png and a report.json as `realsys fool` writes."""
    ok = report.success(fooled, cfg.method, cfg.confidence)
    paths = report.save_images(folder, fooled, net.class_names)
    if len(fooled):
        report.save_sheet(folder / "sheet.png", fooled, net.class_names)
    report.write_report(folder, {
        "method": cfg.method, "encoding": cfg.encoding if cfg.method == "evolve" else None,
        "checkpoint": str(net.workdir), "checkpoint_kind": net.checkpoint,
        "count_per_class": cfg.count_per_class,
        "success_rate": float(np.mean(ok)) if len(ok) else 0.0,
        "success_criterion": report.success_criterion(cfg.method, cfg.confidence),
        "interrupted": fooled.interrupted, "attack_seconds": round(seconds, 2),
        "made_by": "fool-screen",
        "images": report.image_records(fooled, net.class_names, paths, ok),
        "config": config_to_dict(cfg)})


class _NotPerturbing(logging.Filter):
    """perturb's loader says "perturbing real images from ..."; here they are only scored."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("perturbing real images")


def real_group(net: FrozenClassifier, n: int, cfg: FoolConfig) -> Group:
    """The first n images of the classifier's eval split, as perturb reads them (centre-cropped
    to the classifier's input)."""
    from realsys_cli.fool.perturb import load_test_images

    quiet = _NotPerturbing()
    log.addFilter(quiet)
    try:
        images, _ = load_test_images(net, net.dataset, data_dir=cfg.data_dir or net.data_dir,
                                     tfds_dir=cfg.tfds_data_dir or net.tfds_data_dir, limit=n)
    finally:
        log.removeFilter(quiet)
    log.info("scoring %d real images of %s's eval split", len(images), net.dataset)
    return Group("real (test)", images, None, source=f"{net.dataset} eval split")


# ---------------------------------------------------------------------------------- scoring
def judge(group: Group, net: FrozenClassifier, d: FrozenDiscriminator,
          confidence: float) -> Group:
    """Fill in the classifier's confidences, which images count as fooling, and D's scores."""
    probs = net.predict(fit_images(group.images, net.image_size, net.in_channels))  # (N, K)
    if group.is_fooling:
        group.confidences = probs[np.arange(len(probs)), group.targets]
        group.fooled = (probs.argmax(-1) == group.targets if group.method == "perturb"
                        else passes(group.confidences, confidence))
    else:
        group.confidences = probs.max(-1)
    group.scores = d.score(group.images)
    return group


def group_row(group: Group, real: Group, threshold: float) -> dict[str, Any]:
    """One row of the per-group table (the real group: its own share below the threshold)."""
    fooling = group.is_fooling
    accepted = group.scores >= threshold
    return {
        "group": group.label,
        "images": len(group.images),
        "fooled_share": float(np.mean(group.fooled)) if fooling else None,
        "auroc": auroc(real.scores, group.scores) if group is not real else None,
        "rejected_share": rejected_share(group.scores, threshold),
        "median_d_score": float(np.median(group.scores)),
        "median_confidence": float(np.median(group.confidences)),
        "fooled_and_accepted_share": (float(np.mean(group.fooled & accepted)) if fooling
                                      else None),
        "source": group.source,
    }


def pooled(groups: Sequence[Group], label: str) -> Group:
    """Every fooling group as one (the "all fooling images" row)."""
    return Group(label, np.concatenate([g.images for g in groups]),
                 np.concatenate([g.targets for g in groups]), method="pooled",
                 source=f"{len(groups)} group(s)",
                 confidences=np.concatenate([g.confidences for g in groups]),
                 fooled=np.concatenate([g.fooled for g in groups]),
                 scores=np.concatenate([g.scores for g in groups]))


# ---------------------------------------------------------------------------- the joint attack
def joint_attack(net: FrozenClassifier, d: FrozenDiscriminator, cfg: FoolConfig,
                 stop_at: float, *, progress: Progress = SILENT) -> Fooled:
    """Gradient ascent on the target margin + realness_weight x D's logit, from noise,
    cfg.count_per_class images per class; an image stops once confident and D's logit (in
    the step) is >= stop_at."""
    from realsys_cli.fool.ascent import Realness, ascend

    realness = Realness(d.weights, d.realness_fn(net.image_size, net.in_channels), stop_at)
    targets = np.repeat(np.arange(net.num_classes), cfg.count_per_class)
    joint_cfg = dataclasses.replace(cfg, method="ascent", seed=cfg.seed + 7)
    return ascend(net, targets, joint_cfg, progress=progress, realness=realness)


def joint_rows(group: Group, threshold: float,
               class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per class: images, confident, accepted by D, both."""
    rows = []
    accepted = group.scores >= threshold
    for c in np.unique(group.targets):
        mine = group.targets == c
        rows.append({"class": class_names[int(c)], "images": int(mine.sum()),
                     "confident_share": float(np.mean(group.fooled[mine])),
                     "accepted_share": float(np.mean(accepted[mine])),
                     "fooled_both_share": float(np.mean((group.fooled & accepted)[mine])),
                     "median_d_score": float(np.median(group.scores[mine]))})
    return rows


# ------------------------------------------------------------------------------------- run
def run_screen(screen: ScreenConfig, cfg: FoolConfig, classifier: str | Path,
               gan: str | Path, out: str | Path, *, fooled_runs: Sequence[str | Path] = (),
               announce: str | None = None, progress: Progress = SILENT) -> dict[str, Any]:
    """Screen fooling images with the GAN's D, attack both, write report.json; -> the result.

    Every input is checked (the output folder, the classifier, the GAN, each --fooled run)
    before anything is made or written."""
    t0 = time.perf_counter()
    out = check_creatable(out, option="--workdir", folder=True)
    _refuse_a_run(out)
    net = load_frozen(classifier)
    trained_gan = load_gan(gan)
    d = discriminator_of(trained_gan, screen.noise_draws)
    check_matches(d, net)
    given = [fool_run_group(p, net) for p in fooled_runs]
    _distinct_labels(given)
    if announce:
        log.info("%s", announce)
    log.info("screening with the discriminator of %s (%s checkpoint, step %d, %.2f epochs%s)"
             " -> %s", gan, d.checkpoint, d.step, d.epochs,
             f", scored under its instance noise {d.noise_std:g}, mean of {d.noise_draws}"
             if d.noise_std > 0 else "", out)

    # ------------------------------------------------------------------------- the images
    fooling = given or made_groups(net, cfg, screen, out, progress=progress)
    real = real_group(net, screen.real_images, cfg)
    generated = Group("generated (G)", generated_samples(trained_gan, screen.generated_images,
                                                         cfg.seed), None,
                      source=f"{screen.generated_images} samples of {gan}")
    for g in [real, generated, *fooling]:
        judge(g, net, d, cfg.confidence)
    threshold = threshold_keeping(real.scores, screen.keep_real)
    everything = pooled(fooling, "all fooling images")
    rows = [group_row(g, real, threshold) for g in [real, generated, *fooling, everything]]

    # --------------------------------------------------------------------- the joint attack
    joint = None
    if screen.joint:
        t_joint = time.perf_counter()
        made = joint_attack(net, d, cfg, threshold + screen.joint_margin, progress=progress)
        joint = judge(Group(f"joint (realness_weight {cfg.realness_weight:g})", made.images,
                            made.targets, method="ascent", source=str(out / "joint")),
                      net, d, cfg.confidence)
        joint_seconds = time.perf_counter() - t_joint
        rows.append(group_row(joint, real, threshold))

    # ------------------------------------------------------------------ pictures and report
    out.mkdir(parents=True, exist_ok=True)
    sheet_groups = [*fooling, *([joint] if joint else []), real]
    save_screened_sheet(out / "screened_sheet.png", sheet_groups, net.class_names, threshold,
                        screen.sheet_per_group)
    result = _summary(screen, cfg, net, d, real, generated, everything, threshold)
    if joint is not None:
        _save_as_fool_run(out / "joint", made, net, dataclasses.replace(cfg, method="ascent"),
                          joint_seconds)
        save_joint_sheet(out / "joint_sheet.png", joint, net.class_names, threshold)
        result.update(_joint_summary(joint, threshold, cfg, out))
        result["joint_per_class"] = joint_rows(joint, threshold, net.class_names)
    save_scores(out / "scores.npz", [real, generated, *fooling, *([joint] if joint else [])])
    result["screened_sheet"] = str(out / "screened_sheet.png")
    result["scores"] = str(out / "scores.npz")
    result["workdir"] = str(out)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["groups"] = rows
    result["config"] = config_to_dict(screen)
    result["fool_config"] = config_to_dict(cfg)
    report.write_report(out, result)
    if joint is not None and made.interrupted:
        raise KeyboardInterrupt
    return result


def save_scores(path: Path, groups: Sequence[Group]) -> None:
    """Every image's numbers, so that any row of the report can be recomputed: for group i
    (its label in `labels`[i]), `d_<i>` D's scores, `confidence_<i>` the classifier's and,
    for fooling groups, `fooled_<i>` and `targets_<i>`."""
    arrays: dict[str, np.ndarray] = {"labels": np.asarray([g.label for g in groups])}
    for i, g in enumerate(groups):
        arrays[f"d_{i}"], arrays[f"confidence_{i}"] = g.scores, g.confidences
        if g.is_fooling:
            arrays[f"fooled_{i}"], arrays[f"targets_{i}"] = g.fooled, g.targets
    np.savez_compressed(path, **arrays)


def _refuse_a_run(out: Path) -> None:
    """--workdir must not be a run that is read (the GAN's, or a classifier's)."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(saved, dict) and ({"model", "dataset"} <= saved.keys()
                                    or "latent_dim" in saved):
        raise ConfigError(f"{out} holds a training run; --workdir/-w is the run fool-screen "
                          "writes: give it another folder")


def _distinct_labels(groups: list[Group]) -> None:
    """Two --fooled runs of one method: tell them apart by their folder's name."""
    seen: dict[str, int] = {}
    for g in groups:
        seen[g.label] = seen.get(g.label, 0) + 1
    for g in groups:
        if seen[g.label] > 1:
            g.label = f"{g.label} ({Path(g.source).name})"


def _summary(screen: ScreenConfig, cfg: FoolConfig, net: FrozenClassifier,
             d: FrozenDiscriminator, real: Group, generated: Group, everything: Group,
             threshold: float) -> dict[str, Any]:
    return {
        "classifier": str(net.workdir),
        "gan": str(d.workdir),
        "gan_checkpoint": f"{d.checkpoint} (step {d.step}, {d.epochs:g} epochs)",
        "gan_dataset": d.dataset,
        "d_image_size": d.image_size,
        "d_mode": "eval (BatchNorm running averages)",
        "d_noise": (f"mean logit over {d.noise_draws} draws of its instance noise "
                    f"{d.noise_std:g}" if d.noise_std > 0 else "none"),
        "real_images": len(real.images),
        "keep_real": screen.keep_real,
        "threshold": threshold,
        "real_kept_share": float(np.mean(real.scores >= threshold)),
        "real_median_d_score": float(np.median(real.scores)),
        "generated_auroc": auroc(real.scores, generated.scores),
        "generated_rejected_share": rejected_share(generated.scores, threshold),
        "fooling_images": len(everything.images),
        "fooling_auroc": auroc(real.scores, everything.scores),
        "fooling_rejected_share": rejected_share(everything.scores, threshold),
        "fooled_and_accepted_share": float(np.mean(everything.fooled
                                                   & (everything.scores >= threshold))),
        "confidence": cfg.confidence,
    }


def _joint_summary(joint: Group, threshold: float, cfg: FoolConfig,
                   out: Path) -> dict[str, Any]:
    both = joint.fooled & (joint.scores >= threshold)
    return {
        "joint_realness_weight": cfg.realness_weight,
        "joint_images": len(joint.images),
        "joint_confident_share": float(np.mean(joint.fooled)),
        "joint_accepted_share": float(np.mean(joint.scores >= threshold)),
        "joint_fooled_both_share": float(np.mean(both)),
        "joint_fooled_both": int(both.sum()),
        "joint_median_d_score": float(np.median(joint.scores)),
        "joint_median_confidence": float(np.median(joint.confidences)),
        "joint_sheet": str(out / "joint_sheet.png"),
        "joint_images_npz": str(out / "joint" / "images.npz"),
    }

