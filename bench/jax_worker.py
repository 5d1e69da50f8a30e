"""realsys's side of the speed benchmark: the PyTorch peer's workloads through realsys's own code.

Speaks the same JSON-lines protocol as bench/peer_torch.py --serve, so bench/run.py drives both
sides identically:

    {"op": "info"}                                -> versions, XLA_FLAGS, devices
    {"op": "setup", "wl": NAME, "mode": "jit"}    -> params, first_s (compile + 1 step), step_s, ...
                                                     or {"skip": true, "reason": ...}
    {"op": "run", "wl": NAME, "mode": "jit", "n": N} -> {"t": seconds for N steps}
    {"op": "quit"}

    .venv/bin/python bench/jax_worker.py --flags training --serve
    .venv/bin/python bench/jax_worker.py --flags default --wl classifier_eval --n 5   # standalone

--flags training / inference sets realsys_cli.xla_flags.FLAG_SETS[...] before jax is imported
(what `realsys train-*` and fool's gradient methods use / what evaluate and classify use);
--flags default leaves XLA's defaults.
One process has one set of flags: the driver starts one worker per setting it needs.

The workloads (classifier, classifier_small, classifier_eval, dcgan, frames, fool) are built in
bench/workloads.py from realsys's public pieces; the library holds no bench code.
"""

from __future__ import annotations

import argparse
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
    from realsys_cli.xla_flags import FLAG_SETS

    os.environ["XLA_FLAGS"] = " ".join(FLAG_SETS[which])
    return os.environ["XLA_FLAGS"]


def setup(name: str) -> tuple[Any, dict[str, Any]]:
    from workloads import build  # imports jax: only after set_flags

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
    from workloads import Skip

    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines on the real stdout
    built: dict[str, Any] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "info":
            r = info(flags)
        elif op == "setup":
            try:
                built[cmd["wl"]], r = setup(cmd["wl"])
            except Skip as e:
                r = dict(skip=True, reason=str(e))
            except Exception as e:
                r = dict(error=repr(e)[:500])
        elif op == "run":
            r = dict(t=built[cmd["wl"]].run(int(cmd["n"])))
        elif op == "quit":
            break
        else:
            r = dict(error=f"unknown op {op!r}")
        out.write(json.dumps(r) + "\n")
        out.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flags", choices=("training", "inference", "default"), default="training")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--wl", default="classifier_small,classifier,classifier_eval")
    ap.add_argument("--n", type=int, default=5)
    a = ap.parse_args()
    flags = set_flags(a.flags)
    if a.serve:
        return serve(flags)
    from workloads import Skip

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
