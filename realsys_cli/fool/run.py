"""`realsys fool`: run(cfg, classifier workdir, out dir) -> the result dict (also report.json).

Read top to bottom: the network under attack / the targets / the attack / the transfer check /
pictures and report. A Ctrl-C during the attack keeps what was made so far: the images, sheet
and report are written (marked "interrupted") before KeyboardInterrupt goes up to the CLI.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from realsys_cli.config import config_to_dict
from realsys_cli.errors import CheckpointError
from realsys_cli.fool import report
from realsys_cli.fool.config import FoolConfig
from realsys_cli.fool.result import Fooled, passes
from realsys_cli.fool.target import FrozenClassifier, fit_images, load_frozen, resolve_targets
from realsys_cli.outputs import check_creatable
from realsys_cli.progress import SILENT, Progress

log = logging.getLogger("realsys")

PERTURB_POOL = 4096  # test images read for perturb (sources are drawn from these)


def attack(net: FrozenClassifier, cfg: FoolConfig, targets: list[int], *,
           progress: Progress = SILENT) -> Fooled:
    """Make `cfg.count_per_class` images for each target class with `cfg.method`."""
    per_image = np.repeat(np.asarray(targets, np.int64), cfg.count_per_class)
    if cfg.method == "ascent":
        from realsys_cli.fool.ascent import ascend

        return ascend(net, per_image, cfg, progress=progress)
    if cfg.method == "evolve":
        from realsys_cli.fool.evolve import evolve

        fooled = evolve(net, targets, cfg, progress=progress)
        order = np.argsort(fooled.targets, kind="stable")  # grouped by class like the others
        return Fooled(*(getattr(fooled, f)[order] for f in ("images", "targets", "confidences",
                                                             "predicted", "steps", "reached")),
                      unit=fooled.unit, interrupted=fooled.interrupted)
    from realsys_cli.fool.perturb import load_test_images, perturb

    images, labels = load_test_images(
        net, net.dataset, data_dir=cfg.data_dir or net.data_dir,
        tfds_dir=cfg.tfds_data_dir or net.tfds_data_dir, limit=PERTURB_POOL)
    return perturb(net, per_image, images, labels, cfg, progress=progress)


def transfer(fooled: Fooled, net: FrozenClassifier, other: FrozenClassifier,
             confidence: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The confidence a second, independently trained classifier gives each image's target."""
    missing = [n for n in {net.class_names[int(t)] for t in fooled.targets}
               if n not in other.class_names]
    if missing:
        raise CheckpointError(
            f"{other.workdir} has no class {missing[0]!r} (its classes: "
            f"{', '.join(other.class_names[:10])}); --also-check needs the same classes")
    images = fit_images(fooled.images, other.image_size, other.in_channels)
    probs = other.predict(images)  # (N, K2)
    columns = np.asarray([other.class_names.index(net.class_names[int(t)])
                          for t in fooled.targets])
    p = probs[np.arange(len(columns)), columns]
    labels = [other.class_names[int(i)] for i in probs.argmax(-1)]
    per_image = [{"confidence": round(float(c), 6), "label": lab} for c, lab in zip(p, labels)]
    summary = {
        "workdir": str(other.workdir),
        "median_confidence": float(np.median(p)) if len(p) else None,
        "argmax_rate": float(np.mean(probs.argmax(-1) == columns)) if len(p) else None,
        "confident_rate": float(np.mean(passes(p, confidence))) if len(p) else None,
    }
    return per_image, summary


def run(cfg: FoolConfig, workdir: str | Path, out: str | Path, *,
        also_check: str | Path | None = None, announce: str | None = None,
        progress: Progress = SILENT) -> dict[str, Any]:
    """`announce`: a line to log once the input is checked (the CLI names the run it chose)."""
    t0 = time.perf_counter()
    out = check_creatable(out, option="--workdir", folder=True)  # not after the whole attack
    # ------------------------------------------------------------------- the network and targets
    net = load_frozen(workdir)
    other = load_frozen(also_check) if also_check is not None else None
    targets = resolve_targets(cfg.target_classes, net.class_names,
                              all_classes=not cfg.target_classes)
    if announce:
        log.info("%s", announce)
    log.info("fooling %s (%s checkpoint) with %s: %d class(es) x %d -> %s", workdir,
             net.checkpoint, cfg.method + (f"/{cfg.encoding}" if cfg.method == "evolve" else ""),
             len(targets), cfg.count_per_class, out)

    # ------------------------------------------------------------------------------ the attack
    t_attack = time.perf_counter()
    fooled = attack(net, cfg, targets, progress=progress)
    attack_seconds = time.perf_counter() - t_attack

    # ------------------------------------------------------------------- pictures and report
    ok = report.success(fooled, cfg.method, cfg.confidence)
    paths = report.save_images(out, fooled, net.class_names)
    if len(fooled):
        report.save_sheet(out / "sheet.png", fooled, net.class_names)
    images = report.image_records(fooled, net.class_names, paths, ok)
    result: dict[str, Any] = {
        "method": cfg.method,
        "encoding": cfg.encoding if cfg.method == "evolve" else None,
        "checkpoint": str(workdir),
        "checkpoint_kind": net.checkpoint,
        "classes": len(targets),
        "count_per_class": cfg.count_per_class,
        "success_rate": float(np.mean(ok)) if len(ok) else 0.0,
        "success_criterion": report.success_criterion(cfg.method, cfg.confidence),
        "median_confidence": float(np.median(fooled.confidences)) if len(fooled) else None,
        "min_confidence": float(np.min(fooled.confidences)) if len(fooled) else None,
        "unit": fooled.unit,
        "interrupted": fooled.interrupted,
        "attack_seconds": round(attack_seconds, 2),
        "out": str(out),
        "sheet": str(out / "sheet.png"),
    }
    if other is not None:
        per_image, summary = transfer(fooled, net, other, cfg.confidence)
        for record, check in zip(images, per_image):
            record["also_check"] = check
        result["also_check"] = summary
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["images"] = images
    result["config"] = config_to_dict(cfg)
    report.write_report(out, result)
    if fooled.interrupted:
        log.warning("interrupted: %d image(s) saved to %s", len(fooled), out)
        raise KeyboardInterrupt
    return result

