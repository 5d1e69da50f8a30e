"""One prepared speed check for a lent GPU: AlexNet 224 px in bfloat16, then the bench's workloads.

    .venv/bin/python bench/gpu_check.py --out docs/gpu_check.json   # on the GPU machine
    .venv/bin/python bench/gpu_check.py --quick                     # CPU smoke run (< 1 min)

1. AlexNet (the paper's, `realsys_cli.models.alexnet.AlexNet`) at 224 px, bfloat16 compute,
   trained by the jitted step `realsys train-classifier --bf16` builds for the alexnet_imagenette
   recipe (classifier.setup.make_model / make_steps -> ClassifierSteps.make_train_step: on-device
   random 224 crop of 256-px uint8 images, flips, fancy-PCA noise, SGD momentum + weight decay),
   on one synthetic batch held on the device (10 classes, as Imagenette). It reports:
   - images/s, the median of timed rounds after warm-up;
   - the first call's seconds (trace + compile + one step, as bench/jax_worker.py's first_s)
     and, within them, what jax reports (jax.monitoring events) for tracing, lowering and
     XLA's compile;
   - the FLOPs of one step from XLA's cost analysis of the compiled step
     (`jit.lower(...).compile().cost_analysis()["flops"]`), next to the analytic count of the
     model's convolutions and matmuls (x3 for forward + backward); the analytic one is used
     when XLA gives none or one more than 2x off it, and flops_source says which;
   - the achieved TFLOP/s and its fraction of the device's dense bf16 peak (a datasheet
     number looked up from the device kind, or --peak-tflops).
2. The six workloads of bench/workloads.py (classifier_small, classifier, classifier_eval,
   dcgan, frames, fool), realsys's side only (no PyTorch peer), on the default JAX backend:
   rate in their units and first-call seconds.

stdout gets one JSON object and nothing else; progress goes to stderr; --out FILE writes the
same JSON. --quick shrinks every size (batch 2, one timed round of one step, no warm-up) and
runs the same code paths, so that the whole script runs on a 2-core CPU in well under a minute
(tests/test_gpu_check.py runs it so).

XLA flags: the process sets realsys's training flags before jax is imported, as
`realsys train-*` does (realsys_cli.xla_flags; a user's own XLA_FLAGS win). They are CPU-only
flags: on a GPU they change nothing. On a CPU, note that the bench measures classifier_eval with
the inference flags (one process has one set of flags); here it runs with the training flags.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]

WORKLOADS = ("classifier_small", "classifier", "classifier_eval", "dcgan", "frames", "fool")
ALEXNET_RECIPE = "alexnet_imagenette"  # alexnet, 224 px crops of 256-px images, SGD
NUM_CLASSES = 10  # Imagenette's
# Dense (no 2:4 sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s, matched
# against jax's device_kind in this order; --peak-tflops overrides.
PEAK_BF16_TFLOPS = (("H200 NVL", 835.0), ("H200", 989.4), ("H100 NVL", 835.0),
                    ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0))
DEFAULT_PEAK = ("H200 SXM (default)", 989.4)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def alexnet_flops_analytic(model: Any, image_size: int, batch: int) -> dict[str, float]:
    """FLOPs of AlexNet's convolutions and linear layers from the model's own kernel shapes.

    A layer's forward pass is 2 x (multiply-adds); its backward pass about twice that (the
    input's and the weights' gradients), so a train step is ~3x forward. Elementwise work
    (ReLU, LRN, pools, the optimizer) is left out: under 1% of the total at 224 px.
    """
    from realsys_cli.models.layers import conv_size

    layout = type(model).LAYOUT
    side, macs = image_size, 0
    for i, (_, kernel, stride, pad, _) in enumerate(layout.convs, start=1):
        kh, kw, c_in, c_out = getattr(model, f"conv{i}").kernel.shape  # (k, k, C_in, C_out)
        side = conv_size(side, kernel, stride, pad)  # 55, 27, 13, 13, 13 at 224 px
        macs += side * side * kh * kw * c_in * c_out
        if i in (1, 2, 5):  # max-pool 3/2 after conv1, conv2, conv5: 27, 13, 6
            side = conv_size(side, *layout.pool)
    for name in layout.fc_names:
        d_in, d_out = getattr(model, name).kernel.shape  # (9216, 4096), ..., (4096, K)
        macs += d_in * d_out
    forward = 2.0 * macs * batch
    return {"forward": forward, "train_step": 3.0 * forward}


def xla_flops(compiled: Any) -> float | None:
    """The "flops" of XLA's cost analysis of a compiled step (a dict, or a list of one dict per
    program in older jax), or None when the backend gives none."""
    try:
        cost = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError) as e:  # not every backend implements it
        say(f"  cost analysis unavailable: {e!r}")
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = float(cost.get("flops", 0.0)) if isinstance(cost, dict) else 0.0
    return flops if flops > 0 else None


def peak_tflops(device_kind: str, override: float | None) -> tuple[str, float]:
    if override:
        return "--peak-tflops", override
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_kind.lower():
            return f"{key} dense bf16 (datasheet)", value
    return DEFAULT_PEAK


def round_to_devices(batch: int) -> int:
    """The global batch is split over every device: round up to a multiple of their count."""
    import jax

    n = jax.device_count()
    return -(-batch // n) * n


class CompileEvents:
    """Seconds jax reports (jax.monitoring duration events) while the block runs: tracing to a
    jaxpr, lowering to StableHLO and XLA's backend compile, summed over every program."""

    EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
              "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
              "/jax/core/compile/backend_compile_duration": "compile_s"}

    def __enter__(self) -> dict[str, float]:
        import jax.monitoring

        self.seconds = dict.fromkeys(self.EVENTS.values(), 0.0)
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self.seconds

    def _listen(self, event: str, duration: float, **_: Any) -> None:
        if event in self.EVENTS:
            self.seconds[self.EVENTS[event]] += duration

    def __exit__(self, *exc: Any) -> None:
        import jax.monitoring

        jax.monitoring.unregister_event_duration_listener(self._listen)


def time_rounds(w: Any, *, warmup: int, rounds: int, round_seconds: float,
                steps: int) -> dict[str, Any]:
    """First call, warm-up, then `rounds` timed runs of n steps (Workload.run blocks on the
    last result with jax.block_until_ready); rate = median over rounds, in w.unit/s."""
    with CompileEvents() as seconds:
        first = w.run(1)  # trace + lower + XLA compile + one step
    if warmup:
        w.run(warmup)
    step_s = w.run(1)
    n = steps or max(1, round(round_seconds / max(step_s, 1e-6)))
    rates = [n * w.units_per_step / w.run(n) for _ in range(rounds)]
    return {"first_call_s": first, **{f"first_call_{k}": v for k, v in seconds.items()},
            "step_s": step_s, "warmup_steps": warmup, "rounds": rounds, "steps_per_round": n,
            "rate": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates),
            "rates": rates, "unit": f"{w.unit}/s"}


def make_alexnet(batch: int, workloads: Any) -> Any:
    """train-classifier's bf16 AlexNet step on one synthetic uint8 batch (B, 256, 256, 3)."""
    import jax
    import numpy as np

    from realsys_cli.classifier.augment import PixelStats
    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.classifier.setup import DataFacts, make_model, make_steps
    from realsys_cli.classifier.steps import init_state
    from realsys_cli.config import recipe_path, resolve_config
    from realsys_cli.models import count_params
    from realsys_cli.training import distributed

    class AlexNetTrain(workloads.Workload):
        def __init__(self) -> None:
            # what `realsys train-classifier --config alexnet_imagenette --bf16 --batch-size B`
            # resolves
            cfg = resolve_config(ClassifierConfig, config_file=recipe_path(ALEXNET_RECIPE),
                                 options={"batch_size": batch, "dtype": "bfloat16"})
            facts = DataFacts(tuple(f"class{i}" for i in range(NUM_CLASSES)), 3,
                              cfg.image_size, cfg.resize_size)  # 224-px crops of 256-px images
            rng = np.random.default_rng(0)
            r = facts.resize_size
            images = rng.integers(0, 256, (batch, r, r, 3), dtype=np.uint8)  # (B, 256, 256, 3)
            labels = rng.integers(0, NUM_CLASSES, (batch,)).astype(np.int32)  # (B,)
            stats = PixelStats.from_images(images[:16])  # a sample, as train-classifier's
            self.model = make_model(cfg, facts)
            steps = make_steps(cfg, facts, model=self.model, stats=stats, total_steps=100_000)
            mesh = distributed.data_mesh()
            self.state = distributed.replicate(init_state(self.model, steps.tx, cfg.seed), mesh)
            self.batch = distributed.shard_batch({"image": images, "label": labels}, mesh)
            self.train_step = steps.make_train_step()  # jax.jit(..., donate_argnums=0)
            self.params = count_params(self.state["params"])
            self.units_per_step, self.cfg, self.facts = batch, cfg, facts
            self.describe = (f"{cfg.model} {facts.image_size}px (crops of {facts.resize_size}px) "
                             f"{cfg.dtype}, {ALEXNET_RECIPE}: flip={cfg.flip} "
                             f"pca_noise={cfg.pca_noise} {cfg.optimizer} "
                             f"momentum={cfg.momentum} wd={cfg.weight_decay}")
            jax.block_until_ready((self.state, self.batch))

        def step(self) -> Any:
            self.state, metrics = self.train_step(self.state, self.batch)
            return self.state, metrics

    return AlexNetTrain()


def check_alexnet(a: argparse.Namespace, timing: dict[str, Any], workloads: Any,
                  device_kind: str) -> dict[str, Any]:
    import jax

    batch = round_to_devices(a.batch)
    say(f"alexnet: building (batch {batch}, bf16, 224 px)")
    t0 = time.perf_counter()
    w = make_alexnet(batch, workloads)
    build_s = time.perf_counter() - t0
    say(f"alexnet: {w.params:,} params, built in {build_s:.1f} s; first call (compile) ...")
    row: dict[str, Any] = {"model": w.cfg.model, "recipe": ALEXNET_RECIPE, "dtype": w.cfg.dtype,
                           "image_size": w.facts.image_size, "resize_size": w.facts.resize_size,
                           "num_classes": NUM_CLASSES, "batch": batch, "params": w.params,
                           "describe": w.describe, "build_s": build_s}
    row.update(time_rounds(w, **timing))
    row["images_per_s"] = row["rate"]
    say(f"alexnet: first call {row['first_call_s']:.2f} s, {row['images_per_s']:.1f} img/s "
        f"(rounds {[round(r, 1) for r in row['rates']]})")

    # XLA's own count for the step just timed: the same jit lowered for the same (state, batch)
    # avals; jax reuses the executable of the first call, so this compiles nothing again.
    t0 = time.perf_counter()
    compiled = w.train_step.lower(w.state, w.batch).compile()
    row["cost_analysis_s"] = time.perf_counter() - t0
    analytic = alexnet_flops_analytic(w.model, w.facts.image_size, batch)
    counted = xla_flops(compiled)
    row["flops_per_step_xla"] = counted
    row["flops_per_step_analytic"] = analytic["train_step"]
    row["flops_per_step_analytic_forward"] = analytic["forward"]
    ratio = None if counted is None else counted / analytic["train_step"]
    row["flops_xla_over_analytic"] = ratio
    if ratio is None:
        row["flops_per_step"], row["flops_source"] = analytic["train_step"], "analytic"
    elif not 0.5 <= ratio <= 2.0:
        # a count this far from the layers' own arithmetic leaves work out (e.g. library calls
        # the cost model does not price): the rate uses the analytic count and says so
        row["flops_per_step"] = analytic["train_step"]
        row["flops_source"] = f"analytic (XLA's count is {ratio:.3g}x it, not used)"
    else:
        row["flops_per_step"], row["flops_source"] = counted, "xla_cost_analysis"
    row["flops_per_image"] = row["flops_per_step"] / batch
    row["tflops"] = row["flops_per_step"] * row["rate"] / batch / 1e12
    row["peak_source"], row["peak_tflops"] = peak_tflops(device_kind, a.peak_tflops)
    row["peak_fraction"] = row["tflops"] / row["peak_tflops"]
    stats = jax.devices()[0].memory_stats() or {}  # None on CPU
    row["peak_bytes_in_use"] = stats.get("peak_bytes_in_use")
    say(f"alexnet: XLA compile {row['first_call_compile_s']:.2f} s; "
        f"{row['flops_per_step']:.4g} FLOP/step "
        f"({row['flops_source']}; analytic {analytic['train_step']:.4g}); "
        f"{row['tflops']:.4g} TFLOP/s = {row['peak_fraction']:.2%} of {row['peak_tflops']:g}")
    del w, compiled
    gc.collect()
    return row


def check_workload(name: str, timing: dict[str, Any], workloads: Any) -> dict[str, Any]:
    say(f"{name}: building (batch {workloads.BATCH[name]})")
    t0 = time.perf_counter()
    w = workloads.build(name)
    row: dict[str, Any] = {"batch": workloads.BATCH[name], "build_s": time.perf_counter() - t0,
                           "params": w.params, "describe": w.describe,
                           "xla_flags": "training"}
    row.update(time_rounds(w, **timing))
    say(f"{name}: first call {row['first_call_s']:.2f} s, {row['rate']:.4g} {row['unit']}")
    del w
    gc.collect()
    return row


def environment(flags_set: bool) -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import optax

    dev = jax.devices()[0]
    try:  # e.g. "cuda 12080"; informative only
        platform_version = str(dev.client.platform_version)
    except Exception:
        platform_version = None
    now = datetime.datetime.now().astimezone()
    return {"date": now.isoformat(timespec="seconds"), "host": platform.node(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
            "backend": jax.default_backend(), "device_kind": dev.device_kind,
            "platform_version": platform_version, "devices": jax.device_count(),
            "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()],
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            # a persistent compilation cache would make the first-call seconds a cache read
            "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
            "realsys_training_flags_set": flags_set}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--batch", type=int, default=None,
                    help="AlexNet's global batch (default 256; 2 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; --quick 1)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps after the first call (default 3; --quick 0)")
    ap.add_argument("--round-seconds", type=float, default=2.0,
                    help="length of one timed round (the step count follows from one step)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per timed round instead of --round-seconds (--quick: 1)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="bench workloads to time, comma-separated, or 'none'")
    ap.add_argument("--no-alexnet", action="store_true", help="skip the AlexNet 224 px check")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the dense bf16 peak to divide by (default: from the device kind; "
                         "H200 SXM 989.4)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (batch 2, 1 round of 1 step): a smoke run on a CPU")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    a = ap.parse_args(argv)
    a.batch = a.batch or (2 if a.quick else 256)
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.warmup = a.warmup if a.warmup is not None else (0 if a.quick else 3)
    a.steps = a.steps or (1 if a.quick else 0)
    names = [] if a.workloads == "none" else [x.strip() for x in a.workloads.split(",")
                                               if x.strip()]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; from: {', '.join(WORKLOADS)}")
    if a.batch < 1 or a.rounds < 1 or a.warmup < 0:
        ap.error("--batch and --rounds must be >= 1, --warmup >= 0")
    a.names = names
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the check; returns the JSON object (also printed on stdout, and written to --out)."""
    a = parse_args(argv)
    from realsys_cli.xla_flags import use_training_flags

    flags_set = use_training_flags()  # before jax is imported (a no-op if it already is)
    started = time.perf_counter()
    out, sys.stdout = sys.stdout, sys.stderr  # only the JSON on the real stdout
    try:
        import workloads  # imports jax

        result: dict[str, Any] = {"script": "bench/gpu_check.py", "quick": a.quick,
                                  "argv": sys.argv[1:] if argv is None else list(argv),
                                  **environment(flags_set)}
        say(f"{result['backend']} ({result['device_kind']}, {result['devices']} device(s)), "
            f"jax {result['jax']}, flax {result['flax']}")
        timing = {"warmup": a.warmup, "rounds": a.rounds, "round_seconds": a.round_seconds,
                  "steps": a.steps}
        result["timing"] = timing
        errors: dict[str, str] = {}
        if not a.no_alexnet:
            try:
                result["alexnet"] = check_alexnet(a, timing, workloads, result["device_kind"])
            except Exception as e:  # keep going: the lent device time is short
                errors["alexnet"] = repr(e)[:1000]
                say(f"alexnet: FAILED {e!r}")
        result["workloads"] = {}
        if a.quick:  # every bench batch shrunk (fool builds on classifier_eval's), same builders
            for name in workloads.BATCH:
                workloads.BATCH[name] = round_to_devices(a.batch)
        for name in a.names:
            try:
                result["workloads"][name] = check_workload(name, timing, workloads)
            except Exception as e:
                errors[name] = repr(e)[:1000]
                say(f"{name}: FAILED {e!r}")
        result["errors"] = errors
        result["load_after"] = [round(x, 2) for x in os.getloadavg()]
        result["total_s"] = time.perf_counter() - started
    finally:
        sys.stdout = out
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
        say(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    sys.exit(1 if main()["errors"] else 0)
