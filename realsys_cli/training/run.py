"""The run scaffold every trainer and every command that loads a run shares.

Training (train-classifier, train-gan, predict-frames):

    run = start_or_resume(workdir, cfg, resumable=RESUMABLE_CHANGES, max_to_keep=2)
    ...build the state and the data iterator as for a fresh run...
    state, start_step = run.restore(state, batches, steps_per_epoch)   # no-op when fresh
    metrics_log = run.metrics_log(start_step)
    ...run_loop...; run_status.write_result(workdir, summary)

Loading a finished (or interrupted) run (evaluate, classify, fool, the GAN judge, sample,
predict-frames --rollout):

    loaded = load_run(workdir, ClassifierConfig, command="train-classifier",
                      markers=("model", "dataset"), build=lambda cfg, meta: (steps, template))

One place decides: whether a workdir resumes (and refuses another config), who writes
config.json (process 0), the restore template (shapes only: `jax.eval_shape`), best or latest.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import jax

from realsys_cli import config as config_lib
from realsys_cli.errors import CheckpointError, DamagedCheckpointError
from realsys_cli.training import distributed, workdir_lock
from realsys_cli.training.checkpoint import Checkpointer
from realsys_cli.training.distributed import ClusterSpec
from realsys_cli.training.metrics import MetricsLog

log = logging.getLogger("realsys")

C = TypeVar("C")
S = TypeVar("S")
T = TypeVar("T")


def join_and_open(cluster: ClusterSpec, batch_size: int,
                  open_data: Callable[[], T]) -> tuple[int, T]:
    """A trainer's first lines: join the other processes, check that the global batch splits
    over every device, and open the data (process 0 first: it prepares what is missing while
    the others wait). Returns this process's share of the batch and the data."""
    distributed.initialize(cluster)
    local_batch = distributed.check_batch_size(batch_size)
    return local_batch, distributed.first_on_process_zero(open_data, "dataset-prepared")


@dataclasses.dataclass
class Run:
    """A workdir opened for training: its checkpointer and, when resuming, the saved meta."""

    workdir: Path
    checkpointer: Checkpointer
    meta: dict[str, Any] | None  # the latest checkpoint's JSON; None for a fresh run

    @property
    def resuming(self) -> bool:
        return self.meta is not None

    def restore(self, state: Any, batches: Any, steps_per_epoch: int) -> tuple[Any, int]:
        """The latest checkpoint restored into `state`'s shapes, and `batches` moved to where
        it stopped; a fresh run gets `state` back and step 0."""
        if self.meta is None:
            return state, 0
        state, self.meta = self.checkpointer.restore(jax.eval_shape(lambda: state))
        start_step = int(self.meta["step"])
        batches.set_state(self.meta["data_state"])
        log.info("resuming %s from step %d (epoch %.2f)", self.workdir, start_step,
                 start_step / steps_per_epoch)
        return state, start_step

    def close(self) -> None:
        """Wait for the last checkpoint, and free the workdir for the next run."""
        self.checkpointer.close()
        workdir_lock.release(self.workdir)

    def metrics_log(self, start_step: int) -> MetricsLog:
        """metrics.jsonl (written by process 0), cut back to the restored step."""
        metrics = MetricsLog(self.workdir, enabled=jax.process_index() == 0)
        metrics.truncate_after(start_step)
        return metrics


def start_or_resume(workdir: str | Path, cfg: Any, *, resumable: set[str],
                    max_to_keep: int) -> Run:
    """Open `workdir` to train `cfg`: resume what is there (refusing a run of another config,
    but for the `resumable` fields), or start afresh; config.json is (re)written."""
    workdir = Path(workdir)
    if jax.process_index() == 0:
        workdir_lock.acquire(workdir)  # before anything is read or written
    checkpointer = Checkpointer(workdir, max_to_keep=max_to_keep)
    meta = checkpointer.read_meta()
    if meta is None and checkpointer.all_steps():
        raise DamagedCheckpointError(
            f"every checkpoint in {workdir / 'checkpoints'} is damaged (none can be read); train "
            f"again in a new --workdir, or delete {workdir / 'checkpoints'} to start afresh here"
        )
    if meta is None and (workdir / "config.json").exists():
        log.info("%s has a config but no checkpoint yet: starting afresh", workdir)
    if meta is not None:
        config_lib.check_resumable(meta["config"], cfg, workdir, resumable)
    if jax.process_index() == 0:
        config_lib.write_config(cfg, workdir)
    return Run(workdir, checkpointer, meta)


@dataclasses.dataclass
class LoadedRun(Generic[C, S]):
    """A trained run rebuilt from its workdir alone."""

    workdir: Path
    cfg: C
    steps: S  # the job's steps object (jitted functions and the graph of the model)
    state: dict[str, Any]
    meta: dict[str, Any]
    checkpoint: str  # "best" or "latest"

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def load_run(
    workdir: str | Path,
    cls: type[C],
    *,
    command: str,
    markers: tuple[str, ...],
    build: Callable[[C, dict[str, Any]], tuple[S, Any]],
    prefer: Literal["best", "latest"] = "best",
    require: bool = False,
    hint: str = "",
) -> LoadedRun[C, S]:
    """Rebuild the run of `command` in `workdir`.

    `build(cfg, meta)` returns the job's steps and the state's shapes (e.g. from
    `jax.eval_shape`, so no weights are drawn only to be overwritten). `prefer`: the best
    checkpoint when there is one, else the latest; `require=True` refuses to fall back.
    """
    workdir = Path(workdir)
    cfg = config_lib.read_run_config(workdir, cls, command=command, markers=markers, hint=hint)
    checkpointer = Checkpointer(workdir, read_only=True)
    try:
        use_best = prefer == "best" and checkpointer.read_meta(best=True) is not None
        if prefer == "best" and require and not use_best:
            raise CheckpointError(f"{workdir} has no best checkpoint yet (it is chosen at the "
                                  "end of an epoch); use the latest")
        meta = checkpointer.read_meta(best=use_best) or checkpointer.read_meta()
        if meta is None:
            raise (DamagedCheckpointError(
                f"every checkpoint in {workdir} is damaged (none can be read); train again"
            ) if checkpointer.all_steps() else CheckpointError(
                f"{workdir} has no checkpoint yet (was training interrupted before its first "
                "one?); run the same training command again to resume it"
            ))
        steps, template = build(cfg, meta)
        try:
            state, meta = checkpointer.restore(template, best=use_best)
        except DamagedCheckpointError as e:
            if not use_best or require or not checkpointer.all_steps():
                raise
            log.warning("%s; using the latest checkpoint instead", str(e).split(";")[0])
            use_best = False
            state, meta = checkpointer.restore(template)
    finally:
        checkpointer.close()
    return LoadedRun(workdir, cfg, steps, state, meta, "best" if use_best else "latest")
