"""The jit-per-step loop shared by every JAX row (fnnet's and the plain-JAX peers').

The data and the index matrix go to the device once; each step is two dispatches, both
compiled ahead of time: ``take_batch`` (gather step ``i``'s batch on the device) and the
jitted train step. Python runs the loop; the device is synchronised once, at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


@jax.jit
def take_batch(x: jax.Array, t: jax.Array, indices: jax.Array,
               i: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Batch ``i``: ``(x[indices[i]], t[indices[i]])``, gathered on the device."""
    rows = indices[i]
    return x[rows], t[rows]


def compile_ahead(fn: Callable, *args: Any) -> tuple[Callable, float]:
    """``fn`` compiled for ``args`` (AOT ``lower().compile()``) and the seconds it took.

    Where ``fn`` cannot be lowered (not a ``jax.jit`` object), it is called once on ``args``
    instead and that first call is timed; ``args`` may then be donated, so pass copies.
    """
    start = time.perf_counter()
    if hasattr(fn, "lower"):
        compiled = fn.lower(*args).compile()
    else:
        jax.block_until_ready(fn(*args))
        compiled = fn
    return compiled, time.perf_counter() - start


def train_per_step(step: Callable, fresh_carry: Callable[[], tuple], x: np.ndarray,
                   t: np.ndarray, indices: np.ndarray) -> tuple[tuple, float, float]:
    """Run ``step`` once per row of ``indices`` in a Python loop; return the final carry,
    the seconds of the timed loop and the compile seconds.

    ``step(*carry, x_batch, t_batch) -> (*carry, loss)`` is jitted and may donate its carry;
    ``fresh_carry()`` builds a new device carry (e.g. ``(params, opt_state)``) each time it
    is called. Compilation and one warm-up step (on a throwaway carry) come before the
    timed loop, which starts from a fresh carry.
    """
    x_dev, t_dev, idx_dev = jax.device_put((x, t, indices))
    take, take_s = compile_ahead(take_batch, x_dev, t_dev, idx_dev, 0)
    x_batch, t_batch = take(x_dev, t_dev, idx_dev, 0)
    run_step, step_s = compile_ahead(step, *fresh_carry(), x_batch, t_batch)
    jax.block_until_ready(run_step(*fresh_carry(), x_batch, t_batch))  # warm-up
    carry = jax.block_until_ready(fresh_carry())
    start = time.perf_counter()
    for i in range(len(indices)):
        x_batch, t_batch = take(x_dev, t_dev, idx_dev, i)
        carry = run_step(*carry, x_batch, t_batch)[:-1]
    jax.block_until_ready(carry)
    return carry, time.perf_counter() - start, take_s + step_s
