"""fool-screen's pictures: the screened sheet (a row per group) and the joint attack's sheet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realsys_cli.fool import report

if TYPE_CHECKING:
    from realsys_cli.fool.screen import Group


def caption(name: str, confidence: float, score: float, both: bool) -> str:
    """'3 0.9999 D+1.2': class, the classifier's confidence, D's score; '*' in front when
    the image fools both (confident and accepted)."""
    return f"{'*' if both else ''}{name} {report.shown_confidence(confidence)} D{score:+.2f}"


def captions(group: Group, order: np.ndarray, class_names: Sequence[str],
              threshold: float) -> list[str]:
    out = []
    for i in order:
        name = class_names[int(group.targets[i])] if group.is_fooling else "real"
        both = group.is_fooling and bool(group.fooled[i]) and group.scores[i] >= threshold
        out.append(caption(name, float(group.confidences[i]), float(group.scores[i]), both))
    return out


def save_screened_sheet(path: Path, groups: Sequence[Group], class_names: Sequence[str],
                        threshold: float, per_group: int) -> None:
    """A row per group: its `per_group` images D scores highest (the ones most likely to
    pass), under a title line; captions: target, classifier confidence, D's score ('*': the
    image fools both)."""
    from PIL import Image, ImageDraw

    from realsys_cli import pictures

    rows = []
    for g in groups:
        order = np.argsort(-g.scores, kind="stable")[:per_group]
        row = pictures.grid(g.images[order], captions(g, order, class_names, threshold),
                            columns=per_group, min_side=report.MIN_SIDE_PX)
        title = (f"{g.label}: the {len(order)} of {len(g.images)} D scores highest; "
                 f"{np.mean(g.scores >= threshold):.0%} pass D's threshold {threshold:+.3g}")
        rows.append((title, row))
    width = max(r.width for _, r in rows)
    height = sum(r.height + 16 for _, r in rows)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw, y = ImageDraw.Draw(sheet), 0
    for title, row in rows:
        draw.text((4, y + 2), title, fill=(0, 0, 0), font=pictures._font())
        sheet.paste(row, (0, y + 16))
        y += row.height + 16
    sheet.save(path)


def save_joint_sheet(path: Path, group: Group, class_names: Sequence[str],
                     threshold: float) -> None:
    """Every joint image (or the first report.SHEET_MAX_IMAGES, classes round-robin)."""
    from realsys_cli import pictures

    order = report.sheet_order(group.targets)
    pictures.save_grid(path, group.images[order], captions(group, order, class_names,
                                                            threshold),
                       columns=min(len(order), 10), min_side=report.MIN_SIDE_PX)
