"""predict-frames train steps under `--set` variants, timed against each other in one process.

    .venv/bin/python bench/frames_variants.py '{"default": {}, "p2": {"simvp_patch": 2, "simvp_n_s": 2}}' [ROUNDS]

Each variant is the recipe predict-frames picks with no options, changed by its `--set` items,
built by frames.setup as the command builds it (training XLA flags), fed one random uint8 batch
of its own batch size; interleaved rounds of 3 steps (bench/interleaved.py). Prints per variant
the median seconds a step, steps/s and its speed relative to the first variant.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from realsys_cli import xla_flags  # noqa: E402

xla_flags.use_training_flags()  # before jax is imported, as `realsys predict-frames` does

import jax  # noqa: E402
import numpy as np  # noqa: E402
from interleaved import median_step_seconds  # noqa: E402

from realsys_cli.frames import setup  # noqa: E402
from realsys_cli.frames.recipes import resolve_frames_config  # noqa: E402
from realsys_cli.frames.steps import init_state  # noqa: E402
from realsys_cli.models import count_params  # noqa: E402


def build(sets: dict[str, Any]):
    """-> a function n -> seconds for n train steps of the variant."""
    cfg = resolve_frames_config(config_file=None, options={},
                                set_items=[f"{k}={v}" for k, v in sets.items()])
    model = setup.make_model(cfg, channels=1)
    steps = setup.make_steps(cfg, model, total_steps=100_000)
    box = {"state": init_state(model, steps.tx, cfg.seed)}
    frames = cfg.input_frames + cfg.output_frames
    batch = {"video": jax.device_put(np.random.default_rng(0).integers(
        0, 256, (cfg.batch_size, frames, 64, 64, 1), dtype=np.uint8))}
    train_step = steps.make_train_step()

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            box["state"] = train_step(box["state"], batch)[0]
        jax.block_until_ready(box["state"])
        return time.perf_counter() - t0

    first = run(1)
    print(f"{sets}: {count_params(box['state']['params']):,} parameters, first call {first:.1f} s",
          file=sys.stderr)
    return run


def main() -> None:
    variants = json.loads(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    runs = {name: build(sets) for name, sets in variants.items()}
    med = median_step_seconds(runs, dict.fromkeys(runs, 3), rounds=rounds)
    base = next(iter(med.values()))
    for name, s in med.items():
        print(f"{name:20s} {s:.3f} s/step  {1 / s:.3f} step/s  speed vs first {base / s:.2f}")


if __name__ == "__main__":
    main()
