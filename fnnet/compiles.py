"""Counting and timing JAX's compilations, from the events JAX itself records
(:mod:`jax.monitoring`): how many programs a run built and how long that took.

A *program* is one executable XLA built (or fetched from the persistent compilation cache:
those are counted apart as ``cache_hits``). Its time has three parts: tracing the Python
function to a jaxpr, lowering that to StableHLO, and the backend's compile (or cache read).

>>> import jax, numpy as np
>>> with count_compilations() as stats:
...     _ = jax.jit(lambda x: x * 2)(np.arange(3.0))  # a jnp.arange would be one more
>>> stats.programs
1
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from jax import monitoring

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
BACKEND_EVENT = "/jax/core/compile/backend_compile_duration"  # also timed for a cache hit
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


@dataclass
class CompileStats:
    """What was compiled while counting: ``programs`` built by the backend (``cache_hits`` of
    them read from the persistent cache) and the seconds spent tracing, lowering and in the
    backend."""

    programs: int = 0
    cache_hits: int = 0
    trace_s: float = 0.0
    lower_s: float = 0.0
    backend_s: float = 0.0

    @property
    def seconds(self) -> float:
        """All compile time: tracing + lowering + backend."""
        return self.trace_s + self.lower_s + self.backend_s

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "seconds": self.seconds}

    def __sub__(self, other: CompileStats) -> CompileStats:
        return CompileStats(*(a - b for a, b in zip(asdict(self).values(),
                                                     asdict(other).values(), strict=True)))

    def copy(self) -> CompileStats:
        return CompileStats(**asdict(self))


_lock = threading.Lock()
_active: list[CompileStats] = []


def _on_duration(event: str, duration: float, **_: object) -> None:
    field = {TRACE_EVENT: "trace_s", LOWER_EVENT: "lower_s", BACKEND_EVENT: "backend_s"}.get(event)
    if field is None:
        return
    with _lock:
        for stats in _active:
            setattr(stats, field, getattr(stats, field) + duration)
            if event == BACKEND_EVENT:
                stats.programs += 1


def _on_event(event: str, **_: object) -> None:
    if event == CACHE_HIT_EVENT:
        with _lock:
            for stats in _active:
                stats.cache_hits += 1


@contextlib.contextmanager
def count_compilations() -> Iterator[CompileStats]:
    """Count the compilations made (in any thread) until the block ends; nests."""
    stats = CompileStats()
    with _lock:
        if not _active:
            monitoring.register_event_duration_secs_listener(_on_duration)
            monitoring.register_event_listener(_on_event)
        _active.append(stats)
    try:
        yield stats
    finally:
        with _lock:
            _active.remove(stats)
            if not _active:
                monitoring.unregister_event_duration_listener(_on_duration)
                monitoring.unregister_event_listener(_on_event)
