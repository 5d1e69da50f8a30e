"""Every trainer scales out the same way: two local processes under jax.distributed (gloo on
CPU, one device each) train one model together, each reading its own shard of the data, and
agree on every result. Slow (two fresh JAX processes each): `make test-slow`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

FRAMES = """
import json, sys
from realsys_cli.frames.config import FramesConfig
from realsys_cli.frames.train import train_and_evaluate
from realsys_cli.training.distributed import ClusterSpec

cfg = FramesConfig(dataset="moving-digits/train=32,test=8,frames=8", input_frames=3,
                   output_frames=2, hidden_channels=(8,), kernel_size=3, batch_size=8,
                   num_epochs=2, log_every_steps=2, warmup_steps=2)
result = train_and_evaluate(cfg, sys.argv[1], cluster=ClusterSpec(sys.argv[2], 2,
                                                                  int(sys.argv[3])))
print(json.dumps(result))
"""

GAN = """
import json, sys
from realsys_cli.gan.config import GanConfig
from realsys_cli.gan.train import train_and_evaluate
from realsys_cli.training.distributed import ClusterSpec

cfg = GanConfig(dataset="digits/train=256,test=64", width=4, batch_size=32, num_epochs=2,
                latent_distribution="normal", fid_samples=64, grid_samples=16, judge_epochs=1)
result = train_and_evaluate(cfg, sys.argv[1], cluster=ClusterSpec(sys.argv[2], 2,
                                                                  int(sys.argv[3])))
print(json.dumps(result))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(script: str, workdir, timeout: float = 300) -> list[dict]:
    """`script` (argv: workdir, coordinator address, process id) in two processes; the JSON
    each printed last."""
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(workdir), address, str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        errors = [p.communicate()[1][-1000:] for p in procs]
        pytest.fail(f"the two processes did not finish in {timeout:g} s: {errors}")
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_predict_frames_on_two_processes(tmp_path):
    results = run_two_processes(FRAMES, tmp_path / "w")
    assert [r["processes"] for r in results] == [2, 2]
    assert [r["devices"] for r in results] == [2, 2]
    assert results[0]["steps"] == 8  # 2 epochs of 32 clips / global batch 8
    assert results[0]["mse_per_frame"] == results[1]["mse_per_frame"]
    assert results[0]["eval_sequences"] == 8  # every test clip scored once, over both shards
    assert (tmp_path / "w" / "result.json").is_file()


def test_train_gan_on_two_processes(tmp_path):
    """The judge is trained by both processes together too (into WORKDIR/judge); every
    process measures FID on the same local copy of G, so all agree on the best checkpoint."""
    results = run_two_processes(GAN, tmp_path / "w")
    assert [r["processes"] for r in results] == [2, 2]
    assert results[0]["steps"] == 16  # 2 epochs of 256 images / global batch 32
    assert results[0]["fid"] == results[1]["fid"]
    assert results[0]["class_coverage"] == results[1]["class_coverage"]
    assert (tmp_path / "w" / "result.json").is_file()
    assert (tmp_path / "w" / "samples" / "epoch_002.png").is_file()
