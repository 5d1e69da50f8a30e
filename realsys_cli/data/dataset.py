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
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

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


class ArrayRecords(Sequence):
    """A split's serialized records, read straight from its array_record files.

    A batch of records is one `read` call per file, in the calling thread: array_record's own
    data source starts a thread pool for every batch, which costs more than the reading (30-50
    against 9-15 us a record for the 28x28 digits on a busy 2-core machine; one record alone:
    150-300 us). A split of at most CACHE_LIMIT_BYTES on disk (the built-ins, MNIST, CIFAR) is
    read whole into memory by its first batch instead, sequentially (~6 us a record), as a
    random read costs ~25 us of CPU a record (a zstd frame each): the digits' 60,000 records
    are 34 MB, read in 0.3 s. docs/speed.md, "Input pipeline vs in-memory batch".
    """

    READER_OPTIONS = "readahead_buffer_size:0"  # random access: array_record's data source's
    CACHE_LIMIT_BYTES = 256 * 2**20

    def __init__(self, instructions: Sequence[Any]) -> None:
        self._files = [(os.fspath(i.filename), int(i.skip),
                        int(i.take) if int(i.take) >= 0 else int(i.examples_in_shard) - int(i.skip))
                       for i in instructions]
        self._starts = np.cumsum([0] + [take for _, _, take in self._files])
        self._readers: list[Any] = [None] * len(self._files)
        self._lock = threading.RLock()  # _fill_cache opens readers under it
        self._cache: list[bytes] | None = None
        try:
            size = sum(os.path.getsize(path) for path in {path for path, _, _ in self._files})
        except OSError:
            size = self.CACHE_LIMIT_BYTES + 1
        self._cacheable = size <= self.CACHE_LIMIT_BYTES

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[bytes]:
        n = len(self)
        wanted = [int(i) + n if int(i) < 0 else int(i) for i in indices]
        for i, w in zip(indices, wanted):
            if not 0 <= w < n:
                raise IndexError(f"record {i} of {n}")
        if self._cache is not None or (len(wanted) > 1 and self._cacheable):
            cache = self._cache if self._cache is not None else self._fill_cache()
            return [cache[w] for w in wanted]
        files = np.searchsorted(self._starts, wanted, side="right") - 1
        out: list[bytes] = [b""] * len(wanted)
        for f in np.unique(files):
            which = np.flatnonzero(files == f)
            offset = self._files[f][1] - int(self._starts[f])
            records = self._reader(int(f)).read([wanted[w] + offset for w in which])
            for w, record in zip(which, records):
                out[w] = record
        return out

    def _fill_cache(self) -> list[bytes]:
        with self._lock:
            if self._cache is None:
                cache: list[bytes] = []
                for f, (_, skip, take) in enumerate(self._files):
                    cache.extend(self._reader(f).read(list(range(skip, skip + take))))
                self._cache = cache
        return self._cache

    def _reader(self, f: int) -> Any:
        if self._readers[f] is None:
            with self._lock:
                if self._readers[f] is None:
                    from array_record.python import array_record_module

                    self._readers[f] = array_record_module.ArrayRecordReader(
                        self._files[f][0], options=self.READER_OPTIONS,
                        file_reader_buffer_size=32768)
        return self._readers[f]

    def __getstate__(self) -> dict[str, Any]:  # to worker processes: readers open anew there
        state = dict(self.__dict__)
        state.update(_readers=[None] * len(self._files), _lock=None, _cache=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.RLock())


def _fast_decoders(features: Any, keys: dict[str, str]) -> dict[str, Callable] | None:
    """{our name: proto Feature -> value} for the features realsys reads: labels, images (by
    TFDS's own image decoding) and fixed-shape zlib/bytes tensors (as TFDS decodes them),
    without TFDS's generic per-record parsing around them, which costs ~90 us a record (a 28x28
    digit: ~10 us this way). None when any of them is of a kind this does not cover (then TFDS
    decodes the whole record)."""
    decoders: dict[str, Callable] = {}
    for ours, theirs in keys.items():
        feature = features[theirs]
        if isinstance(feature, tfds.features.ClassLabel):
            decoders[ours] = lambda f: int(f.int64_list.value[0])
        elif isinstance(feature, tfds.features.Image) and feature.np_dtype == np.uint8:
            decoders[ours] = lambda f, image=feature: image.decode_example_np(
                f.bytes_list.value[0])
        elif (type(feature) is tfds.features.Tensor
              and getattr(feature, "_encoding", None) in (tfds.features.Encoding.ZLIB,
                                                          tfds.features.Encoding.BYTES)
              and not getattr(feature, "_dynamic_shape", True)
              and all(isinstance(d, int) for d in feature.shape)):
            # what Tensor.decode_example_np does for a static shape, without its generic calls
            unzip = zlib.decompress if feature._encoding == tfds.features.Encoding.ZLIB else bytes
            decoders[ours] = (lambda f, unzip=unzip, dtype=feature.np_dtype,
                              shape=tuple(feature.shape):
                              np.frombuffer(unzip(f.bytes_list.value[0]), dtype).reshape(shape))
        else:
            return None
    return decoders


class RecordView(Sequence):
    """A TFDS data source seen through realsys's record names (and int labels).

    With `decoders` (from `_fast_decoders`), `source` gives raw serialized records: each one's
    tf.train.Example is parsed once and only realsys's features are decoded, to the values
    TFDS's own decoding gives.
    """

    def __init__(self, source: Any, keys: dict[str, str], *,
                 decoders: dict[str, Callable] | None = None) -> None:
        self._source, self._keys = source, keys  # {our name: TFDS feature name}
        self._decoders = decoders

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if self._decoders is not None:
            return self._decode(self._source[index])
        return self._convert(self._source[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in range(len(self)):
            yield self[index]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Many records at once: one batched read (array_record reads a batch of records
        ~10x faster per record than one by one)."""
        if self._decoders is not None:
            return [self._decode(r) for r in self._source.__getitems__(indices)]
        return [self._convert(r) for r in self._source.__getitems__(indices)]

    def _decode(self, serialized: bytes) -> dict[str, Any]:
        feature = tf_example_pb2.Example.FromString(serialized).features.feature
        out = {ours: self._decoders[ours](feature[theirs]) for ours, theirs in self._keys.items()}
        return {k: v if k == "label" else np.asarray(v) for k, v in out.items()}

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
        split = self.resolve_split(split)
        decoders = (_fast_decoders(self.builder.info.features, self.keys)
                    if self.builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
                    else None)  # array_record holds tf.train.Example protos
        if decoders is None:
            return RecordView(self.builder.as_data_source(split=split), self.keys)
        raw = ArrayRecords(self.builder.info.splits[split].file_instructions)
        return RecordView(raw, self.keys, decoders=decoders)


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
