"""The bench's own pieces (bench/workloads.py): the peer's networks, built from realsys's parts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import pytest
from flax import nnx

from realsys_cli.models import count_params

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    """bench/<name>.py as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frames_model_matches_the_pytorch_reference_parameter_count():
    workloads = load("workloads")
    model = workloads.BenchConvLSTM(rngs=nnx.Rngs(0))
    # cell (1 + 64) * 4*64 * 3*3 + 4*64 = 150,016; head 64 * 3*3 + 1 = 577
    assert count_params(model) == 150_593
    out = nnx.jit(lambda m, x: m(x))(model, jnp.zeros((2, 10, 64, 64, 1)))
    assert out.shape == (2, 64, 64, 1)


def test_every_workload_of_the_driver_has_a_builder():
    assert set(load("run").WORKLOADS) == set(load("workloads").BUILDERS)
    assert load("run").PEER == BENCH / "peer_torch_simvp.py"
    assert (BENCH / "peer_torch.py").is_file() and load("run").PEER.is_file()
    # the peer adds exactly the workloads the shared bench's peer lacks
    assert "BUILDERS[\"frames_simvp\"]" in load("run").PEER.read_text()


@pytest.mark.slow
def test_the_simvp_workload_is_predict_frames_default_model():
    """bench frames_simvp times the network `realsys predict-frames` trains with no options, at
    the parameter count of its PyTorch peer (bench/peer_torch_simvp.py's SimVP: 817,504) and
    the command's batch."""
    from realsys_cli.frames import setup
    from realsys_cli.frames.recipes import resolve_frames_config

    cfg = resolve_frames_config(config_file=None, options={}, set_items=None)
    assert (cfg.model, cfg.recipe) == ("simvp", "simvp_moving_digits")
    assert count_params(setup.make_model(cfg, channels=1)) == 817_504
    assert load("workloads").BATCH["frames_simvp"] == cfg.batch_size == 8
    source = (BENCH / "workloads.py").read_text()
    assert "resolve_frames_config(config_file=None" in source
