"""Batches from a record source: sharded, shuffled by seed, streamed, prefetched, resumable.

The training stream is

  source -> this process's shard -> shuffle(seed), reshuffled every epoch -> resize
         -> convert to the model's channels -> batch

as a grain `MapDataset`: records are read on demand (a dataset never has to fit in memory), a
batch at a time (the shuffled indices are batched, then each batch's records are read in one
batched read, decoded, resized and stacked: the unit of work of the pool of threads that works
ahead of the training step), and the iterator's state is a small dict (`get_state()` /
`set_state()`) that goes into every checkpoint, so a resumed run sees exactly the batches an
uninterrupted one would. Batches are dicts of numpy arrays:

  {"image": uint8 (B, H, W, C), "label": int32 (B,)}   or   {"video": uint8 (B, T, H, W, C)}

A model meets images of another channel count converted to its own (`channels`): RGB -> grey
by ITU-R 601 luma exactly as PIL's `convert("L")` computes it, grey -> RGB by repetition.

Evaluation batches are not shuffled and are padded to a full batch, with {"mask": bool (B,)},
so that one compiled eval step serves the last, partial batch too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
from PIL import Image

from realsys_cli.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Shard:
    """This process's share of the data under multi-process training."""

    index: int = 0
    count: int = 1


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to `size`, then the centre `size` x `size` crop. uint8 (H, W, C) in and out."""
    h, w, c = image.shape
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    pil = Image.fromarray(image[..., 0] if c == 1 else image)
    pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = np.asarray(pil)[top : top + size, left : left + size]
    return out.reshape(size, size, c)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (..., C) with C in (1, 3) -> uint8 (..., channels).

    RGB -> grey is PIL's `convert("L")` bit for bit, the ITU-R 601 luma
    L = (19595 R + 38470 G + 7471 B + 2^15) >> 16  (0.299, 0.587, 0.114 in 16-bit fixed point);
    grey -> RGB repeats the one channel.
    """
    have = images.shape[-1]
    if have == channels:
        return images
    if (have, channels) == (1, 3):
        return np.repeat(images, 3, axis=-1)
    if (have, channels) == (3, 1):
        rgb = images.astype(np.uint32)
        luma = (19595 * rgb[..., 0] + 38470 * rgb[..., 1] + 7471 * rgb[..., 2] + 0x8000) >> 16
        return luma.astype(np.uint8)[..., None]
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


def _prepare_record(size: int | None, channels: int | None) -> Any:
    def fn(record: dict[str, Any]) -> dict[str, Any]:
        if "image" in record:
            image = record["image"]
            if size is not None:
                image = resize_square(image, size)
            if channels is not None:
                image = convert_channels(image, channels)
            record = dict(record, image=image)
        return record

    return fn


def _stack(records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    batch = {key: np.stack([r[key] for r in records]) for key in records[0]}
    if "label" in batch:
        batch["label"] = batch["label"].astype(np.int32)
    return batch


def _read_batch(source: Sequence, size: int | None, channels: int | None) -> Any:
    """Record indices -> one batch: the records read together (`__getitems__`, when the source
    has it: one batched read, e.g. of array_record), then prepared and stacked. A batch, not a
    record, is the unit of work of grain's threads: read and mapped record by record, a batch
    of 128 digits cost 32 ms of CPU, a fifth of a LeNet step (docs/speed.md)."""
    prepare = _prepare_record(size, channels)
    read_many = getattr(source, "__getitems__", None)

    def fn(indices: Sequence[int]) -> dict[str, np.ndarray]:
        keys = [int(i) for i in indices]
        records = read_many(keys) if read_many is not None else [source[k] for k in keys]
        return _stack([prepare(r) for r in records])

    return fn


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)


def shard_of(source: Sequence, shard: Shard) -> grain.MapDataset:
    """Every process reads its own, disjoint slice of the records."""
    dataset = grain.MapDataset.source(source)
    return dataset[shard.index :: shard.count] if shard.count > 1 else dataset


def shard_indices(num_records: int, shard: Shard) -> grain.MapDataset:
    """The indices of this process's records (`shard_of`'s records, as indices)."""
    return grain.MapDataset.range(shard.index, num_records, shard.count)


def steps_per_epoch(num_examples: int, batch_size: int, shard: Shard = Shard()) -> int:
    """Full batches per epoch for one process; the stream crosses epochs, so none is lost.

    Counted on the smallest shard, so that every process runs the same number of steps. A
    batch larger than the data is refused: it would repeat examples within one step.
    """
    per_process = num_examples // shard.count
    if batch_size > per_process:
        raise ConfigError(f"batch_size {batch_size * shard.count} is larger than the "
                          f"{num_examples} training examples; use --batch-size "
                          f"{per_process * shard.count} or less")
    return per_process // batch_size


def train_batches(
    source: Sequence,
    *,
    batch_size: int,
    seed: int,
    image_size: int | None = None,
    channels: int | None = None,
    shard: Shard = Shard(),
    num_epochs: int | None = None,
    num_threads: int = 4,
    prefetch: int = 8,
) -> grain.DatasetIterator:
    """An endless (or `num_epochs`-long) iterator of shuffled batches with get/set_state.

    `image_size`: resize (shorter side, centre crop) to this side; `channels`: convert to this
    many channels (1 or 3); None keeps the records' own.
    """
    # The indices are shuffled and batched (the same permutation and batches as shuffling the
    # records themselves); each batch is then read and prepared as one piece of work.
    dataset = (
        shard_indices(len(source), shard)
        .shuffle(seed=seed)
        .repeat(num_epochs, reseed_each_epoch=True)
        .batch(batch_size, drop_remainder=True, batch_fn=list)
        .map(_read_batch(source, image_size, channels))
    )
    return iter(dataset.to_iter_dataset(_read_options(num_threads, prefetch)))


def eval_batches(
    source: Sequence,
    *,
    batch_size: int,
    image_size: int | None = None,
    channels: int | None = None,
    shard: Shard = Shard(),
    limit: int | None = None,
    num_threads: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
    """Every record once, in order, in full batches padded with mask == False.

    Every process yields as many batches as the largest shard needs (the extra ones fully
    masked), so that the processes' collective eval steps stay in step. `image_size` and
    `channels` as in `train_batches`.
    """
    dataset = shard_indices(len(source), shard)
    largest = -(-len(source) // shard.count)
    if limit is not None:
        dataset = dataset[: min(limit, len(dataset))]
        largest = min(limit, largest)
    num_batches = -(-largest // batch_size)
    dataset = dataset.batch(batch_size, batch_fn=list).map(
        _read_batch(source, image_size, channels))
    batch = None
    for batch in dataset.to_iter_dataset(_read_options(num_threads, 2 * num_threads)):
        n = len(next(iter(batch.values())))
        mask = np.arange(batch_size) < n
        if n < batch_size:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)])
                     for k, v in batch.items()}
        num_batches -= 1
        yield dict(batch, mask=mask)
    for _ in range(num_batches if batch is not None else 0):
        yield dict(batch, mask=np.zeros(batch_size, dtype=bool))
