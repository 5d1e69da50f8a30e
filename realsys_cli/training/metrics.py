"""Per-step and per-epoch metrics: `workdir/metrics.jsonl` and the curves people look at."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("realsys")


class MetricsLog:
    """Appends one JSON object per line; a resumed run appends to the same file."""

    def __init__(self, workdir: str | Path, *, enabled: bool = True) -> None:
        self.path = Path(workdir) / "metrics.jsonl"
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _plain(v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every record; a damaged line (a kill mid-write leaves half of one) is skipped with a
        warning, never fatal."""
        if not self.path.exists():
            return []
        records, damaged = [], 0
        for line in self.path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                damaged += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                damaged += 1
        if damaged:
            log.warning("%s: skipped %d damaged line(s)", self.path, damaged)
        return records

    def truncate_after(self, step: int) -> None:
        """On resume, forget what was logged after the checkpoint we restart from (and any
        damaged line); written to a temporary file and renamed over, never half-written."""
        if self.enabled and self.path.exists():
            kept = [r for r in self.read() if r.get("step", 0) <= step]
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with tmp.open("w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in kept))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def plot_curves(records: list[dict[str, Any]], out: str | Path, *,
                train_keys: tuple[str, ...], eval_keys: tuple[str, ...]) -> None:
    """One panel per metric family: train (per log step) and eval (per epoch) against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({k.removeprefix("eval_") for k in train_keys + eval_keys})
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.6), squeeze=False)
    for ax, family in zip(axes[0], families):
        for key, style in ((family, "-"), (f"eval_{family}", "o-")):
            points = [(r["epoch"], r[key]) for r in records
                      if key in r and isinstance(r[key], (int, float))]
            if points and (key in train_keys or key in eval_keys):
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label="eval" if key.startswith("eval_") else "train",
                        markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(family)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
