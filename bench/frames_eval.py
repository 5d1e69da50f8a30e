"""Seconds one predict-frames evaluation takes: the default recipe's untrained model scored on
the 1,000 built-in test clips (model and baselines, every horizon), at given eval batch sizes.

    .venv/bin/python bench/frames_eval.py [BATCH ...]     # default: 8 (the train batch) and 40

Under the training XLA flags and the launcher's malloc tunables, as `realsys predict-frames`
runs it; each size is compiled first, then timed in two interleaved rounds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from realsys_cli.launch import relaunch_with_tuned_malloc

relaunch_with_tuned_malloc()

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax_worker  # noqa: E402

jax_worker.set_flags("training")

from realsys_cli.frames import setup  # noqa: E402
from realsys_cli.frames.evaluate import evaluate_state  # noqa: E402
from realsys_cli.frames.recipes import resolve_frames_config  # noqa: E402
from realsys_cli.frames.steps import init_state  # noqa: E402
from realsys_cli.training import distributed  # noqa: E402


def main() -> None:
    sizes = [int(s) for s in sys.argv[1:]] or [8, 40]
    cfg = resolve_frames_config(config_file=None, options={}, set_items=[])
    dataset = setup.open_video_dataset(cfg.dataset, None)
    model = setup.make_model(cfg, channels=1)
    steps = setup.make_steps(cfg, model, total_steps=100)
    state = init_state(model, steps.tx, cfg.seed)
    eval_step, mesh = steps.make_eval_step(), distributed.data_mesh()
    source = dataset.source(dataset.eval_split)

    def score(batch: int, limit: int | None = None) -> dict:
        return evaluate_state(eval_step, state["params"], state["rest"], source,
                              batch_size=batch, mesh=mesh, limit=limit)

    for batch in sizes:
        score(batch, limit=2 * batch)  # compile
    for round_ in range(2):
        for batch in sizes:
            t0 = time.perf_counter()
            scores = score(batch)
            print(f"round {round_} eval batch {batch}: {time.perf_counter() - t0:.2f} s for "
                  f"{scores['count']} clips", flush=True)


if __name__ == "__main__":
    main()
