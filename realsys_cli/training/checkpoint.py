"""Checkpoints with orbax: the only module that imports it.

A checkpoint is a pytree of arrays ("state": parameters, optimizer state, step, model state)
plus a JSON document ("meta": the config, the data iterator's position, schedule state, class
names, ...), so that a run is rebuilt and resumed from its workdir alone. `checkpoints/` keeps
the latest N; `best/` keeps the one with the best validation metric.

What survives faults:
  * every save carries a checksum of its arrays in its meta (`arrays_checksum`); a restore
    recomputes it, and also rejects NaN/Inf (a state is only ever saved finite). Together with
    orbax's own read errors this tells a damaged checkpoint (truncated or flipped bytes, a
    garbled JSON, a missing file) from a good one;
  * a damaged checkpoint is skipped, with one warning, for the newest intact one; a training
    run moves it aside to `<workdir>/damaged/` so that its step can be written again;
  * a full disk is one DiskFullError naming the space needed; the temporary directories of the
    failed save are removed and the previous checkpoint stays as it was;
  * orbax writes each step to a temporary directory renamed when complete, so an interrupted
    save leaves no half checkpoint; a training run removes such leftovers when it opens the
    workdir, and rebuilds `best/` from the latest checkpoint when the save of best was lost.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from realsys_cli.errors import CheckpointError, DamagedCheckpointError, DiskFullError, causes
from realsys_cli.training.distributed import to_host

log = logging.getLogger("realsys")

CHECKSUM_KEY = "arrays_checksum"  # meta key: {array path: 16 hex digits}
METRIC_KEY = "epoch_metric"  # meta key: the end-of-epoch metric of this step, if any
_TMP_MARK = ".orbax-checkpoint-tmp"
_REPAIR_MARK = ".realsys-repair-tmp"  # best/'s rebuild in progress (Checkpointer._repair_best)


def _manager(directory: Path, max_to_keep: int, *, read_only: bool) -> ocp.CheckpointManager:
    # Each manager gets its own barrier-key prefix: with several processes, the latest/ and
    # best/ managers otherwise share orbax's "save in progress" barrier and a save of one
    # overlapping the other's async finalisation fails with "Barrier ... already ongoing".
    return ocp.CheckpointManager(
        directory.resolve(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,  # what an interrupted save left behind
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix=directory.name
            ),
        ),
    )


# ------------------------------------------------------------------------- array checksums
def _words(x: jax.Array) -> jax.Array:
    """The bits of any array as a flat uint32 vector (1- and 2-byte types widened)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    unsigned = {4: jnp.uint32, 2: jnp.uint16, 1: jnp.uint8}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).reshape(-1).astype(jnp.uint32)


@jax.jit
def _inspect(leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Per leaf: two sums mod 2^32 of its bits, plain and position-weighted (any one changed
    word changes the first, a swap of two the second), shape (n_leaves, 2); and whether every
    float is finite. Integer sums are exact in any order, so sharded == unsharded."""
    sums, finite = [], [jnp.bool_(True)]
    for x in leaves:
        w = _words(x)
        position = jnp.arange(1, w.size + 1, dtype=jnp.uint32)
        sums.append(jnp.stack([jnp.sum(w, dtype=jnp.uint32),
                               jnp.sum(w * position, dtype=jnp.uint32)]))
        if jnp.issubdtype(x.dtype, jnp.inexact):
            finite.append(jnp.all(jnp.isfinite(x)))
    return jnp.stack(sums) if sums else jnp.zeros((0, 2), jnp.uint32), jnp.all(jnp.stack(finite))


def inspect_state(state: Any) -> tuple[dict[str, str], bool]:
    """({array path: checksum}, all finite) of a state tree."""
    pairs = [(jax.tree_util.keystr(p), x)
             for p, x in jax.tree_util.tree_flatten_with_path(state)[0] if hasattr(x, "dtype")]
    sums, finite = to_host(_inspect([x for _, x in pairs]))
    sums = np.asarray(sums, dtype=np.uint32)
    return {k: f"{a:08x}{b:08x}" for (k, _), (a, b) in zip(pairs, sums, strict=True)}, bool(finite)


# ------------------------------------------------------------------------------ the faults
class NonFiniteStateError(CheckpointError):
    """A state to save holds NaN or Inf: it is not saved (the loop names it a divergence)."""


class _Damaged(Exception):
    """One checkpoint cannot be read back as it was written (the reason is the message)."""


_FIT_ERRORS = ("structure mismatch", "stored shape", "requested shape")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if text.startswith("Encountered error while reading array"):  # then a TensorStore dump
        return "an array file cannot be read"
    return text.split(" See full TensorStore")[0][:160]


def _is_disk_full(error: BaseException) -> bool:
    return any((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
               or "RESOURCE_EXHAUSTED" in str(e) or "No space left" in str(e)
               for e in causes(error))


def _restore_quietly(manager: ocp.CheckpointManager, step: int,
                     args: ocp.args.Composite) -> tuple[Any, str | None]:
    """(what orbax restored, None), or (None, why it failed in one line). A failed TensorStore
    read leaves coroutines that print 'Exception ignored in ...' when collected: they are
    collected here, with Python's unraisable hook silenced."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        try:
            return manager.restore(step, args=args), None
        except Exception as e:  # noqa: BLE001 - orbax and TensorStore raise bare Exceptions
            why = _short(e)
        gc.collect()  # the error and its frames are gone: their coroutines go now
        return None, why
    finally:
        sys.unraisablehook = previous


def _free_mb(directory: Path) -> float:
    with contextlib.suppress(OSError):
        return shutil.disk_usage(directory).free / 2**20
    return float("nan")


def _nbytes(state: Any) -> int:
    return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(state))


class Checkpointer:
    """Latest-N checkpoints plus the best one, in `<workdir>/checkpoints` and `<workdir>/best`.

    `read_only=True` (a command that loads a run: evaluate, classify, fool, sample) changes
    nothing on disk: damaged checkpoints are skipped but left in place.
    """

    def __init__(self, workdir: str | Path, *, max_to_keep: int = 2,
                 read_only: bool = False) -> None:
        self.workdir = Path(workdir)
        self.read_only = read_only
        self._max_to_keep = max_to_keep
        if not read_only and jax.process_index() == 0:
            # What a killed save left, removed now: orbax's own cleanup of it may still be
            # running when this returns. The workdir's lock keeps every other writer out.
            self._remove_temporaries()
        self._latest = _manager(self.workdir / "checkpoints", max_to_keep, read_only=read_only)
        self._best = _manager(self.workdir / "best", 1, read_only=read_only)
        self._best_value = float("-inf")
        best_meta = self.read_meta(best=True)
        if best_meta is not None:
            value = best_meta.get("best_metric", best_meta.get(METRIC_KEY))
            self._best_value = float(value) if value is not None else self._best_value
        if not read_only:
            self._repair_best()

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def all_steps(self, *, best: bool = False) -> list[int]:
        return sorted((self._best if best else self._latest).all_steps())

    # ------------------------------------------------------------------------------ save
    def save(self, step: int, state: Any, meta: dict[str, Any], *, metric: float | None = None,
             force: bool = False) -> None:
        """Save asynchronously; also to best/ when `metric` beats every earlier one.

        Raises NonFiniteStateError when the state holds NaN/Inf (it is not saved), DiskFullError
        when there is no space for it (or for the save before it, which finished meanwhile).
        """
        checksums, finite = inspect_state(state)
        if not finite:
            raise NonFiniteStateError("the parameters or optimizer state became NaN or infinite")
        meta = dict(meta, **{CHECKSUM_KEY: checksums})
        if metric is not None:
            meta[METRIC_KEY] = metric
        with self._writing(step, state):
            self._latest.save(step, args=self._args(state, meta), force=force)
            if metric is not None and metric > self._best_value:
                self._best_value = metric
                # One orbax save in flight at a time: with several processes, overlapping
                # saves of two managers are what made the barriers collide (see _manager).
                self._latest.wait_until_finished()
                if step in self._best.all_steps():  # from a future lost to a damaged latest
                    self._best.delete(step)
                self._best.save(step, args=self._args(state, dict(meta, best_metric=metric)),
                                force=True)

    @staticmethod
    def _args(state: Any, meta: dict[str, Any]) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

    def wait(self) -> None:
        with self._writing(None, None):
            self._latest.wait_until_finished()
            self._best.wait_until_finished()

    def close(self) -> None:
        with self._writing(None, None):
            self._latest.close()
            self._best.close()

    @contextlib.contextmanager
    def _writing(self, step: int | None, state: Any) -> Iterator[None]:
        """A full disk, here or in the async save that was still running, is one line."""
        try:
            yield
        except Exception as e:
            if not _is_disk_full(e):
                raise
            failed = self._clean_up_failed_saves() or ([step] if step is not None else [])
            intact = self._latest.latest_step()
            need = f"about {_nbytes(state) / 2**20:.0f} MB needed, " if state is not None else ""
            raise DiskFullError(
                f"no space left on the device for checkpoint "
                f"{' and '.join(map(str, failed)) or ''} in "
                f"{self.workdir} ({need}{_free_mb(self.workdir):.0f} MB free); "
                + (f"the checkpoint of step {intact} is intact: " if intact is not None else "")
                + "free some space and run the same command again to resume"
            ) from None

    def _clean_up_failed_saves(self) -> list[int]:
        """After a failed save: let orbax's background writers stop (they may still be
        creating directories when the error reaches us), then remove what they left, until
        nothing comes back. Returns the failed saves' steps."""
        for manager in (self._latest, self._best):
            with contextlib.suppress(Exception):  # the same failure again
                manager.wait_until_finished()
        failed: set[int] = set()
        deadline = time.monotonic() + 5.0
        while True:
            removed = self._remove_temporaries()
            failed.update(removed)
            if not removed or time.monotonic() > deadline:
                return sorted(failed)
            time.sleep(0.2)  # a writer still running may make another

    def _remove_temporaries(self) -> list[int]:
        """Remove what failed saves left; returns their steps."""
        steps = set()
        for sub in ("checkpoints", "best"):
            for tmp in [*(self.workdir / sub).glob(f"*{_TMP_MARK}*"),
                        *(self.workdir / sub).glob(f"*{_REPAIR_MARK}")]:
                shutil.rmtree(tmp, ignore_errors=True)
                with contextlib.suppress(ValueError):
                    steps.add(int(tmp.name.split(".")[0]))
        return sorted(steps)

    def _repair_best(self) -> None:
        """Ctrl-C or kill -9 between the latest save of an epoch end and its best save (or a
        damaged best/) loses best/: rebuild it from the latest checkpoint that carries its
        epoch metric, when that metric beats what best/ holds."""
        for step in reversed(self.all_steps()):
            meta = self._meta_or_none(self._latest, step)
            if meta is None or meta.get(METRIC_KEY) is None:
                continue
            if float(meta[METRIC_KEY]) > self._best_value and step not in self._best.all_steps():
                directory = self.workdir / "best"
                # not orbax's tmp mark: orbax's cleanup, still running, would delete it
                staging = directory / f"{step}{_REPAIR_MARK}"
                shutil.rmtree(staging, ignore_errors=True)
                shutil.copytree(self.workdir / "checkpoints" / str(step), staging)
                for old in self._best.all_steps():
                    self._best.delete(old)
                staging.rename(directory / str(step))  # complete, or not there at all
                self._best.reload()
                self._best_value = float(meta[METRIC_KEY])
                log.info("rebuilt %s from checkpoint %d (its save was interrupted)", directory,
                         step)
            return  # only the newest epoch end counts

    # --------------------------------------------------------------------------- restore
    def restore(self, abstract_state: Any, *, step: int | None = None,
                best: bool = False) -> tuple[Any, dict[str, Any]]:
        """Restore into the structure of `abstract_state` (from jax.eval_shape): the given
        step, or the newest intact one (a warning names each damaged one skipped)."""
        manager = self._best if best else self._latest
        candidates = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.workdir}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        damaged: list[tuple[int, str]] = []
        for candidate in candidates:
            try:
                state, meta = self._restore_verified(manager, candidate, target)
            except _Damaged as e:
                damaged.append((candidate, str(e)))
                continue
            for bad, why in damaged:
                self._set_aside(manager, bad, why, instead=candidate)
            return state, meta
        where = self.workdir / ("best" if best else "checkpoints")
        raise DamagedCheckpointError(
            f"{'the checkpoint' if len(damaged) == 1 else 'every checkpoint'} in {where} is "
            f"damaged (step {damaged[0][0]}: {damaged[0][1]}); "
            + ("train again in a new --workdir" if not best else "use the latest checkpoint")
        )

    def _restore_verified(self, manager: ocp.CheckpointManager, step: int,
                          target: Any) -> tuple[Any, dict[str, Any]]:
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                  meta=ocp.args.JsonRestore())
        restored, why = _restore_quietly(manager, step, args)
        if why is not None and any(words in why.lower() for words in _FIT_ERRORS):
            raise CheckpointError(
                f"checkpoint {step} in {self.workdir} does not fit this model ({why}); "
                "was it written by another model, class count or image size?"
            )
        if why is not None:
            raise _Damaged(why)
        state, meta = restored["state"], dict(restored["meta"] or {})
        checksums, finite = inspect_state(state)
        expected = meta.get(CHECKSUM_KEY)
        if expected is not None:
            wrong = [k for k, v in expected.items() if checksums.get(k) != v]
            if wrong:
                raise _Damaged(f"{wrong[0]} does not match its checksum")
        if not finite:
            raise _Damaged("it holds NaN or infinite values")
        return state, meta

    def _set_aside(self, manager: ocp.CheckpointManager, step: int, why: str, *,
                   instead: int) -> None:
        directory = self.workdir / ("best" if manager is self._best else "checkpoints") / str(step)
        if self.read_only or jax.process_index() != 0:
            log.warning("checkpoint %s is damaged (%s); using step %d instead", directory, why,
                        instead)
            return
        aside = self.workdir / "damaged" / f"{directory.parent.name}-{step}-{int(time.time())}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        directory.rename(aside)
        manager.reload()
        log.warning("checkpoint %s is damaged (%s): moved to %s; resuming from step %d", directory,
                    why, aside, instead)

    # ------------------------------------------------------------------------------ meta
    def read_meta(self, *, best: bool = False, step: int | None = None) -> dict[str, Any] | None:
        """The JSON part of a checkpoint alone (cheap, no arrays): of `step`, or of the newest
        checkpoint whose JSON reads (restore then checks its arrays)."""
        manager = self._best if best else self._latest
        candidates = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
        for candidate in candidates:
            meta = self._meta_or_none(manager, candidate)
            if meta is not None:
                return meta
        return None

    @staticmethod
    def _meta_or_none(manager: ocp.CheckpointManager, step: int) -> dict[str, Any] | None:
        restored, why = _restore_quietly(manager, step,
                                         ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = restored["meta"] if why is None else None  # damaged: restore() names it
        return dict(meta) if isinstance(meta, dict) else None
