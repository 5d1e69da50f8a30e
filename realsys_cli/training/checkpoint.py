"""Checkpoints with orbax: the only module that imports it.

A checkpoint is a pytree of arrays ("state": parameters, optimizer state, step, model state)
plus a JSON document ("meta": the config, the data iterator's position, schedule state, class
names, ...), so that a run is rebuilt and resumed from its workdir alone. `checkpoints/` keeps
the latest N; `best/` keeps the one with the best validation metric.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from realsys_cli.errors import CheckpointError

log = logging.getLogger("realsys")


def _manager(directory: Path, max_to_keep: int) -> ocp.CheckpointManager:
    # Each manager gets its own barrier-key prefix: with several processes, the latest/ and
    # best/ managers otherwise share orbax's "save in progress" barrier and a save of one
    # overlapping the other's async finalisation fails with "Barrier ... already ongoing".
    return ocp.CheckpointManager(
        directory.resolve(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix=directory.name
            ),
        ),
    )


class Checkpointer:
    """Latest-N checkpoints plus the best one, in `<workdir>/checkpoints` and `<workdir>/best`."""

    def __init__(self, workdir: str | Path, *, max_to_keep: int = 2) -> None:
        self.workdir = Path(workdir)
        self._latest = _manager(self.workdir / "checkpoints", max_to_keep)
        self._best = _manager(self.workdir / "best", 1)
        self._best_value = float("-inf")
        best_meta = self.read_meta(best=True) if self._best.latest_step() is not None else None
        if best_meta is not None and best_meta.get("best_metric") is not None:
            self._best_value = float(best_meta["best_metric"])

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any], *, metric: float | None = None,
             force: bool = False) -> None:
        """Save asynchronously; also to best/ when `metric` beats every earlier one."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._latest.save(step, args=args, force=force)
        if metric is not None and metric > self._best_value:
            self._best_value = metric
            # One orbax save in flight at a time: with several processes, overlapping saves of
            # two managers are what made the barriers collide (see _manager).
            self._latest.wait_until_finished()
            meta = dict(meta, best_metric=metric)
            self._best.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )

    def restore(self, abstract_state: Any, *, step: int | None = None,
                best: bool = False) -> tuple[Any, dict[str, Any]]:
        """Restore into the structure of `abstract_state` (from jax.eval_shape)."""
        manager = self._best if best else self._latest
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.workdir}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {step} in {self.workdir} does not fit this model ({_short(e)}); "
                "was it written by another model, class count or image size?"
            ) from None
        return restored["state"], dict(restored["meta"])

    def read_meta(self, *, best: bool = False, step: int | None = None) -> dict[str, Any] | None:
        """The JSON part of a checkpoint alone: cheap, no arrays."""
        manager = self._best if best else self._latest
        step = manager.latest_step() if step is None else step
        if step is None:
            return None
        restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def wait(self) -> None:
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def close(self) -> None:
        self._latest.close()
        self._best.close()


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]
