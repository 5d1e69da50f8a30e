"""XLA flag probe: one workload's rate under one XLA_FLAGS setting (the tables of docs/speed.md).

    .venv/bin/python bench/flag_probe.py "--xla_cpu_experimental_ynn_fusion_type=" classifier_eval 5

One process per setting (XLA_FLAGS is read once, when jax is imported): the workloads of
bench/workloads.py, best of 3 timed runs of N steps each, one JSON line per workload. One pass is
noisy; decide with bench/run.py's interleaved rounds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = sys.argv[1]  # before jax is imported, by workloads below
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from workloads import build  # noqa: E402


def main(flags: str, names: str, n: int) -> None:
    for name in names.split(","):
        t0 = time.perf_counter()
        workload = build(name)
        workload.run(1)  # trace + compile + one step
        first = time.perf_counter() - t0
        best = min(workload.run(n) for _ in range(3))
        print(json.dumps(dict(flags=flags, wl=name, rate=round(n * workload.units_per_step / best, 2),
                              first_s=round(first, 1))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
