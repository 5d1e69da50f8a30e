"""Test set-up: CPU only, 4 fake devices, and every TFDS/run directory inside tmp_path.

The environment variables must be set before jax is imported anywhere, so they live at the top
of conftest, which pytest imports first.
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Never touch the user's TFDS data dir or ./runs: each test gets its own."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("REALSYS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _fresh_download_state(monkeypatch):
    """Downloads allowed (an earlier --no-download is undone), no mirror, no remembered sums."""
    from realsys_cli.data import download

    monkeypatch.setattr(download._State, "forbidden", False)
    monkeypatch.setattr(download._State, "sums", {})
    for name in (download.NO_DOWNLOAD_ENV, download.ACCEPT_ENV, download.MIRROR_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A dataset mirror on 127.0.0.1 over tmp_path/mirror, set as REALSYS_DATASETS_MIRROR
    (tests/mirror.py writes the upstream files into `served.root`)."""
    from mirror import MirrorServer

    from realsys_cli.data import download

    root = tmp_path / "mirror"
    root.mkdir()
    with MirrorServer(root) as server:
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        yield server
