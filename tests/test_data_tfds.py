"""Official TFDS names: reading never downloads, unprepared data fails fast and names the ways
out, and preparing checks the network (and TensorFlow) before TFDS can retry for minutes.
"""

import importlib.util
import socket
import time

import pytest
import tensorflow_datasets as tfds

from realsys_cli.data import tfds_named
from realsys_cli.data.dataset import open_dataset, prepare
from realsys_cli.errors import DatasetError, NetworkError

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to download and prepare is a test failure, never a wait on the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagenette/320px-v2"])
def test_unprepared_tfds_name_fails_fast(name, tmp_path, no_download):
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        open_dataset(name)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, elapsed
    message = str(info.value)
    assert "\n" not in message
    assert f"{name!r} is not prepared in {tmp_path / 'tfds'}" in message
    assert f"`realsys datasets prepare {name}`" in message
    assert "digits, shapes or moving-digits" in message
    assert "--data-dir" in message and "--tfds-data-dir" in message
    assert not isinstance(info.value, NetworkError)


def test_unknown_name(no_download):
    with pytest.raises(DatasetError, match=r"unknown dataset 'no_such_dataset_xyz': not a built-in"):
        open_dataset("no_such_dataset_xyz")
    with pytest.raises(DatasetError, match=r"unknown dataset 'no_such_dataset_xyz'"):
        prepare("no_such_dataset_xyz")


@pytest.mark.parametrize(
    ("name", "needle"), [("mnist/bogus", "bogus not found"), ("mnist:9.9.9", "9.9.9")]
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
        tfds_named.check_network("127.0.0.1", timeout=1.0, port=port)
    assert time.perf_counter() - start < 1.5
    message = str(info.value)
    assert "cannot reach 127.0.0.1 to download (ConnectionRefusedError)" in message
    assert "--data-dir" in message and "--tfds-data-dir" in message
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
            with pytest.raises(NetworkError, match=r"cannot reach 127.0.0.1 .*\(TimeoutError\)"):
                tfds_named.check_network("127.0.0.1", timeout=0.5, port=port)
            elapsed = time.perf_counter() - start
            assert 0.4 < elapsed < 1.5, elapsed
        finally:
            for conn in held:
                conn.close()


def test_check_network_open_port_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert tfds_named.check_network("127.0.0.1", timeout=1.0,
                                        port=server.getsockname()[1]) is None


@pytest.mark.skipif(HAS_TENSORFLOW, reason="the [tf] extra is installed here")
def test_prepare_official_image_dataset_needs_tensorflow(monkeypatch, no_download):
    def no_network_check(*args, **kwargs):
        raise AssertionError("network checked before TensorFlow")

    monkeypatch.setattr(tfds_named, "check_network", no_network_check)
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        prepare("mnist")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "preparing 'mnist' needs TensorFlow" in message
    assert "pip install 'realsys[tf]'" in message


def test_prepare_checks_network_before_downloading(monkeypatch, tmp_path, no_download):
    """With TensorFlow there, a missing network is the next thing prepare says, at once."""
    hosts = []

    def unreachable(host, *args, **kwargs):
        hosts.append(host)
        raise NetworkError(f"cannot reach {host}")

    monkeypatch.setattr(tfds_named, "needs_tensorflow", lambda builder: False)
    monkeypatch.setattr(tfds_named, "check_network", unreachable)
    with pytest.raises(NetworkError):
        tfds_named.prepare_named("mnist", str(tmp_path / "tfds"))
    assert len(hosts) == 1 and hosts[0]  # the homepage's host, e.g. yann.lecun.com


def test_needs_tensorflow_is_false_for_our_builders():
    from realsys_cli.data import builtin

    builder = builtin.builtin_builder("digits/train=10,test=5", "unused")
    assert not tfds_named.needs_tensorflow(builder)
    official = tfds_named.named_builder("mnist", "unused")
    assert tfds_named.needs_tensorflow(official) is (not HAS_TENSORFLOW)
