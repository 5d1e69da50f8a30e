"""One interface for every data source: a spec and a split give records of numpy arrays.

`open_dataset("digits")`, `open_dataset("imagenette/320px-v2")` and
`open_dataset("imagenette", data_dir="~/imagenette2-320")` all return a `Dataset` whose
`source(split)` is a random-access sequence of normalised records:

  images: {"image": uint8 (H, W, C), "label": int}     video: {"video": uint8 (T, H, W, C)}

whatever the feature names of the underlying TFDS dataset. Batching, shuffling and resume live
in `pipeline.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from realsys_cli.data import builtin, folder, tfds_named
from realsys_cli.errors import DatasetError

log = logging.getLogger("realsys")

TRAIN_SPLITS = ("train",)
EVAL_SPLITS = ("test", "validation", "val")
SPLIT_ALIASES = {"val": ("validation",), "validation": ("val",), "valid": ("validation", "val")}


def tfds_data_dir(explicit: str | os.PathLike | None = None) -> str:
    """--tfds-data-dir, else $TFDS_DATA_DIR, else TFDS's default (~/tensorflow_datasets)."""
    if explicit:
        found = str(Path(explicit).expanduser())
    else:
        found = os.environ.get("TFDS_DATA_DIR") or str(Path("~/tensorflow_datasets").expanduser())
    if Path(found).exists() and not Path(found).is_dir():
        raise DatasetError(f"the TFDS data dir {found} is a file, not a folder; give another "
                           "--tfds-data-dir (or TFDS_DATA_DIR)")
    return found


class RecordView(Sequence):
    """A TFDS data source seen through realsys's record names (and int labels)."""

    def __init__(self, source: Any, keys: dict[str, str]) -> None:
        self._source, self._keys = source, keys  # {our name: TFDS feature name}

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return self._convert(self._source[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in range(len(self)):
            yield self[index]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self._convert(r) for r in self._source.__getitems__(indices)]

    def _convert(self, record: dict[str, Any]) -> dict[str, Any]:
        out = {ours: np.asarray(record[theirs]) for ours, theirs in self._keys.items()}
        if "label" in out:
            out["label"] = int(out["label"])
        return out


@dataclasses.dataclass
class Dataset:
    """A prepared dataset: what it holds and random access to each split."""

    name: str  # as the user gave it
    kind: str  # "image" or "video"
    element_shape: tuple[int | None, ...]  # (H, W, C) or (T, H, W, C); None = varies
    class_names: tuple[str, ...]  # empty for video
    splits: dict[str, int]  # split -> number of examples
    path: str  # where it is prepared
    builder: tfds.core.DatasetBuilder = dataclasses.field(repr=False)
    keys: dict[str, str] = dataclasses.field(repr=False, default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_split(self) -> str:
        return self._find(TRAIN_SPLITS, "training")

    @property
    def eval_split(self) -> str:
        return self._find(EVAL_SPLITS, "evaluation")

    def _find(self, candidates: tuple[str, ...], what: str) -> str:
        for split in candidates:
            if split in self.splits:
                return split
        if what == "evaluation" and len(self.splits) == 1:
            return next(iter(self.splits))
        raise DatasetError(f"{self.name} has no {what} split (it has {', '.join(self.splits)})")

    def resolve_split(self, split: str) -> str:
        """`split` as this dataset names it: `val` and `validation` are one split."""
        if split not in self.splits:
            for alias in SPLIT_ALIASES.get(split, ()):
                if alias in self.splits:
                    return alias
            raise DatasetError(
                f"{self.name} has no split {split!r}; splits: {', '.join(self.splits)}"
            )
        return split

    def source(self, split: str) -> RecordView:
        return RecordView(self.builder.as_data_source(split=self.resolve_split(split)), self.keys)


def _describe(name: str, builder: tfds.core.DatasetBuilder) -> Dataset:
    """Find the image/label or video features of any TFDS dataset."""
    features = builder.info.features
    keys: dict[str, str] = {}
    shape: tuple[int | None, ...] = ()
    class_names: tuple[str, ...] = ()
    supervised = builder.info.supervised_keys or ()
    # The supervised pair first (cifar100 has a coarse_label before its label), then the rest.
    ordered = sorted(features.items(), key=lambda kv: kv[0] not in supervised)
    for key, feature in ordered:
        if isinstance(feature, tfds.features.ClassLabel) and "label" not in keys:
            keys["label"] = key
            class_names = tuple(folder.readable_names(list(feature.names)))
        elif isinstance(feature, tfds.features.Video) or (
            len(feature.shape) == 4 and "video" not in keys
        ):
            keys["video"] = key
            shape = tuple(feature.shape)
        elif len(feature.shape) == 3 and "image" not in keys and "video" not in keys:
            keys["image"] = key
            shape = tuple(feature.shape)
    kind = "video" if "video" in keys else "image"
    if kind == "video":
        keys.pop("label", None)
        class_names = ()
    elif "image" not in keys or "label" not in keys:
        raise DatasetError(
            f"{name} has no image+label features realsys can use (features: {', '.join(features)})"
        )
    splits = {s: info.num_examples for s, info in builder.info.splits.items()}
    return Dataset(name, kind, shape, class_names, splits, str(builder.data_dir), builder, keys)


def open_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    tfds_dir: str | os.PathLike | None = None,
) -> Dataset:
    """A built-in, a TFDS name, or (with data_dir) a local folder; prepared if it must be."""
    target = tfds_data_dir(tfds_dir)
    if data_dir is not None:
        return _describe(str(data_dir), folder.folder_builder(data_dir, target))
    if builtin.parse_builtin(name) is not None:
        return _describe(name, prepare_builtin(name, target))
    return _describe(name, tfds_named.prepared_builder(name, target))


def prepare_builtin(name: str, target: str) -> tfds.core.DatasetBuilder:
    builder = builtin.builtin_builder(name, target)
    if not builder.is_prepared():
        params = builder.params
        log.info(
            "Preparing built-in dataset %s (%d train / %d test) into %s, once",
            name, params["train"], params["test"], target,
        )
        start = time.perf_counter()
        with tfds_named.preparing():
            builder.download_and_prepare()
        log.info("Prepared %s in %.1f s", name, time.perf_counter() - start)
    return builder


def prepare(name: str, *, tfds_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """`realsys datasets prepare NAME`: built-ins are generated, TFDS names downloaded."""
    target = tfds_data_dir(tfds_dir)
    if builtin.parse_builtin(name) is not None:
        return prepare_builtin(name, target)
    return tfds_named.prepared_builder(name, target)
