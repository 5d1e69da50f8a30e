"""Local image folders: `ROOT/{train,val|validation,test}/<class>/*.{jpg,jpeg,png,bmp,webp}`.

This is exactly the layout of the extracted imagenette2 archives, and the way in for any data
that TFDS cannot download here. The folder is prepared once, through a TFDS builder of ours
(tfds.ImageFolder needs TensorFlow), into the TFDS data dir; a fingerprint of the file list
(paths, sizes, mtimes) is part of the config name, so a changed folder is prepared again.

Images of mixed sizes are kept as they are (the input pipeline resizes); grayscale, RGBA, CMYK,
palette and 16-bit images are converted to 8-bit RGB; unreadable files are counted, named in
one warning and skipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from realsys_cli.data.tfds_named import preparing
from realsys_cli.errors import DatasetError

log = logging.getLogger("realsys")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SPLIT_DIRS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}

# Imagenette's WordNet ids, in TFDS label order (ANCHORS.md section 2).
WORDNET_NAMES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}


def scan_folder(root: Path) -> tuple[dict[str, list[tuple[Path, int]]], list[str]]:
    """Find the splits and classes: ({split: [(path, class index)]}, class folder names)."""
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist")
    split_dirs = {SPLIT_DIRS[p.name]: p for p in sorted(root.iterdir()) if p.name in SPLIT_DIRS}
    if "train" not in split_dirs:
        raise DatasetError(
            f"{root} has no train/ folder; expected ROOT/train/<class>/*.jpg and "
            "ROOT/val/<class>/*.jpg (or test/)"
        )
    if len(split_dirs) < 2:
        raise DatasetError(f"{root} has train/ but no val/, validation/ or test/ split")
    classes = sorted(p.name for p in split_dirs["train"].iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DatasetError(
            f"{root / 'train'} has {len(classes)} class folder(s); a classifier needs at least 2"
        )
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, split_dir in split_dirs.items():
        extra = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in classes)
        if extra:
            raise DatasetError(f"{split_dir} has classes that train/ lacks: {', '.join(extra)}")
        files[split] = [
            (path, index)
            for index, name in enumerate(classes)
            if (split_dir / name).is_dir()
            for path in sorted((split_dir / name).iterdir())
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
        ]
        if not files[split]:
            raise DatasetError(f"{split_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files, classes


def fingerprint(files: dict[str, list[tuple[Path, int]]]) -> str:
    digest = hashlib.sha1()
    for split in sorted(files):
        for path, label in files[split]:
            stat = path.stat()
            digest.update(f"{split}|{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:10]


def readable_names(classes: list[str]) -> list[str]:
    return [WORDNET_NAMES.get(c, c) for c in classes]


def load_rgb(path: Path) -> Image.Image:
    """Open any image PIL reads as 8-bit RGB; raise OSError/ValueError when it is unreadable."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit grayscale: scale the used range to 8 bits instead of clipping at 255.
            arr = np.asarray(im, dtype=np.float64)
            top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
            return Image.fromarray((arr / top * 255).round().astype(np.uint8)).convert("RGB")
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")


def _encode(path: Path) -> bytes:
    """JPEG/PNG RGB files keep their bytes; everything else is converted and stored as PNG."""
    with Image.open(path) as im:
        keep = im.format in ("JPEG", "PNG") and im.mode == "RGB"
    image = load_rgb(path)  # decodes fully: truncated or corrupt files fail here
    if keep:
        return path.read_bytes()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class RealsysFolder(tfds.core.GeneratorBasedBuilder):
    """An image folder as a TFDS dataset; the config name carries the folder's fingerprint."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def __init__(
        self,
        *,
        files: dict[str, list[tuple[Path, int]]] | None = None,
        class_names: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._files = files or {}
        self._class_names = class_names or []
        self.skipped: list[Path] = []
        self.empty_splits: list[str] = []  # splits where every file was unreadable
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="A local image folder prepared by realsys.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=self._class_names),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        return {split: self._generate_examples(split) for split in self._files}

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        count = 0
        for path, label in self._files[split]:
            try:
                data = _encode(path)
            except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
                self.skipped.append(path)
                continue
            count += 1
            yield str(path), {"image": data, "label": label}
        if count == 0:
            self.empty_splits.append(split)


def folder_builder(root: str | Path, data_dir: str) -> tfds.core.DatasetBuilder:
    """The prepared builder of a folder, preparing it first when new or changed."""
    root = Path(root).expanduser().resolve()
    files, classes = scan_folder(root)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name)[:40] or "root"
    prefix = f"{slug}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
    name = f"{prefix}-{fingerprint(files)}"
    builder = RealsysFolder(
        files=files,
        class_names=readable_names(classes),
        data_dir=data_dir,
        config=tfds.core.BuilderConfig(name=name),
        file_format="array_record",
    )
    if not builder.is_prepared():
        _remove_stale(Path(data_dir) / "realsys_folder", prefix, keep=name)
        total = sum(len(v) for v in files.values())
        log.info("Preparing folder %s (%d images, %d classes) into %s", root, total,
                 len(classes), data_dir)
        try:
            with preparing():
                builder.download_and_prepare()
        except AssertionError:  # TFDS's "No examples were yielded": a split of unreadable files
            if not builder.empty_splits:
                raise
        if builder.skipped:
            shown = ", ".join(str(p.relative_to(root)) for p in builder.skipped[:10])
            more = f" and {len(builder.skipped) - 10} more" if len(builder.skipped) > 10 else ""
            log.warning("skipped %d unreadable image(s): %s%s", len(builder.skipped), shown, more)
        if builder.empty_splits:
            split = builder.empty_splits[0]
            raise DatasetError(f"{root}: every image of split {split} is unreadable")
    return builder


def _remove_stale(folder_root: Path, prefix: str, keep: str) -> None:
    """Drop earlier preparations of the same folder (it changed since)."""
    if folder_root.is_dir():
        for old in folder_root.iterdir():
            if old.name.startswith(prefix + "-") and old.name != keep:
                shutil.rmtree(old, ignore_errors=True)
