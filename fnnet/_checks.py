"""Argument checks shared by the ops: every failure names the argument, expected and actual."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def as_float_array(op: str, name: str, value: object) -> jax.Array:
    """Return ``value`` as a JAX array, raising ``TypeError`` unless its dtype is floating."""
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(
            f"{op}: {name} must have a floating-point dtype (float16/bfloat16/float32/float64); "
            f"got {array.dtype}"
        )
    return array


def check_ndim(op: str, name: str, array: jax.Array, ndim: int, meaning: str) -> None:
    """Raise ``ValueError`` unless ``array.ndim == ndim``; ``meaning`` describes the axes."""
    if array.ndim != ndim:
        raise ValueError(
            f"{op}: {name} must be {ndim}-D {meaning}; got shape {tuple(array.shape)}"
        )


def check_same_shape(op: str, a_name: str, a: jax.Array, b_name: str, b: jax.Array) -> None:
    """Raise ``ValueError`` unless the two shapes are equal (nothing is broadcast silently)."""
    if a.shape != b.shape:
        raise ValueError(
            f"{op}: {b_name} must have the same shape as {a_name}, {tuple(a.shape)}; "
            f"got {tuple(b.shape)}"
        )


def concrete_values(array: jax.Array) -> np.ndarray | None:
    """The values of ``array`` as NumPy when they are known (eager call), ``None`` under a trace."""
    try:
        return np.asarray(array)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _scalar(name: str, value: object, kind: str) -> np.ndarray:
    """``value`` as a 0-d NumPy array (Python, NumPy or concrete 0-d JAX scalar), else an error."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be {kind}; got the bool {value!r}")
    try:
        array = np.asarray(value)
    except (TypeError, jax.errors.TracerArrayConversionError,
            jax.errors.ConcretizationTypeError):
        raise ValueError(f"{name} must be {kind} known before tracing; got {value!r}") from None
    if array.ndim != 0:
        raise ValueError(f"{name} must be {kind} (a scalar); got shape {array.shape}")
    return array


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum`` (Python, NumPy or 0-d JAX integer), else ``ValueError``.

    >>> check_int("hidden_size", np.int64(50))
    50
    """
    kind = f"an integer >= {minimum}"
    array = _scalar(name, value, kind)
    if not np.issubdtype(array.dtype, np.integer) or int(array) < minimum:
        raise ValueError(f"{name} must be {kind}; got {value!r}")
    return int(array)


def check_positive(name: str, value: object) -> float:
    """``value`` as a finite ``float > 0`` (Python, NumPy or 0-d JAX number), else ``ValueError``.

    >>> check_positive("learning_rate", np.float32(0.5))
    0.5
    """
    kind = "a finite number > 0"
    array = _scalar(name, value, kind)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be {kind}; got {value!r}")
    number = float(array)
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be {kind}; got {value!r}")
    return number
