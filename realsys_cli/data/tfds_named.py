"""Official TFDS datasets by name (`mnist`, `cifar10`, `imagenette/320px-v2`, `moving_mnist`, ...).

They are read, like everything else, as array_record data sources: no TensorFlow at run time.
Reading never downloads. A dataset that is not prepared in the data dir is an error raised in
well under a second, naming the ways out; `realsys datasets prepare NAME` is the one place that
downloads, and it checks the network first with a short timeout, because TFDS itself retries
each file for minutes when the network is not there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import tensorflow_datasets as tfds

from realsys_cli.errors import DatasetError, NetworkError

log = logging.getLogger("realsys")

NETWORK_TIMEOUT_S = 3.0
WAYS_OUT = (
    "use a built-in dataset (--dataset digits, shapes or moving-digits), a local folder "
    "(--data-dir ROOT with ROOT/train/<class>/*.jpg), or prepare it where there is a network "
    "with `realsys datasets prepare {name}` and point --tfds-data-dir at the result"
)


@contextlib.contextmanager
def preparing() -> Iterator[None]:
    """TFDS prints its preparation messages to stdout and draws tqdm bars: stdout is for
    results only, so send both to stderr (the bars only with --verbose, the messages not at
    all with --quiet)."""
    logger = logging.getLogger("realsys")
    if not logger.isEnabledFor(logging.DEBUG):
        tfds.disable_progress_bar()
    target = sys.stderr if logger.isEnabledFor(logging.INFO) else io.StringIO()
    with contextlib.redirect_stdout(target):
        yield


def named_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """The builder of an official TFDS dataset, or a DatasetError for an unknown name."""
    try:
        return tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"unknown dataset {name!r}: not a built-in (digits, shapes, moving-digits) "
            "nor a TFDS dataset name (e.g. mnist, cifar10, imagenette/320px-v2)"
        ) from None
    except (ValueError, AssertionError) as e:  # bad config or version
        raise DatasetError(f"dataset {name!r}: {e}") from None


def prepared_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """A TFDS dataset prepared as array_record in `data_dir`; fails fast when it is not."""
    builder = named_builder(name, data_dir)
    if not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset {name!r} is not prepared in {data_dir}; "
            + WAYS_OUT.format(name=name)
        )
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise DatasetError(
            f"TFDS dataset {name!r} in {data_dir} was prepared as "
            f"{builder.info.file_format.value}, which needs TensorFlow to read; prepare it again "
            f"as array_record with `realsys datasets prepare {name}`"
        )
    return builder


def check_network(host: str, timeout: float = NETWORK_TIMEOUT_S, *, port: int = 443) -> None:
    """Raise NetworkError within `timeout` seconds when `host` cannot be reached.

    The connection's own timeout does not cover the DNS lookup, which can hang for much
    longer offline; so the attempt runs in a daemon thread and we stop waiting at `timeout`.
    """
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as e:
            outcome.append(e)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    error = outcome[0] if outcome else TimeoutError(f"no answer in {timeout:g} s")
    if error is not None:
        raise NetworkError(
            f"cannot reach {host} to download ({error.__class__.__name__}); there is no network. "
            "Ways out: use a built-in dataset (digits, shapes, moving-digits) or a local folder "
            "with --data-dir, or prepare the dataset on a machine with a network and copy its "
            "TFDS data dir here (--tfds-data-dir)"
        )


def needs_tensorflow(builder: tfds.core.DatasetBuilder) -> bool:
    """Official image/video builders encode numpy arrays with TensorFlow while preparing."""
    module = type(builder).__module__
    return module.startswith("tensorflow_datasets.") and importlib.util.find_spec(
        "tensorflow"
    ) is None


def prepare_named(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Download and prepare an official TFDS dataset as array_record (needs a network)."""
    builder = named_builder(name, data_dir)
    if builder.is_prepared():
        return builder
    if needs_tensorflow(builder):
        raise DatasetError(
            f"preparing {name!r} needs TensorFlow (its TFDS builder encodes images with it): "
            "pip install 'realsys[tf]', then run this again; reading it later does not"
        )
    host = urllib.parse.urlparse(builder.info.homepage or "").hostname
    if host:
        check_network(host)
    log.info("Downloading and preparing %s into %s", name, data_dir)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with preparing():
        builder.download_and_prepare()
    return builder
