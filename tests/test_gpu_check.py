"""bench/gpu_check.py, the one-shot speed check for a lent GPU, run here on the CPU with --quick.

The script runs in a subprocess, as a developer runs it: conftest's 4 fake CPU devices are
taken out of XLA_FLAGS (one device, as on the GPU machine) and the default backend is the CPU.
The whole --quick run (AlexNet 224 px + the six bench workloads) takes about a minute on the
shared 2-core machine, so it is `slow`; the default suite runs one small workload through the
same main() and checks the FLOP counting without compiling AlexNet.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
WORKLOADS = ("classifier_small", "classifier", "classifier_eval", "dcgan", "frames", "fool")
TOP_FIELDS = ("script", "quick", "argv", "date", "host", "python", "jax", "jaxlib", "flax",
              "optax", "backend", "device_kind", "platform_version", "devices", "cpus",
              "load_before", "load_after", "xla_flags", "compilation_cache_dir", "timing",
              "workloads", "errors", "total_s")
RATE_FIELDS = ("first_call_s", "first_call_trace_s", "first_call_lower_s",
               "first_call_compile_s", "step_s", "rate", "rate_min", "rate_max", "rates",
               "rounds", "steps_per_round", "warmup_steps", "unit", "params", "batch",
               "build_s", "describe")
ALEXNET_FIELDS = ("model", "recipe", "dtype", "image_size", "resize_size", "num_classes",
                  "images_per_s", "flops_per_step", "flops_source", "flops_per_step_xla",
                  "flops_per_step_analytic", "flops_per_step_analytic_forward",
                  "flops_xla_over_analytic", "flops_per_image", "tflops", "peak_tflops",
                  "peak_source", "peak_fraction", "peak_bytes_in_use", "cost_analysis_s")
# Side of each convolution's output at 224 px: conv1 11x11/4 pad 2 -> 55, pool 3/2 -> 27,
# conv2 (pad 2) 27, pool -> 13, conv3..conv5 (pad 1) 13.
ALEXNET_CONV_SIDES = (55, 27, 13, 13, 13)


def load_script():
    """bench/gpu_check.py as a module (bench/ is scripts, not a package); imports no jax."""
    spec = importlib.util.spec_from_file_location("bench_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alexnet_train_flops(batch: int, num_classes: int = 10) -> float:
    """Forward + backward FLOPs of one train step of the single-tower AlexNet at 224 px, from
    the model's own kernel shapes (abstract: nnx.eval_shape, nothing is initialised).

    Each conv: out_side^2 x (k x k x C_in x C_out) multiply-adds; each linear d_in x d_out.
    At 10 classes that is 1.13 G multiply-adds an image (the paper's two-GPU net, with conv2,
    conv4 and conv5 grouped, is the often-quoted 0.72 G), 2.26 GFLOP forward, and the backward
    pass about twice the forward: ~6.8 GFLOP an image for a train step.
    """
    import jax.numpy as jnp
    from flax import nnx

    from realsys_cli.models.alexnet import AlexNet

    model = nnx.eval_shape(lambda: AlexNet(num_classes=num_classes, image_size=224,
                                           dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
    macs = 0
    for i, side in enumerate(ALEXNET_CONV_SIDES, start=1):
        kh, kw, c_in, c_out = getattr(model, f"conv{i}").kernel.shape
        macs += side * side * kh * kw * c_in * c_out
    assert model.fc6.kernel.shape == (6 * 6 * 256, 4096)  # the paper's 9216 flatten
    for name in ("fc6", "fc7", "fc8"):
        d_in, d_out = getattr(model, name).kernel.shape
        macs += d_in * d_out
    assert 1.10e9 < macs < 1.16e9
    return 3 * 2.0 * macs * batch


def run_script(tmp_path: Path, *args: str) -> tuple[dict, dict]:
    """Run the script; returns (stdout's JSON, the --out file's JSON)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if not f.startswith("--xla_force_host_platform_device_count"))
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), json.loads(out.read_text())  # stdout is only the JSON


def check_rates(row: dict) -> None:
    missing = [f for f in RATE_FIELDS if f not in row]
    assert not missing, missing
    assert row["rate"] > 0 and row["first_call_s"] > 0 and row["step_s"] > 0
    assert row["first_call_compile_s"] > 0  # jax.monitoring saw XLA compile it
    assert row["rounds"] == 1 and row["steps_per_round"] == 1 and row["warmup_steps"] == 0
    assert row["rate_min"] <= row["rate"] <= row["rate_max"]


def check_top(result: dict) -> None:
    missing = [f for f in TOP_FIELDS if f not in result]
    assert not missing, missing
    assert result["quick"] is True and result["backend"] == "cpu" and result["devices"] == 1
    assert result["errors"] == {}


@pytest.mark.slow
def test_quick_run_of_one_workload(tmp_path):
    printed, written = run_script(tmp_path, "--no-alexnet", "--workloads", "classifier_eval")
    assert printed == written
    check_top(printed)
    assert "alexnet" not in printed and set(printed["workloads"]) == {"classifier_eval"}
    row = printed["workloads"]["classifier_eval"]
    check_rates(row)
    assert row["unit"] == "img/s" and row["batch"] == 2


@pytest.mark.slow
def test_quick_run_of_everything(tmp_path):
    printed, written = run_script(tmp_path)
    assert printed == written
    check_top(printed)
    a = printed["alexnet"]
    missing = [f for f in ALEXNET_FIELDS if f not in a]
    assert not missing, missing
    check_rates(a)
    assert (a["model"], a["dtype"], a["image_size"], a["resize_size"], a["batch"]) == (
        "alexnet", "bfloat16", 224, 256, 2)
    assert a["params"] == 58_322_314  # 62,378,344 at 1000 classes, fc8 at 10
    assert a["images_per_s"] == a["rate"] > 0
    estimate = alexnet_train_flops(a["batch"])
    assert a["flops_per_step"] > 0
    assert estimate / 2 <= a["flops_per_step"] <= 2 * estimate, (a["flops_per_step"], estimate)
    assert a["flops_per_step_analytic"] == pytest.approx(estimate, rel=1e-6)
    # the CPU backend does have a cost analysis: the number used is XLA's own
    assert a["flops_source"] == "xla_cost_analysis"
    assert a["flops_per_step"] == a["flops_per_step_xla"]
    assert a["tflops"] == pytest.approx(a["flops_per_step"] * a["rate"] / a["batch"] / 1e12)
    assert 0 < a["peak_fraction"] < 1 and a["peak_tflops"] > 0
    assert set(printed["workloads"]) == set(WORKLOADS)
    for name, row in printed["workloads"].items():
        check_rates(row)
        assert row["unit"] == ("step/s" if name in ("dcgan", "frames", "fool") else "img/s")


def test_analytic_flops_match_the_layer_shapes():
    from flax import nnx

    from realsys_cli.models.alexnet import AlexNet

    gpu_check = load_script()
    model = nnx.eval_shape(lambda: AlexNet(num_classes=10, image_size=224, rngs=nnx.Rngs(0)))
    counted = gpu_check.alexnet_flops_analytic(model, 224, 4)
    assert counted["train_step"] == pytest.approx(alexnet_train_flops(4), rel=1e-9)
    assert counted["train_step"] == pytest.approx(3 * counted["forward"])


def test_cost_analysis_shapes_and_peaks():
    gpu_check = load_script()

    class Compiled:
        def __init__(self, cost):
            self.cost = cost

        def cost_analysis(self):
            if isinstance(self.cost, Exception):
                raise self.cost
            return self.cost

    assert gpu_check.xla_flops(Compiled({"flops": 5.0, "bytes accessed": 1.0})) == 5.0
    assert gpu_check.xla_flops(Compiled([{"flops": 7.0}])) == 7.0  # older jax: one per program
    for nothing in (None, {}, [], {"flops": 0.0}, NotImplementedError("no cost model")):
        assert gpu_check.xla_flops(Compiled(nothing)) is None
    assert gpu_check.peak_tflops("NVIDIA H200", None)[1] == 989.4
    assert gpu_check.peak_tflops("NVIDIA H200 NVL", None)[1] == 835.0
    assert gpu_check.peak_tflops("cpu", 790.0) == ("--peak-tflops", 790.0)
