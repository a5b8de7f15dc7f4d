"""Argument checks shared by the ops: every failure names the argument, expected and actual."""

from __future__ import annotations

import math

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


def as_int_array(op: str, name: str, value: object) -> jax.Array:
    """Return ``value`` as a JAX array, raising ``TypeError`` unless its dtype is integer
    (indices and class labels; ``bool`` is not an integer here)."""
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(f"{op}: {name} must have an integer dtype (int32/int64/uint8/...); "
                        f"got {array.dtype}")
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


def static_int(op: str, name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as a Python int (``>= minimum`` if given) for an op's static argument (one
    that fixes shapes): ``TypeError`` for arrays, floats and bools, ``ValueError`` below
    ``minimum``.

    >>> static_int("repeat", "D", np.int64(3), minimum=1)
    3
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{op}: {name} must be a Python int (a static value, not an array); "
            f"got {type(value).__name__} {value!r}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}; got {int(value)}")
    return int(value)


def real_number(name: str, value: object) -> float | jax.Array:
    """``value`` as a Python float (weakly typed: it never changes a leaf's dtype).

    Accepts Python numbers, NumPy scalars and 0-d NumPy/JAX arrays (``TypeError`` otherwise).
    A traced 0-d array (as ``optax.inject_hyperparams`` passes under ``jit``) is returned as
    is: its value cannot be checked.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating | np.ndarray | jax.Array):
        raise TypeError(f"{name} must be a real number (Python, NumPy or 0-d JAX scalar); "
                        f"got {type(value).__name__} {value!r}")
    if isinstance(value, np.ndarray | jax.Array):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar (0-d); got shape {tuple(value.shape)}")
        if not (jnp.issubdtype(value.dtype, jnp.floating)
                or jnp.issubdtype(value.dtype, jnp.integer)):
            raise TypeError(f"{name} must be a real number; got dtype {value.dtype}")
    try:
        return float(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return value


def check_range(name: str, value: object, *, low: float, low_open: bool, high: float,
                high_open: bool) -> float | jax.Array:
    """``value`` (see :func:`real_number`) after checking that it is finite and in the
    interval from ``low`` to ``high`` (each bound open or closed): ``ValueError`` naming
    ``name``, the interval and the value. Traced values pass unchecked."""
    number = real_number(name, value)
    if isinstance(number, float):
        above = number > low if low_open else number >= low
        below = number < high if high_open else number <= high
        if not (math.isfinite(number) and above and below):
            if high == math.inf:
                expected = f"a finite number {'>' if low_open else '>='} {low:g}"
            else:
                expected = (f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
                            f"{')' if high_open else ']'}")
            raise ValueError(f"{name} must be {expected}; got {value!r}")
    return number


def check_positive(name: str, value: object) -> float | jax.Array:
    """A finite number > 0 (learning rates, standard deviations).

    >>> check_positive("learning_rate", np.float32(0.5))
    0.5
    """
    return check_range(name, value, low=0.0, low_open=True, high=math.inf, high_open=True)


def check_non_negative(name: str, value: object) -> float | jax.Array:
    """A finite number >= 0 (weight decay λ)."""
    return check_range(name, value, low=0.0, low_open=False, high=math.inf, high_open=True)


def check_fraction(name: str, value: object) -> float | jax.Array:
    """A number in [0, 1) (momentum α, decay rate ρ, β₁, β₂, dropout rates)."""
    return check_range(name, value, low=0.0, low_open=False, high=1.0, high_open=True)
