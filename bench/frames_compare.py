"""predict-frames' models and schedules on moving digits at equal wall time (issue 16).

    .venv/bin/python bench/frames_compare.py --out /tmp/frames [--rows convlstm,simvp] \
        [--steps 625] [--jobs 2]

Every row is a real `realsys predict-frames` run (the command is printed) scored on the 1,000
test clips, 10 frames in and 10 out. "Equal wall time": the ConvLSTM trains `--steps` steps (625
= one epoch, the default's budget; 1600 = the 17-minute one) and a row whose step costs less trains
more, `--steps` x its speed relative to the ConvLSTM's step (ROWS' `speed`: the steady steps/s
of 120-step runs of each model, run one after the other on an otherwise idle machine:
SimVP 0.848, ConvLSTM 0.751, 2026-12-01). The runs are deterministic, so their scores do not
depend on the load: rows may run side by side (`--jobs`). Prints a markdown table (mean and
per-horizon MSE and SSIM against the copy-last-frame baseline); `--json` one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONECYCLE = ["optimizer=adam", "learning_rate=1e-3", "schedule=onecycle", "grad_clip_norm=0"]
SIMVP_SPEED = 0.848 / 0.751
# the conv translator's step against gSTA's: 1.44x, the median of 4 interleaved rounds of the
# whole model's forward and backward pass in one process (B = 16; 1.77, 1.29, 1.35, 1.53)
SIMVP_CONV_SPEED = SIMVP_SPEED * 1.44
# name -> (--set items, speed per step relative to the ConvLSTM's, what it is)
ROWS: dict[str, tuple[list[str], float, str]] = {
    "convlstm": (["model=convlstm"], 1.0,
                 "ConvLSTM, its recipe (Adam 2e-3, cosine, clip 1; --model convlstm)"),
    "convlstm_onecycle": (["model=convlstm", *ONECYCLE, "warmup_steps=0"], 1.0,
                          "ConvLSTM, OpenSTL's one-cycle (Adam 1e-3, no clip)"),
    "simvp": (["model=simvp", "observed_loss_weight=0"], SIMVP_SPEED,
              "SimVP gSTA, predict-frames' default (Adam 2e-3, cosine, clip 1)"),
    "simvp_onecycle": (["model=simvp", "observed_loss_weight=0"] + ONECYCLE, SIMVP_SPEED,
                       "SimVP gSTA, OpenSTL's one-cycle (configs/simvp_openstl.toml)"),
    "simvp_conv": (["model=simvp", "observed_loss_weight=0", "simvp_translator=conv"],
                   SIMVP_CONV_SPEED, "SimVP, dense-conv translator, predict-frames' default otherwise"),
    "simvp_lr4e3": (["model=simvp", "observed_loss_weight=0", "learning_rate=4e-3"],
                    SIMVP_SPEED, "SimVP gSTA, Adam 4e-3, cosine, clip 1"),
    # OpenSTL's reverse scheduled sampling is the PredRNN family's; its plain schedule (true
    # frames fed to the forecaster with a probability falling 1 -> 0) over the first half
    "convlstm_ss": (["model=convlstm", "scheduled_sampling_steps={half}"], 1.0,
                    "ConvLSTM recipe + scheduled sampling over the first half"),
}


def command(name: str, steps: int, out: Path) -> list[str]:
    items, speed, _ = ROWS[name]
    cmd = [str(ROOT / ".venv/bin/realsys"), "predict-frames", "--workdir", str(out / name),
           "--steps", str(round(steps * speed)), "--json"]
    for item in items:
        cmd += ["--set", item.format(half=round(steps * speed / 2))]
    return cmd


def run_row(name: str, steps: int, out: Path) -> dict:
    done = out / name / "result.json"
    if not done.exists():
        cmd = command(name, steps, out)
        print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        with open(out / f"{name}.log", "w") as log:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=log)
    return json.loads(done.read_text())


def table(results: dict[str, dict]) -> str:
    def per(values: list[float], ts=(0, 2, 4, 9)) -> str:
        return " / ".join(f"{values[t]:.3g}" for t in ts)

    lines = ["| row | what | params | steps | train s | steps/s | MSE | MSE t=1/3/5/10 | "
             "SSIM | SSIM t=1/3/5/10 | SSIM > copy-last at t=1..3 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    copy = None
    for name, r in results.items():
        copy = r
        ssim_ok = all(m > c for m, c in zip(r["ssim_per_frame"][:3],
                                            r["baseline_copy_last_ssim_per_frame"][:3]))
        lines.append(
            f"| {name} | {ROWS[name][2]} | {r['num_params']:,} | {r['steps']} | "
            f"{r['train_seconds']:.0f} | {r['train_steps_per_second']:.3f} | "
            f"{r['mean_mse']:.1f} | {per(r['mse_per_frame'])} | {r['mean_ssim']:.3f} | "
            f"{per(r['ssim_per_frame'])} | {'yes' if ssim_ok else 'no'} |")
    if copy is not None:
        for base in ("copy_last", "mean_frame"):
            lines.append(
                f"| {base.replace('_', '-')} | the baseline | - | - | - | - | "
                f"{copy[f'baseline_{base}_mean_mse']:.1f} | "
                f"{per(copy[f'baseline_{base}_mse_per_frame'])} | "
                f"{copy[f'baseline_{base}_mean_ssim']:.3f} | "
                f"{per(copy[f'baseline_{base}_ssim_per_frame'])} | - |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", default="convlstm,convlstm_onecycle,simvp,simvp_onecycle")
    ap.add_argument("--steps", type=int, default=625, help="the ConvLSTM row's steps")
    ap.add_argument("--jobs", type=int, default=1, help="rows run side by side")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    names = a.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        done = list(pool.map(lambda n: run_row(n, a.steps, a.out), names))
    results = dict(zip(names, done))
    print(json.dumps(results) if a.json else table(results))


if __name__ == "__main__":
    main()
