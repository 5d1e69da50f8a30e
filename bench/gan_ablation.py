"""train-gan's stabilisers, one at a time and combined, on digits at equal wall time.

    .venv/bin/python bench/gan_ablation.py --out /tmp/ablation [--rows paper,sn,...] [--steps 2000]

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

ROOT = Path(__file__).resolve().parent.parent

PAPER = ["g_learning_rate=0", "instance_noise=0", "instance_noise_final=0"]
TTUR = ["learning_rate=4e-4", "g_learning_rate=1e-4", "beta1=0", "beta2=0.999"]
SN = ["spectral_norm=true"]
# name -> (--set items on top of PAPER, speed per step relative to the paper's, what it is)
ROWS: dict[str, tuple[list[str], float, str]] = {
    "paper": ([], 1.0, "the paper's settings at the recipe's size"),
    "recipe": (["g_learning_rate=4e-4", "instance_noise=0.15", "instance_noise_final=0.15"],
               0.90, "configs/dcgan_digits.toml: G at 2x D's rate, instance noise 0.15"),
    "sn": (SN, 0.89, "spectral norm on D (BatchNorm kept)"),
    "sn_nobn": (SN + ["d_norm=none"], 0.98, "spectral norm on D, no BatchNorm in D"),
    "hinge": (["loss=hinge"], 0.96, "hinge loss"),
    "diffaug": (["diffaugment=translation,cutout"], 0.83, "DiffAugment translation + cutout"),
    "ema": (["ema_decay=0.999"], 0.97, "samples from an EMA of G (0.999)"),
    "ttur": (TTUR, 1.0, "TTUR: D 4e-4, G 1e-4, Adam betas (0, 0.999)"),
    # combinations (speeds: the product of their parts')
    "recipe_ema": (["g_learning_rate=4e-4", "instance_noise=0.15", "instance_noise_final=0.15",
                    "ema_decay=0.999"], 0.87, "the recipe + EMA of G"),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--steps", type=int, default=2000, help="the paper row's steps")
    ap.add_argument("--judge", type=Path, default=None, help="a judge to share (default: the "
                    "first row's own)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
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
