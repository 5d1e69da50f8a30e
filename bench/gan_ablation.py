"""train-gan's stabilisers, one at a time and combined, on digits at equal wall time.

    .venv/bin/python bench/gan_ablation.py --out /tmp/ablation [--rows paper,sn,...] [--steps 2000]
    .venv/bin/python bench/gan_ablation.py --out /tmp/ablation --speed --rows recipe,conditional

Every row is a real `realsys train-gan` run (the command is printed): the digits recipe's
network (configs/dcgan_digits.toml: 32 px, width 32, batch 128), the paper's optimisation
unless the row changes it, scored once at the end on one shared judge (the first row trains it;
the others get `--judge`). "Equal wall time": a row that costs more per step gets fewer steps,
`--steps` x its speed relative to the paper's step (ROWS' `speed`: train steps of each
variant at this size timed in interleaved rounds in one process; README, train-gan). Quality does not depend on the
machine's load: each run is deterministic, so rows may run while the machine is busy.
Prints a markdown table; `--json` one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

PAPER = ["conditional=false", "g_learning_rate=0", "instance_noise=0", "instance_noise_final=0"]
RECIPE = ["g_learning_rate=4e-4", "instance_noise=0.15", "instance_noise_final=0.15"]
TTUR = ["learning_rate=4e-4", "g_learning_rate=1e-4", "beta1=0", "beta2=0.999"]
SN = ["spectral_norm=true"]
# name -> (--set items on top of PAPER, speed per step relative to the paper's, what it is)
ROWS: dict[str, tuple[list[str], float, str]] = {
    "paper": ([], 1.0, "the paper's settings at the recipe's size"),
    "recipe": (RECIPE, 0.90, "the previous recipe: G at 2x D's rate, instance noise 0.15"),
    "conditional": (["conditional=true"], 0.94, "class-conditional G and projection D"),
    "sn": (SN, 0.89, "spectral norm on D (BatchNorm kept)"),
    "sn_nobn": (SN + ["d_norm=none"], 0.98, "spectral norm on D, no BatchNorm in D"),
    "hinge": (["loss=hinge"], 0.96, "hinge loss"),
    "diffaug": (["diffaugment=translation,cutout"], 0.83, "DiffAugment translation + cutout"),
    "ema": (["ema_decay=0.999"], 0.97, "samples from an EMA of G (0.999)"),
    "ttur": (TTUR, 1.0, "TTUR: D 4e-4, G 1e-4, Adam betas (0, 0.999)"),
    # combinations (speeds: the product of their parts')
    "recipe_ema": (RECIPE + ["ema_decay=0.999"], 0.87, "the recipe + EMA of G"),
    "recipe_conditional": (RECIPE + ["conditional=true"], 0.85,
                           "configs/dcgan_digits.toml: the previous recipe, class-conditional"),
    "recipe_conditional_hinge": (RECIPE + ["conditional=true", "loss=hinge"], 0.88,
                                 "the same with the hinge loss"),
    "sngan": (SN + ["d_norm=none", "loss=hinge"] + TTUR, 0.94,
              "SNGAN: spectral norm, no BatchNorm in D, hinge, TTUR"),
    "sngan_ema": (SN + ["d_norm=none", "loss=hinge", "ema_decay=0.999"] + TTUR, 0.91,
                  "SNGAN + EMA"),
    "sngan_ema_da": (SN + ["d_norm=none", "loss=hinge", "ema_decay=0.999",
                           "diffaugment=translation,cutout"] + TTUR, 0.76,
                     "SNGAN + EMA + DiffAugment"),
}


def command(name: str, steps: int, out: Path, judge: Path | None) -> list[str]:
    items, speed, _ = ROWS[name]
    cmd = [str(ROOT / ".venv/bin/realsys"), "train-gan", "--config",
           str(ROOT / "configs/dcgan_digits.toml"), "--workdir", str(out / name), "--json"]
    for item in [*PAPER, *items, f"max_steps={round(steps * speed)}", "fid_every_epochs=0"]:
        cmd += ["--set", item]
    if judge is not None:
        cmd += ["--judge", str(judge)]
    return cmd


def row_config(name: str) -> Any:
    """The GanConfig a row's `realsys train-gan` run resolves to (recipe file, then --set)."""
    from realsys_cli.config import resolve_config
    from realsys_cli.gan.config import GanConfig

    return resolve_config(GanConfig, config_file=ROOT / "configs/dcgan_digits.toml",
                          set_items=[*PAPER, *ROWS[name][0]])


def step_speeds(names: list[str], *, rounds: int = 5, steps: int = 20) -> dict[str, float]:
    """Each row's train step (batch 128 of 32-px digits-shaped images) timed in `rounds`
    interleaved rounds of `steps` steps in this process: the median seconds per step of the
    paper row over each row's, so 0.9 = 10% slower than the paper's step."""
    import jax
    import numpy as np
    from interleaved import median_step_seconds

    from realsys_cli.gan.steps import build

    rng = np.random.default_rng(0)
    batch = {"image": jax.device_put(rng.integers(0, 256, (128, 32, 32, 1), np.uint8)),
             "label": jax.device_put(rng.integers(0, 10, (128,)).astype(np.int32))}
    runs = {}
    for name in ["paper", *[n for n in names if n != "paper"]]:
        step_set, state = build(row_config(name), image_size=32, channels=1, total_steps=10**6,
                                num_classes=10)
        step = step_set.make_train_step()
        state, _ = step(state, batch)  # compile
        jax.block_until_ready(state)
        runs[name] = timed_steps(step, state, batch)
    medians = median_step_seconds(runs, dict.fromkeys(runs, steps), rounds=rounds)
    return {name: round(medians["paper"] / s, 3) for name, s in medians.items()}


def timed_steps(step: Any, state: Any, batch: Any) -> Any:
    """run(n) -> the seconds of n train steps from where the last call left the state."""
    import time

    import jax

    def run(n: int) -> float:
        nonlocal state
        start = time.perf_counter()
        for _ in range(n):
            state, _ = step(state, batch)
        jax.block_until_ready(state)
        return time.perf_counter() - start

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--steps", type=int, default=2000, help="the paper row's steps")
    ap.add_argument("--judge", type=Path, default=None, help="a judge to share (default: the "
                    "first row's own)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--speed", action="store_true", help="only time each row's train step "
                    "against the paper's (interleaved rounds; run it on an idle machine) and "
                    "print the speeds ROWS should hold")
    a = ap.parse_args()
    if a.speed:
        print(json.dumps(step_speeds(a.rows.split(","))))
        return
    results = {}
    judge = a.judge
    for name in a.rows.split(","):
        cmd = command(name, a.steps, a.out, judge)
        print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
        done = a.out / name / "result.json"
        if not done.exists():
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results[name] = json.loads(done.read_text())
        judge = judge or a.out / name / "judge"
    if a.json:
        print(json.dumps(results))
        return
    print("| row | what | steps | FID | FID / untrained | smallest class | confident |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {ROWS[name][2]} | {r['steps']} | {r['fid']:.1f} | "
              f"{r['fid_ratio']:.4f} | {r['min_class_share']:.3f} | "
              f"{r['confident_fraction']:.3f} |")


if __name__ == "__main__":
    main()
