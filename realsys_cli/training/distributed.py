"""Data parallelism over all devices of all processes, with JAX's own multi-host runtime.

One mesh axis, "data": the global batch is split over every device of every process, and the
parameters are replicated. With several processes (hosts), `jax.distributed.initialize` joins
them first; each process then reads its own shard of the data and contributes its rows of the
global batch with `jax.make_array_from_process_local_data`. Nothing here is home-made: XLA
inserts the gradient all-reduce because the loss is a mean over a sharded batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from realsys_cli.data.pipeline import Shard
from realsys_cli.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """--coordinator-address / --num-processes / --process-id; the default is one process."""

    coordinator_address: str | None = None
    num_processes: int = 1
    process_id: int = 0


def initialize(cluster: ClusterSpec) -> None:
    """Join the other processes (no-op for one process). Must run before any jax computation."""
    if cluster.num_processes <= 1:
        return
    if not cluster.coordinator_address:
        raise ConfigError("--num-processes > 1 needs --coordinator-address HOST:PORT")
    if not 0 <= cluster.process_id < cluster.num_processes:
        raise ConfigError(
            f"--process-id must be in 0..{cluster.num_processes - 1}, got {cluster.process_id}"
        )
    # CPU collectives across processes go through gloo (GPU/TPU backends ignore this). Asking
    # for the backend here would initialise it, which must not happen before initialize().
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=cluster.coordinator_address,
        num_processes=cluster.num_processes,
        process_id=cluster.process_id,
        # A peer that died (error, Ctrl-C) must not leave the others waiting for minutes.
        initialization_timeout=120,
        heartbeat_timeout_seconds=30,
        shutdown_timeout_seconds=30,
    )


def data_mesh() -> Mesh:
    return jax.make_mesh(
        (jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,)
    )


def process_shard() -> Shard:
    return Shard(index=jax.process_index(), count=jax.process_count())


def check_batch_size(batch_size: int) -> int:
    """The global batch must split evenly over devices; returns this process's share."""
    devices = jax.device_count()
    if batch_size % devices:
        raise ConfigError(
            f"batch_size {batch_size} must be a multiple of the number of devices ({devices})"
        )
    return batch_size // jax.process_count()


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a pytree of arrays on every device of every process (parameters, optimizer state).

    Every process holds the same values (same seed, or the same checkpoint), so each one
    provides the whole array as its local data. Typed PRNG keys travel as their raw bits.
    """
    sharding = NamedSharding(mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x: Any) -> Any:
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            bits = put(jax.random.key_data(x))
            impl = jax.random.key_impl(x)
            return jax.jit(lambda b: jax.random.wrap_key_data(b, impl=impl),
                           out_shardings=sharding)(bits)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, tree)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows -> one global array sharded over "data" on the first axis."""
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in batch.items()
    }


def to_host(tree: Any) -> Any:
    """Replicated device values (metrics, sums) -> numpy, on every process.

    Under several processes a replicated array is not fully addressable; its local copy is.
    """

    def fetch(x: Any) -> np.ndarray:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(fetch, tree)


def sync(name: str) -> None:
    """A barrier across processes (no-op for one)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def first_on_process_zero(fn: Callable[[], T], name: str) -> T:
    """`fn()` on process 0, then on the others (e.g. preparing a dataset once: the others
    wait, then read the same files). One process: just `fn()`."""
    if jax.process_index() == 0:
        value = fn()
        sync(name)
        return value
    sync(name)
    return fn()
