"""Data parallelism with JAX's own sharding, on one host or many.

A 1-D :class:`jax.sharding.Mesh` over a ``"data"`` axis holds the devices. Parameters,
optimiser state and the dataset are replicated; each epoch's ``(steps, batch)`` index matrix
is sharded along the batch, so every device gathers and processes its slice of every batch,
and ``jit`` inserts the all-reduce of the gradients (the loss is a batch mean). The hand
``custom_vjp`` rules are ordinary traced functions here: GSPMD partitions them like any other.

Multi-host: :func:`initialize_distributed` wraps ``jax.distributed.initialize`` (one process
per host or per GPU). Every process runs the same program on the same (replicated) data and
the same keys; arrays are assembled with ``jax.make_array_from_callback``, so each process
provides only the shards that live on its own devices.
"""

from __future__ import annotations

import inspect
import math
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


class DistributedError(RuntimeError):
    """Joining a multi-process run failed (unreachable coordinator, timeout)."""


def initialize_distributed(coordinator: str, num_processes: int, process_id: int, *,
                           timeout_s: int = 300) -> None:
    """Join a multi-process JAX run (call before any other JAX work).

    On CPU the cross-process collectives use gloo. On GPU clusters JAX's own defaults apply
    (NCCL); ``jax.distributed.initialize()`` without arguments auto-detects SLURM and others.

    Args:
      coordinator: ``HOST:PORT`` of process 0.
      num_processes, process_id: this run's size and this process's index in it.
      timeout_s: give up after this many seconds without reaching the coordinator and the
        other processes (``jax.distributed.initialize``'s ``initialization_timeout``, where
        the installed jax has it).

    Raises:
      ValueError: ``process_id`` not in ``[0, num_processes)``.
      DistributedError: the run could not be joined; one line naming the coordinator, the
        process and the timeout, then the first line of JAX's message.

    jax itself aborts the process (a C++ ``DEADLINE_EXCEEDED`` and a stack trace) when the
    timeout passes inside ``initialize``; so the coordinator's host is resolved first and, in
    processes other than 0, its port is polled until it accepts a connection
    (:func:`wait_for_coordinator`), which turns the common failures into this error. Process 0
    waiting in vain for the others still ends in jax's abort.
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}); got {process_id}")
    wait_for_coordinator(coordinator, timeout_s, probe=process_id != 0)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    options = {}
    if "initialization_timeout" in inspect.signature(jax.distributed.initialize).parameters:
        options["initialization_timeout"] = int(timeout_s)
    try:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id,
                                   **options)
    except (RuntimeError, ValueError, OSError) as error:  # XlaRuntimeError is a RuntimeError
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DistributedError(f"could not join {coordinator} as process {process_id} of "
                               f"{num_processes} within {timeout_s} s: {first}") from error


def wait_for_coordinator(coordinator: str, timeout_s: float, *, probe: bool = True,
                         poll_s: float = 0.25) -> None:
    """Resolve ``HOST:PORT`` and, with ``probe``, poll until it accepts a TCP connection.

    Raises:
      DistributedError: the host does not resolve, or nothing listened within ``timeout_s``.
    """
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError) as error:
        raise DistributedError(f"cannot resolve the coordinator {coordinator}: "
                               f"{getattr(error, 'strerror', None) or error}") from None
    deadline = time.monotonic() + timeout_s
    while probe:
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.1, poll_s)):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedError(f"could not reach the coordinator {coordinator} within "
                                       f"{timeout_s:g} s: {error.strerror or error}") from None
            time.sleep(poll_s)


MAX_CPU_DEVICES = 8
"""At most this many CPU devices from :func:`one_cpu_device_per_core`: each device holds its
own copy of the data a program is given (a sweep replicates its data sets), so the count is
kept small on many-core hosts."""


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask (else the machine's count), lowered
    to a cgroup v2 CPU quota (``/sys/fs/cgroup/cpu.max``) where a container sets one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def one_cpu_device_per_core(count: int | None = None) -> int | None:
    """Make JAX's CPU backend ``count`` devices (default: :func:`usable_cores`, at most
    :data:`MAX_CPU_DEVICES`), so that independent programs placed on them (a sweep's trials)
    run side by side, one per core.

    XLA:CPU gives one device by default, and one small model's step keeps a single core busy
    (its matmuls are too small for the intra-op thread pool to split): sharding independent
    work over one device per core is what uses the others. Process-wide: call it from a
    program's entry point, before JAX's backends start. Returns the count set, or None when
    it did nothing: the user chose already (``--xla_force_host_platform_device_count`` in
    ``XLA_FLAGS``, or ``JAX_NUM_CPU_DEVICES``), the backends have started (the count can no
    longer change), or the installed JAX predates the ``jax_num_cpu_devices`` option (0.5).
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    chosen = getattr(jax.config, "jax_num_cpu_devices", None)
    if chosen is None or chosen >= 0:  # an older JAX, or set by JAX_NUM_CPU_DEVICES / in code
        return None
    count = min(usable_cores(), MAX_CPU_DEVICES) if count is None else count
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends already started: JAX refuses the change
        return None
    return count


def choose_devices(devices: int | str | Sequence[jax.Device]) -> list[jax.Device]:
    """``"all"`` of JAX's devices, the first ``n``, or the given ones."""
    available = jax.devices()
    if devices == "all":
        return available
    if isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be in [1, {len(available)}] (JAX sees "
                             f"{len(available)} devices: {available}); got {devices}")
        return available[:devices]
    return list(devices)


def data_mesh(devices: int | str | Sequence[jax.Device]) -> Mesh:
    """A 1-D mesh over ``"data"`` on :func:`choose_devices`."""
    return Mesh(np.array(choose_devices(devices)), (DATA_AXIS,))


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    """Each device gets an equal slice of every batch."""
    count = mesh.devices.size
    if batch_size % count:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of devices "
                         f"{count} (each device takes batch_size / devices examples)")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh, ndim: int = 1, batch_axis: int = 0) -> NamedSharding:
    """Sharding that splits axis ``batch_axis`` of an ``ndim``-D array over the devices."""
    spec = [None] * ndim
    spec[batch_axis] = DATA_AXIS
    return NamedSharding(mesh, P(*spec))


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Place host or device arrays with ``sharding``; every process passes the same values."""

    def one(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype,
                                                                 jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf)),
                                            impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def local_copy(tree: Any) -> Any:
    """A replicated global array's values on this process (for evaluation and saving)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)
