"""What `realsys datasets list` and `realsys datasets preview` show."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from realsys_cli import pictures
from realsys_cli.data import builtin, official
from realsys_cli.data.dataset import Dataset, open_dataset, tfds_data_dir
from realsys_cli.errors import ConfigError
from realsys_cli.outputs import MOVIE_SUFFIXES, check_picture


def list_datasets(tfds_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Built-ins (prepared or not) and every dataset prepared in the TFDS data dir."""
    root = Path(tfds_data_dir(tfds_dir))
    rows: list[dict[str, Any]] = []
    prepared = list(_prepared(root))
    for spec in builtin.BUILTINS.values():
        configs = [p for p in prepared if p["builder"] == spec.builder_name]
        rows.append({
            "name": spec.name,
            "source": "built-in",
            "description": spec.description,
            "defaults": ",".join(f"{k}={v}" for k, v in spec.defaults.items()),
            "prepared": ", ".join(c["config"] for c in configs) or "no (made on first use)",
        })
    for name, spec in official.OFFICIAL.items():
        configs = [p for p in prepared if p["builder"] == name]
        remote = spec.files(official.official_builder(name, str(root)))
        rows.append({
            "name": name,
            "source": "download",
            "description": spec.summary,
            "defaults": f"{sum(f.size for f in remote.values()) / 1e6:,.0f} MB to download",
            "prepared": ", ".join("yes" if c["config"] == "default" else c["config"]
                                  for c in configs) or "no (downloaded on first use)",
        })
    for p in prepared:
        if p["builder"] in official.OFFICIAL or (
                p["builder"].startswith("realsys_") and p["builder"] != "realsys_folder"):
            continue
        rows.append({
            "name": p["name"],
            "source": "folder" if p["builder"] == "realsys_folder" else "tfds",
            "description": p["description"],
            "defaults": p["splits"],
            "prepared": p["path"],
        })
    return rows


def _prepared(root: Path):
    """Walk <root>/<builder>/<config?>/<version>/dataset_info.json."""
    if not root.is_dir():
        return
    for info_path in sorted(root.glob("*/*/dataset_info.json")) + sorted(
        root.glob("*/*/*/dataset_info.json")
    ):
        try:
            info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        version_dir = info_path.parent
        rel = version_dir.relative_to(root).parts
        builder_name, config = rel[0], (rel[1] if len(rel) == 3 else "")
        splits = ", ".join(
            f"{s['name']} {sum(int(n) for n in s.get('shardLengths', []))}"
            for s in info.get("splits", [])
        )
        name = builder_name + (f"/{config}" if config else "")
        yield {
            "builder": builder_name,
            "config": config or "default",
            "name": name,
            "description": (info.get("description") or "").strip().splitlines()[0][:60]
            if info.get("description") else "",
            "splits": splits,
            "path": str(version_dir),
        }


def preview(
    name: str,
    out: str | os.PathLike,
    *,
    split: str | None = None,
    count: int = 40,
    seed: int = 0,
    data_dir: str | None = None,
    tfds_dir: str | None = None,
) -> dict[str, Any]:
    """A labelled grid (PNG) of random samples, or a GIF of clips for video datasets."""
    out = check_picture(out)  # before a dataset is prepared, not after
    dataset = open_dataset(name, data_dir=data_dir, tfds_dir=tfds_dir)
    if dataset.kind == "video" and out.suffix.lower() not in MOVIE_SUFFIXES:
        raise ConfigError(f"--out {out}: {name} is a video dataset, previewed as a movie; end "
                          "the file in .gif")
    split = split or (dataset.train_split if "train" in dataset.splits else dataset.eval_split)
    source = dataset.source(split)
    rng = np.random.default_rng(seed)
    count = min(count, len(source), 8 if dataset.kind == "video" else count)
    indices = np.sort(rng.choice(len(source), size=count, replace=False))
    records = [source[int(i)] for i in indices]
    out.parent.mkdir(parents=True, exist_ok=True)
    if dataset.kind == "video":
        clips = np.stack([r["video"] for r in records])  # (N, T, H, W, C)
        pictures.clips_gif(out, clips, [f"#{i}" for i in indices])
    else:
        images = _same_size([r["image"] for r in records])
        labels = [dataset.class_names[r["label"]] for r in records]
        pictures.save_grid(out, images, labels, columns=min(10, count))
    return {"dataset": name, "split": split, "count": count, "out": str(out),
            "kind": dataset.kind}


def _same_size(images: list[np.ndarray]) -> np.ndarray:
    from realsys_cli.data.pipeline import resize_square

    side = min(min(im.shape[:2]) for im in images)
    return np.stack([resize_square(im, min(side, 160)) for im in images])


def describe(dataset: Dataset) -> dict[str, Any]:
    return {
        "dataset": dataset.name,
        "kind": dataset.kind,
        "shape": list(dataset.element_shape),
        "classes": list(dataset.class_names),
        "splits": dataset.splits,
        "path": dataset.path,
    }
