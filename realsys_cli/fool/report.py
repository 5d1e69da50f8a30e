"""What `realsys fool` leaves behind: a PNG per image, the contact sheet and report.json.

Small images are upscaled with nearest-neighbour so a person can see every pixel the network
saw. The exact uint8 pixels (the PNGs are upscaled) are also kept in images.npz, so an image can
be scored again by any classifier: `np.load(out / "images.npz")["images"]`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from realsys_cli import pictures
from realsys_cli.fool.config import THRESHOLDS
from realsys_cli.fool.result import NEVER, Fooled, passes

MIN_SIDE_PX = 112  # every saved image is at least this wide
SHEET_MAX_IMAGES = 100  # the contact sheet shows at most this many (the first per class first)


def success(fooled: Fooled, method: str, confidence: float) -> np.ndarray:
    """(N,) bool. perturb: the target is the argmax (targeted success); else p >= confidence."""
    if method == "perturb":
        return fooled.predicted == fooled.targets
    return passes(fooled.confidences, confidence)


def success_criterion(method: str, confidence: float) -> str:
    return ("the target is the argmax" if method == "perturb"
            else f"target confidence >= {confidence:g}")


def image_name(i: int, target: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in target)[:40]
    return f"{i:04d}_{safe}.png"


def save_images(out: Path, fooled: Fooled, class_names: Sequence[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, target) in enumerate(zip(fooled.images, fooled.targets)):
        path = out / image_name(i, class_names[int(target)])
        big = pictures.upscale(image, MIN_SIDE_PX)
        Image.fromarray(big[..., 0] if big.shape[-1] == 1 else big).save(path)
        paths.append(path)
    arrays = {"images": fooled.images, "targets": fooled.targets}
    if fooled.originals is not None:
        arrays.update(originals=fooled.originals, sources=fooled.sources)
    np.savez_compressed(out / "images.npz", **arrays)
    return paths


def sheet_order(targets: np.ndarray, limit: int = SHEET_MAX_IMAGES) -> np.ndarray:
    """Indices for the sheet: round-robin over the classes, so every class shows up first."""
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets.tolist()):
        by_class.setdefault(t, []).append(i)
    order: list[int] = []
    rank = 0
    while len(order) < min(limit, len(targets)):
        row = [v[rank] for _, v in sorted(by_class.items()) if rank < len(v)]
        order.extend(row)
        rank += 1
    return np.asarray(order[:limit])


def shown_confidence(p: float) -> str:
    """Rounded DOWN to 4 decimals, so 0.99996 shows as 0.9999, never as 1.0000."""
    return f"{np.floor(p * 1e4) / 1e4:.4f}"


def caption(fooled: Fooled, i: int, class_names: Sequence[str]) -> str:
    name = class_names[int(fooled.targets[i])]
    text = f"{name} {shown_confidence(float(fooled.confidences[i]))}"
    if fooled.sources is not None:  # perturb: where it came from
        text = f"{class_names[int(fooled.sources[i])]}>{text}"
    return text


def save_sheet(path: Path, fooled: Fooled, class_names: Sequence[str], *,
               columns: int | None = None) -> None:
    """Every image (or the first SHEET_MAX_IMAGES) with its target and confidence below it."""
    order = sheet_order(fooled.targets)
    images = fooled.images[order]
    labels = [caption(fooled, int(i), class_names) for i in order]
    if fooled.originals is not None:  # perturb: the real image above its perturbed copy
        n = len(order)
        columns = columns or min(n, 10)
        rows = []
        for start in range(0, n, columns):
            block = slice(start, start + columns)
            rows += [(fooled.originals[order][block],
                      [f"real {class_names[int(s)]}" for s in fooled.sources[order][block]]),
                     (images[block], labels[block])]
        # pad every row to `columns` so originals and their perturbations line up
        images, labels = _pad_rows(rows, columns)
    pictures.save_grid(path, images, labels, columns=columns or min(len(images), 10),
                       min_side=MIN_SIDE_PX)


def _pad_rows(rows: list[tuple[np.ndarray, list[str]]], columns: int
              ) -> tuple[np.ndarray, list[str]]:
    images, labels = [], []
    for block, texts in rows:
        missing = columns - len(block)
        if missing:
            block = np.concatenate([block, np.full((missing, *block.shape[1:]), 255, np.uint8)])
            texts = list(texts) + [""] * missing
        images.append(block)
        labels += texts
    return np.concatenate(images), labels


def reached_dict(row: np.ndarray) -> dict[str, int | None]:
    return {name: (None if int(v) == NEVER else int(v)) for name, v in zip(THRESHOLDS, row)}


def image_records(fooled: Fooled, class_names: Sequence[str], paths: Sequence[Path],
                  ok: np.ndarray) -> list[dict[str, Any]]:
    records = []
    for i in range(len(fooled)):
        t = int(fooled.targets[i])
        record: dict[str, Any] = {
            "target_class": t,
            "target_name": class_names[t],
            "label": class_names[int(fooled.predicted[i])],  # what the classifier says it is
            "confidence": round(float(fooled.confidences[i]), 6),
            "steps": int(fooled.steps[i]),
            "success": bool(ok[i]),
            "path": str(paths[i]) if i < len(paths) else None,
            "reached": reached_dict(fooled.reached[i]),
        }
        if fooled.sources is not None:
            record["source_class"] = int(fooled.sources[i])
            record["source_name"] = class_names[int(fooled.sources[i])]
        records.append(record)
    return records


def per_class_rows(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per target class: count, successes, median confidence, median milestones."""
    rows = []
    for t in sorted({r["target_class"] for r in images}):
        mine = [r for r in images if r["target_class"] == t]
        median = float(np.median([r["confidence"] for r in mine]))
        row: dict[str, Any] = {"class": mine[0]["target_name"], "images": len(mine),
                               "success": sum(r["success"] for r in mine),
                               "median confidence": shown_confidence(median)}
        for name in THRESHOLDS:  # the median step, or how many images ever got there
            got = [r["reached"][name] for r in mine if r["reached"][name] is not None]
            row[f"to {name}"] = (int(np.median(got)) if len(got) == len(mine)
                                 else f"{len(got)}/{len(mine)} reached")
        rows.append(row)
    return rows


def write_report(out: Path, result: dict[str, Any]) -> Path:
    path = out / "report.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
