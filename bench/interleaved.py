"""Variants of one step timed against each other in one process: interleaved rounds, so that
every variant sees the same machine moment (load, clock, caches) and none gets the quiet start."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_step_seconds(runs: dict[str, Callable[[int], float]], steps: dict[str, int], *,
                        rounds: int, pause_s: float = 0.2) -> dict[str, float]:
    """runs[name](n) runs n steps and returns their seconds; each round runs every variant
    once (`steps[name]` steps), the order rotated by one each round; -> per variant the median
    over the rounds of the seconds a step."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(pause_s)  # let the previous variant's threads go idle
            times[name].append(runs[name](steps[name]) / steps[name])
    return {name: statistics.median(t) for name, t in times.items()}
