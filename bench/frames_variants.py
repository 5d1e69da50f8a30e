"""predict-frames train steps under `--set` variants, timed against each other in one process.

    .venv/bin/python bench/frames_variants.py '{"default": {}, "p2": {"simvp_patch": 2, "simvp_n_s": 2}}' [ROUNDS]

Each variant is the bench's frames_simvp workload (bench/workloads.py: the recipe predict-frames
picks with no options, built by frames.setup as the command builds it, one random uint8 batch)
changed by its `--set` items, under the training XLA flags and the `realsys` launcher's malloc
tunables (the script executes itself again with them, as the launcher does;
REALSYS_MALLOC_DEFAULTS=1 for glibc's defaults); interleaved rounds of 3 steps
(bench/interleaved.py). Prints per variant the median seconds a step, steps/s and its speed
relative to the first variant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from realsys_cli.launch import relaunch_with_tuned_malloc

relaunch_with_tuned_malloc()  # a user's `realsys predict-frames` runs with them

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax_worker  # noqa: E402

jax_worker.set_flags("training")  # before jax is imported, as `realsys predict-frames` does

import workloads  # noqa: E402
from interleaved import median_step_seconds  # noqa: E402


def build(sets: dict[str, Any]) -> workloads.Workload:
    wl = workloads.frames_simvp_workload([f"{k}={v}" for k, v in sets.items()])
    first = wl.run(1)  # trace + compile + one step
    print(f"{sets}: {wl.params:,} parameters, first call {first:.1f} s", file=sys.stderr)
    return wl


def main() -> None:
    variants = json.loads(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    runs = {name: build(sets).run for name, sets in variants.items()}
    med = median_step_seconds(runs, dict.fromkeys(runs, 3), rounds=rounds)
    base = next(iter(med.values()))
    for name, s in med.items():
        print(f"{name:20s} {s:.3f} s/step  {1 / s:.3f} step/s  speed vs first {base / s:.2f}")


if __name__ == "__main__":
    main()
