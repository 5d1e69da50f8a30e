"""TFDS names realsys does not download itself fail fast and name the ways out; reaching a host
to download costs at most the connect timeout, never TFDS's minutes of retries.
"""

import importlib.util
import socket
import time

import pytest
import tensorflow_datasets as tfds

from realsys_cli.data import download
from realsys_cli.data.dataset import open_dataset, prepare
from realsys_cli.errors import DatasetError, NetworkError


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to download and prepare is a test failure, never a wait on the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


@pytest.mark.parametrize("name", ["kmnist", "svhn_cropped", "emnist/letters"])
def test_unprepared_tfds_name_fails_fast(name, tmp_path, no_download):
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        open_dataset(name)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, elapsed
    message = str(info.value)
    assert "\n" not in message
    assert f"{name!r} is not prepared in {tmp_path / 'tfds'}" in message
    assert "realsys prepares only mnist, fashion_mnist, cifar10" in message
    assert "digits, shapes or moving-digits" in message
    assert "--data-dir" in message and "--tfds-data-dir" in message
    assert "tensorflow" not in message.lower()


def test_unknown_name(no_download):
    with pytest.raises(DatasetError, match=r"unknown dataset 'no_such_dataset_xyz': not a built-in"):
        open_dataset("no_such_dataset_xyz")
    with pytest.raises(DatasetError, match=r"unknown dataset 'no_such_dataset_xyz'"):
        prepare("no_such_dataset_xyz")


@pytest.mark.parametrize(
    ("name", "needle"), [("mnist/bogus", "mnist has no config 'bogus'"), ("mnist:9.9.9", "9.9.9"),
     ("imagenette/bogus", "valid: imagenette/full-size-v2, imagenette/320px-v2"),
     ("kmnist/bogus", "bogus not found")]
)
def test_bad_config_or_version(name, needle, no_download):
    with pytest.raises(DatasetError, match=needle):
        open_dataset(name)


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_network_refused_port():
    port = _closed_port()
    start = time.perf_counter()
    with pytest.raises(NetworkError) as info:
        download.check_reachable(f"http://127.0.0.1:{port}/x", timeout=1.0)
    assert time.perf_counter() - start < 1.5
    message = str(info.value)
    assert f"cannot reach 127.0.0.1:{port} to download (ConnectionRefusedError)" in message
    assert "REALSYS_DATASETS_MIRROR" in message and "--data-dir" in message
    assert isinstance(info.value, DatasetError)  # the CLI maps it like any dataset error


def test_check_network_blackhole_within_timeout():
    """A host that drops the connection attempt (here: a listener whose accept queue is full;
    outside addresses are not reliably unroutable on every machine) costs `timeout`, no more."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        held = []
        try:
            for _ in range(16):  # fill the accept queue until a connection attempt hangs
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
                except TimeoutError:
                    break
            else:
                pytest.skip("this kernel never drops connection attempts to a full queue")
            start = time.perf_counter()
            with pytest.raises(NetworkError, match=r"cannot reach 127.0.0.1:\d+ .*\(TimeoutError\)"):
                download.check_reachable(f"http://127.0.0.1:{port}/x", timeout=0.5)
            elapsed = time.perf_counter() - start
            assert 0.4 < elapsed < 1.5, elapsed
        finally:
            for conn in held:
                conn.close()


def test_check_network_open_port_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert download.check_reachable(f"http://127.0.0.1:{port}/x", timeout=1.0) is None


def test_no_tensorflow_installed():
    """realsys never needs TensorFlow: not at run time, not to prepare any dataset it knows."""
    assert importlib.util.find_spec("tensorflow") is None
