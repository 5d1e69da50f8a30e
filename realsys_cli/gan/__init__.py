"""`realsys train-gan` and `realsys sample`: DCGAN (Radford, Metz, Chintala 2015) with FID,
its real-vs-real floor and class coverage measured on a realsys classifier's features.

  config.py   GanConfig          steps.py   the jitted D + G step, the sampler
  judge.py    the classifier FID is measured with       quality.py  the quality report
  fid.py      FID, class coverage                       train.py    train_and_evaluate
  sample.py   sample grids, latent walks, --score       report.py   losses.png, grids
"""

from __future__ import annotations

from typing import Any


def bench_workload(batch_size: int) -> dict[str, Any]:
    """The bench's `dcgan` step (bench/jax_worker.py looks for this hook)."""
    from realsys_cli.gan.steps import bench_workload as workload

    return workload(batch_size)
