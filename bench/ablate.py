"""Where realsys's classifier train step spends its time: the step against variants of itself.

    .venv/bin/python bench/ablate.py --wl classifier [--flags training] [--rounds 5]

Variants, timed in interleaved rounds in one process (same XLA flags, same machine moment):
  realsys      ClassifierSteps.make_train_step with the workload's recipe (bench/workloads.py)
  no-augment   the same with crop_padding=0, flip=False, pca_noise=0 (only /255 + normalise)
  no-wd        the same with weight_decay=0
  bare         realsys's model alone: float32 input, cross-entropy, optax.sgd(momentum 0.9),
               no augmentation, no metrics, no schedule (what the peer's step does)
Prints the median seconds a step and each variant's speed relative to `realsys`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax_worker  # noqa: E402
from interleaved import median_step_seconds  # noqa: E402


def bare(name: str) -> Any:
    """realsys's network in a minimal jitted SGD step (the peer's step, in JAX)."""
    import jax
    import numpy as np
    import optax
    from flax import nnx
    from workloads import BATCH, RECIPES, SIDES, StepWorkload

    from realsys_cli.classifier.config import ClassifierConfig
    from realsys_cli.classifier.setup import DataFacts, make_model
    from realsys_cli.config import recipe_path, resolve_config
    from realsys_cli.models import count_params

    batch, (side, channels) = BATCH[name], SIDES[name]
    cfg = resolve_config(ClassifierConfig, config_file=recipe_path(RECIPES[name]))
    facts = DataFacts(tuple(f"class{i}" for i in range(10)), channels, side, side)
    model = make_model(cfg, facts)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.sgd(0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.random((batch, side, side, channels), dtype=np.float32))
    y = jax.device_put(rng.integers(0, 10, (batch,)).astype(np.int32))

    def step(state: dict[str, Any]) -> dict[str, Any]:
        def loss_fn(p: Any, r: Any) -> tuple[jax.Array, Any]:
            m = nnx.merge(graphdef, p, r, copy=True)
            loss = optax.softmax_cross_entropy_with_integer_labels(m(x, train=True), y)
            return loss.mean(), nnx.state(m, nnx.Not(nnx.Param))

        (_, r), g = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], state["rest"])
        updates, opt = tx.update(g, state["opt"], state["params"])
        return dict(params=optax.apply_updates(state["params"], updates), rest=r, opt=opt)

    return StepWorkload(jax.jit(step, donate_argnums=0),
                        dict(params=params, rest=rest, opt=tx.init(params)),
                        count_params(params), "bare", units_per_step=batch, unit="img")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wl", default="classifier", choices=("classifier", "classifier_small"))
    ap.add_argument("--flags", choices=("training", "default"), default="training")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-seconds", type=float, default=3.0)
    ap.add_argument("--variants", default="realsys,no-augment,no-wd,bare")
    a = ap.parse_args()
    flags = jax_worker.set_flags(a.flags)
    from workloads import ClassifierWorkload  # imports jax: only after set_flags

    make = {
        "realsys": lambda: ClassifierWorkload(a.wl),
        "no-augment": lambda: ClassifierWorkload(
            a.wl, {"crop_padding": 0, "flip": False, "pca_noise": 0.0}),
        "no-wd": lambda: ClassifierWorkload(a.wl, {"weight_decay": 0.0}),
        "bare": lambda: bare(a.wl),
    }
    names = a.variants.split(",")
    work, n, first = {}, {}, {}
    for name in names:
        work[name] = make[name]()
        first[name] = work[name].run(1)
        work[name].run(1)
        n[name] = max(1, round(a.round_seconds / work[name].run(1)))
        print(f"{name}: first call {first[name]:.2f} s, {n[name]} steps a round", file=sys.stderr)
    medians = median_step_seconds({name: work[name].run for name in names}, n,
                                  rounds=a.rounds)
    base = medians.get("realsys")
    out = {"workload": a.wl, "xla_flags": flags, "variants": {}}
    for name in names:
        s = medians[name]
        out["variants"][name] = {"step_s": s, "img_per_s": work[name].units_per_step / s,
                                 "speed_vs_realsys": base / s if base else None,
                                 "params": work[name].params, "first_call_s": first[name]}
        print(f"{a.wl:17s} {name:11s} {s * 1000:8.1f} ms/step {work[name].units_per_step / s:8.1f}"
              f" img/s" + (f"  x{base / s:.2f} vs realsys" if base else ""))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
