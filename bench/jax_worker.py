"""realsys's side of the speed benchmark: the PyTorch peer's workloads through realsys's own code.

Speaks the same JSON-lines protocol as ../shared/bench/peer_torch.py --serve, so bench/run.py
drives both sides identically:

    {"op": "info"}                                -> versions, XLA_FLAGS, devices
    {"op": "setup", "wl": NAME, "mode": "jit"}    -> params, first_s (compile + 1 step), step_s, ...
                                                     or {"skip": true, "reason": ...}
    {"op": "run", "wl": NAME, "mode": "jit", "n": N} -> {"t": seconds for N steps}
    {"op": "quit"}

    .venv/bin/python bench/jax_worker.py --flags training --serve
    .venv/bin/python bench/jax_worker.py --flags default --wl classifier_eval --n 5   # standalone

--flags training sets realsys_cli.xla_flags.TRAINING_CPU_FLAGS (what `realsys train-*` uses)
before jax is imported; --flags default leaves XLA's defaults (what inference commands use).
One process has one set of flags: the driver starts one worker per setting it needs.

The workloads (shapes, batch sizes and parameter counts are the peer's):
- classifier / classifier_small: the jitted train step of `realsys train-classifier`
  (classifier.setup.make_model / make_steps -> ClassifierSteps.make_train_step) with the recipe
  of configs/alexnet_shapes.toml (alexnet-small, 64 px: 4-px padded random crop, flips, fancy-PCA
  noise, SGD momentum 0.9 + weight decay, cosine schedule) and configs/lenet_digits.toml (lenet,
  28 px: no augmentation) at batch 128. The uint8 batch is already on the device; the step
  includes realsys's on-device augmentation and normalisation (the peer's step starts from
  float32 tensors), the optimizer update, and the loss/accuracy/lr metrics.
- classifier_eval: ClassifierSteps.make_predict (what `realsys classify` runs: uint8 -> centre
  crop -> normalise -> forward -> softmax), batch 128, alexnet-small.
- dcgan, frames, fool: realsys's own GAN, frame-prediction and fooling code, when it has landed.
  Each job module may expose `bench_workload(batch_size: int) -> dict` with keys
  "step" (a jitted function carry -> carry, one full step of the job), "carry" (its first input),
  "params" (int, or [G, D] for the GAN) and optionally "units_per_step" (1) and "unit" ("step").
  Until a module and its hook exist, the workload is reported as skipped with the reason; this
  file never writes its own version of those models.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def set_flags(which: str) -> str:
    """Set XLA_FLAGS for this process; must run before jax is imported."""
    assert "jax" not in sys.modules, "XLA flags must be set before jax is imported"
    os.environ.pop("REALSYS_XLA_DEFAULTS", None)
    if which == "training":
        from realsys_cli.xla_flags import TRAINING_CPU_FLAGS

        os.environ["XLA_FLAGS"] = " ".join(TRAINING_CPU_FLAGS)
    else:
        os.environ.pop("XLA_FLAGS", None)
    return os.environ.get("XLA_FLAGS", "")


class Skip(Exception):
    """The workload cannot be built from realsys's code (yet); the message says why."""


# ------------------------------------------------------------------------------ the workloads
BATCH = {"classifier": 128, "classifier_eval": 128, "classifier_small": 128,
         "dcgan": 64, "frames": 16, "fool": 16}
RECIPES = {"classifier": "alexnet_shapes.toml", "classifier_eval": "alexnet_shapes.toml",
           "classifier_small": "lenet_digits.toml"}
SIDES = {"classifier": (64, 3), "classifier_eval": (64, 3), "classifier_small": (28, 1)}


class Workload:
    """One step to time: `run(n)` runs n steps and waits for the last result."""

    unit = "img"
    units_per_step = 1
    params: Any = 0
    describe = ""

    def run(self, n: int) -> float:
        import jax

        t0 = time.perf_counter()
        out = None
        for _ in range(n):
            out = self.step()
        jax.block_until_ready(out)
        return time.perf_counter() - t0


class ClassifierWorkload(Workload):
    """realsys's classifier train step (or predict), built exactly as train-classifier does."""

    def __init__(self, name: str, overrides: dict[str, Any] | None = None):
        import jax
        import numpy as np

        from realsys_cli.classifier.augment import PixelStats
        from realsys_cli.classifier.config import ClassifierConfig
        from realsys_cli.classifier.setup import DataFacts, make_model, make_steps
        from realsys_cli.classifier.steps import count_params, init_state
        from realsys_cli.config import resolve_config
        from realsys_cli.training import distributed

        batch, (side, channels) = BATCH[name], SIDES[name]
        cfg = resolve_config(ClassifierConfig, config_file=ROOT / "configs" / RECIPES[name],
                             options={"batch_size": batch, **(overrides or {})})
        facts = DataFacts(tuple(f"class{i}" for i in range(10)), channels, side, side)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch, side, side, channels), dtype=np.uint8)
        labels = rng.integers(0, 10, (batch,)).astype(np.int32)
        stats = PixelStats.from_images(images)
        model = make_model(cfg, facts)
        steps = make_steps(cfg, facts, model, stats, total_steps=100_000)
        mesh = distributed.data_mesh()
        self.state = distributed.replicate(init_state(model, steps.tx, cfg.seed), mesh)
        self.params = count_params(self.state)
        self.graphdef, self.stats = steps.graphdef, stats
        self.units_per_step = batch
        self.describe = (f"{cfg.model} {side}px, {RECIPES[name]}: crop_padding={cfg.crop_padding} "
                         f"flip={cfg.flip} pca_noise={cfg.pca_noise} {cfg.optimizer} "
                         f"wd={cfg.weight_decay}")
        if name == "classifier_eval":
            self.batch = distributed.shard_batch({"image": images}, mesh)["image"]
            self.predict = steps.make_predict()
            self.step = lambda: self.predict(self.state["params"], self.state["rest"], self.batch)
            self.describe = f"{cfg.model} {side}px, make_predict (centre crop, softmax)"
        else:
            self.batch = distributed.shard_batch({"image": images, "label": labels}, mesh)
            self.train_step = steps.make_train_step()
            self.step = self._train
        jax.block_until_ready((self.state, self.batch))

    def _train(self) -> Any:
        self.state, metrics = self.train_step(self.state, self.batch)
        return self.state, metrics


class StepWorkload(Workload):
    """A jitted `step(carry) -> carry` of one of realsys's jobs (GAN, frames, fooling)."""

    unit = "step"

    def __init__(self, fn: Any, carry: Any, params: Any, describe: str,
                 units_per_step: int = 1, unit: str = "step"):
        self.fn, self.carry, self.params, self.describe = fn, carry, params, describe
        self.units_per_step, self.unit = units_per_step, unit

    def step(self) -> Any:
        self.carry = self.fn(self.carry)
        return self.carry


def _import(mod_name: str) -> Any | None:
    """The module, None when it does not exist (yet); Skip when it exists but fails to import."""
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name and mod_name.startswith(e.name):
            return None
        raise Skip(f"{mod_name} does not import: {e!r}"[:300]) from None
    except Exception as e:  # being written right now: may be half-done
        raise Skip(f"{mod_name} does not import: {e!r}"[:300]) from None


def _hook(name: str, mod_name: str) -> StepWorkload | None:
    """`mod_name.bench_workload(batch_size)` when the job module has landed with the hook."""
    module = _import(mod_name)
    fn = getattr(module, "bench_workload", None) if module is not None else None
    if fn is None:
        return None
    try:
        spec = fn(BATCH[name])
        return StepWorkload(spec["step"], spec["carry"], spec["params"],
                            f"{mod_name}.bench_workload", int(spec.get("units_per_step", 1)),
                            spec.get("unit", "step"))
    except Exception as e:
        raise Skip(f"{mod_name}.bench_workload failed: {e!r}"[:300]) from None


def frames_workload() -> StepWorkload:
    """realsys's ConvLSTM (models.convlstm.BenchConvLSTM, written for this workload), trained
    with BCE and realsys's Adam (training.optim) under one jit with the state donated: the
    peer's `frames` step. A `realsys_cli.frames.bench_workload` hook takes precedence."""
    hooked = _hook("frames", "realsys_cli.frames")
    if hooked is not None:
        return hooked
    module = _import("realsys_cli.models.convlstm")
    if module is None or not hasattr(module, "BenchConvLSTM"):
        raise Skip("not landed: realsys_cli.models.convlstm.BenchConvLSTM "
                   + ("is missing" if module is not None else "does not exist"))
    import jax
    import numpy as np
    import optax
    from flax import nnx

    from realsys_cli.training import optim

    try:
        model = module.BenchConvLSTM(rngs=nnx.Rngs(0))
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx = optim.build_optimizer(optim.OptimizerSpec(name="adam", learning_rate=1e-3,
                                                       weight_decay=0.0, schedule="constant"))
        rng = np.random.default_rng(0)
        seq = rng.random((BATCH["frames"], 11, 64, 64, 1), dtype=np.float32)  # (B, T+1, H, W, C)
        x, y = jax.device_put(seq[:, :10]), jax.device_put(seq[:, 10])

        def train_step(state: dict[str, Any]) -> dict[str, Any]:
            def loss_fn(p: Any) -> jax.Array:
                logits = nnx.merge(graphdef, p, rest, copy=True)(x)  # (B, 64, 64, 1)
                return optax.sigmoid_binary_cross_entropy(logits, y).mean()

            loss, grads = jax.value_and_grad(loss_fn)(state["params"])
            updates, opt = tx.update(grads, state["opt"], state["params"])
            return dict(params=optax.apply_updates(state["params"], updates), opt=opt, loss=loss)

        carry = dict(params=params, opt=tx.init(params), loss=jax.numpy.zeros(()))
        count = int(sum(a.size for a in jax.tree.leaves(params)))
    except Exception as e:  # the module is being written: its API may still move
        raise Skip(f"realsys_cli.models.convlstm API differs: {e!r}"[:300]) from None
    return StepWorkload(jax.jit(train_step, donate_argnums=0), carry, count,
                        "models.convlstm.BenchConvLSTM, Python-unrolled 10 steps; BCE + "
                        "training.optim adam; step glue in bench (realsys_cli.frames has no "
                        "bench_workload hook)")


def fool_workload() -> StepWorkload:
    """realsys's gradient-ascent step (fool.ascent.make_ascent_step, what `realsys fool` runs)
    on the classifier workload's network (alexnet-small, 64 px, untrained weights: the cost of
    a step does not depend on them), batch 16, one target class. Beyond the peer's step it
    rounds to the uint8 grid (straight-through), normalises the input, and records softmax
    milestones; all of it is part of realsys's step. A `realsys_cli.fool.bench_workload` hook
    takes precedence."""
    hooked = _hook("fool", "realsys_cli.fool")
    if hooked is not None:
        return hooked
    ascent = _import("realsys_cli.fool.ascent")
    target = _import("realsys_cli.fool.target")
    config = _import("realsys_cli.fool.config")
    if ascent is None or target is None or config is None:
        raise Skip("not landed: realsys_cli.fool.ascent / target / config do not all exist")
    import jax
    import jax.numpy as jnp
    import numpy as np

    try:
        base = ClassifierWorkload("classifier_eval")  # alexnet-small 64 px, its pixel stats
        # on one plain device, as fool.target.load_frozen puts them (mixed layouts compile twice)
        weights = jax.device_put((base.state["params"], base.state["rest"]), jax.devices()[0])
        net = target.FrozenClassifier(
            workdir=ROOT, graphdef=base.graphdef, weights=weights,
            stats=base.stats, class_names=tuple(f"class{i}" for i in range(10)), image_size=64,
            resize_size=64, in_channels=3, checkpoint="untrained")
        cfg = config.FoolConfig(method="ascent", batch_size=BATCH["fool"], ascent_steps=10**6)
        step = ascent.make_ascent_step(net, cfg)
        targets = np.full((BATCH["fool"],), 3)
        state = ascent.init_state(net, targets, 0, cfg.ascent_steps)
        carry = (state, 0)

        def run(c: Any) -> Any:  # as fool.ascent.ascend calls it
            return step(net.weights, c[0], jnp.asarray(c[1], jnp.int32)), c[1] + 1

        count = base.params
    except Exception as e:  # being written right now: its API may still move
        raise Skip(f"realsys_cli.fool API differs: {e!r}"[:300]) from None
    return StepWorkload(run, carry, count, "fool.ascent.make_ascent_step (quantise, normalise, "
                        "milestones), alexnet-small 64 px untrained")


def hook_only(name: str, modules: tuple[str, ...]) -> StepWorkload:
    present = []
    for mod_name in modules:
        hooked = _hook(name, mod_name)
        if hooked is not None:
            return hooked
        if _import(mod_name) is not None:
            present.append(mod_name)
    if not present:
        raise Skip(f"not landed: {' / '.join(modules)} does not exist")
    raise Skip(f"{', '.join(present)} exist(s) but without a bench_workload(batch_size) hook "
               "(see bench/jax_worker.py); the bench does not write its own version")


ADAPTERS = {
    "frames": frames_workload,
    "dcgan": lambda: hook_only("dcgan", ("realsys_cli.gan", "realsys_cli.models.dcgan")),
    "fool": fool_workload,
}


def build(name: str) -> Workload:
    if name in SIDES:
        return ClassifierWorkload(name)
    if name in ADAPTERS:
        return ADAPTERS[name]()
    raise Skip(f"unknown workload {name!r}")


def setup(name: str) -> tuple[Workload, dict[str, Any]]:
    t0 = time.perf_counter()
    w = build(name)
    t_build = time.perf_counter() - t0
    t_first = w.run(1)  # trace + XLA compile + one step
    t_second = w.run(1)
    t_third = w.run(1)
    return w, dict(params=w.params, build_s=t_build, first_s=t_first, second_s=t_second,
                   step_s=t_third, units_per_step=w.units_per_step, unit=w.unit,
                   describe=w.describe)


def info(flags: str) -> dict[str, Any]:
    import flax
    import jax
    import optax

    return dict(jax=jax.__version__, flax=flax.__version__, optax=optax.__version__,
                backend=jax.default_backend(), devices=jax.device_count(), xla_flags=flags)


def serve(flags: str) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines on the real stdout
    workloads: dict[str, Workload] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "info":
            r = info(flags)
        elif op == "setup":
            try:
                workloads[cmd["wl"]], r = setup(cmd["wl"])
            except Skip as e:
                r = dict(skip=True, reason=str(e))
            except Exception as e:
                r = dict(error=repr(e)[:500])
        elif op == "run":
            r = dict(t=workloads[cmd["wl"]].run(int(cmd["n"])))
        elif op == "quit":
            break
        else:
            r = dict(error=f"unknown op {op!r}")
        out.write(json.dumps(r) + "\n")
        out.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flags", choices=("training", "default"), default="training")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--wl", default="classifier_small,classifier,classifier_eval")
    ap.add_argument("--n", type=int, default=5)
    a = ap.parse_args()
    flags = set_flags(a.flags)
    if a.serve:
        return serve(flags)
    print(json.dumps(info(flags)), flush=True)
    for name in a.wl.split(","):
        try:
            w, r = setup(name)
        except Skip as e:
            print(json.dumps(dict(workload=name, skip=True, reason=str(e))), flush=True)
            continue
        t = min(w.run(a.n) for _ in range(3))
        print(json.dumps(dict(workload=name, rate=a.n * w.units_per_step / t, **r)), flush=True)


if __name__ == "__main__":
    main()
