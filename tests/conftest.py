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
