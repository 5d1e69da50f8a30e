"""TFDS datasets by name (`mnist`, `cifar10`, `imagenette/320px-v2`, `moving_mnist`, ...).

They are read, like everything else, as array_record data sources: no TensorFlow, ever. The
names realsys knows (`official.OFFICIAL`) are downloaded, verified and prepared on first use,
by every command that reads them; `--no-download` or `REALSYS_NO_DOWNLOAD=1` turns that off. Any
other TFDS name is read when it was prepared elsewhere as array_record, and otherwise is an
error raised in well under a second, naming the ways out.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import tensorflow_datasets as tfds

from realsys_cli.data import download, official
from realsys_cli.errors import DatasetError

log = logging.getLogger("realsys")

WAYS_OUT = (
    "use a built-in dataset (--dataset digits, shapes or moving-digits), a local folder "
    "(--data-dir ROOT with ROOT/train/<class>/*.jpg), or a TFDS data dir where it was prepared "
    "as array_record (--tfds-data-dir)"
)


@contextlib.contextmanager
def preparing() -> Iterator[None]:
    """TFDS prints its preparation messages to stdout and draws tqdm bars: stdout is for
    results only, so both go to stderr with --verbose and nowhere otherwise (realsys logs its
    own lines: what is prepared where, how long it took)."""
    logger = logging.getLogger("realsys")
    verbose = logger.isEnabledFor(logging.DEBUG)
    if not verbose:
        tfds.disable_progress_bar()
    target = sys.stderr if verbose else io.StringIO()
    with contextlib.redirect_stdout(target):
        yield


def named_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """The builder of a TFDS dataset (ours for the names realsys prepares), or a DatasetError."""
    builder = official.official_builder(name, data_dir)
    if builder is not None:
        return builder
    try:
        return tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"unknown dataset {name!r}: not a built-in (digits, shapes, moving-digits) "
            f"nor a TFDS dataset name (realsys downloads {', '.join(official.OFFICIAL)})"
        ) from None
    except (ValueError, AssertionError) as e:  # bad config or version
        raise DatasetError(f"dataset {name!r}: {e}") from None


def prepared_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """A TFDS dataset prepared as array_record in `data_dir`, acquiring it first when realsys
    knows how; fails fast when it cannot be had."""
    builder = named_builder(name, data_dir)
    if not builder.is_prepared():
        if builder.name not in official.OFFICIAL:
            raise DatasetError(
                f"TFDS dataset {name!r} is not prepared in {data_dir}, and realsys prepares only "
                f"{', '.join(official.OFFICIAL)} itself; " + WAYS_OUT
            )
        acquire(name, builder, data_dir)
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise DatasetError(
            f"TFDS dataset {name!r} in {data_dir} was prepared as "
            f"{builder.info.file_format.value}, which needs TensorFlow to read; prepare it "
            "again as array_record, or use another --tfds-data-dir"
        )
    return builder


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process at a time prepares a dataset; the others wait, then find it prepared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another realsys process preparing the same dataset")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def acquire(name: str, builder: tfds.core.DatasetBuilder, data_dir: str) -> None:
    """Download (resuming), verify, and prepare one of the datasets realsys knows.

    TFDS writes into an `incomplete.*` directory and renames it when done, so an interrupted
    preparation never reads as prepared; the next run removes the leftover and starts again.
    """
    downloads = Path(data_dir) / "downloads" / "realsys" / builder.name
    files = official.remote_files(builder)
    for remote in files.values():  # --no-download: one line, before the lock file is made
        download.check_fetchable(remote, downloads, dataset=name)
    with _locked(downloads / ".lock"):
        if builder.is_prepared():  # another process finished it while we waited
            return
        builder.local_files = {role: download.fetch(remote, downloads, dataset=name)
                               for role, remote in files.items()}
        version_dir = Path(builder.data_dir)
        for leftover in version_dir.parent.glob("incomplete.*"):
            shutil.rmtree(leftover, ignore_errors=True)
        log.info("preparing %s into %s, once", name, version_dir)
        start = time.perf_counter()
        with preparing():
            builder.download_and_prepare()
        log.info("prepared %s in %.1f s (%s)", name, time.perf_counter() - start, ", ".join(
            f"{s} {i.num_examples}" for s, i in builder.info.splits.items()))
