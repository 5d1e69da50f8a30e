"""The default predict-frames train step with and without the depthwise taps that only ever
read padding (models/simvp_ops.py, `_reachable`: gSTA's 7x7 dilated 3 on the 8x8 latent keeps
its middle 5x5), timed against each other in one process, as bench/frames_variants.py times
its variants.

    .venv/bin/python bench/frames_trim.py [ROUNDS]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frames_variants  # noqa: E402  (relaunches with the launcher's malloc tunables)
from interleaved import median_step_seconds  # noqa: E402

from realsys_cli.models import simvp_ops  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    trimmed = frames_variants.build({}).run  # traced now, with the trim
    reachable = simvp_ops._reachable
    simvp_ops._reachable = lambda k, size, dilation: slice(0, k)  # every tap
    try:
        every_tap = frames_variants.build({}).run
    finally:
        simvp_ops._reachable = reachable
    med = median_step_seconds({"every tap": every_tap, "trimmed": trimmed},
                              {"every tap": 3, "trimmed": 3}, rounds=rounds)
    for name, s in med.items():
        print(f"{name:10s} {1000 * s:.1f} ms/step  speed {med['every tap'] / s:.3f}x")


if __name__ == "__main__":
    main()
