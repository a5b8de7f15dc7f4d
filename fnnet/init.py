"""Weight initialisers: ``normal(std)`` (the book's std 0.01), ``xavier`` and ``he``.

An initialiser is a pure function ``(key, shape, dtype) -> array`` for a weight matrix of
shape ``(fan_in, fan_out)``. Following the book (chapter 6):

* ``normal(std)``: ``W ~ N(0, std²)``;
* ``xavier``:      ``W ~ N(0, 1/fan_in)`` — suited to sigmoid and tanh;
* ``he``:          ``W ~ N(0, 2/fan_in)`` — suited to ReLU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]

BOOK_STD = 0.01
INITIALIZERS = ("normal", "xavier", "he")


def normal(std: float = BOOK_STD) -> Initializer:
    """``W ~ N(0, std²)``; the book's two-layer net uses ``std = 0.01``."""
    if not std > 0:
        raise ValueError(f"normal: std must be > 0; got {std}")

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return std * jax.random.normal(key, shape, dtype)

    return init


def _scaled_by_fan_in(gain: float) -> Initializer:
    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return math.sqrt(gain / shape[0]) * jax.random.normal(key, shape, dtype)

    return init


def xavier() -> Initializer:
    """``W ~ N(0, 1/fan_in)`` (the book's "Xavier" initial value)."""
    return _scaled_by_fan_in(1.0)


def he() -> Initializer:
    """``W ~ N(0, 2/fan_in)`` (He et al.'s initial value for ReLU)."""
    return _scaled_by_fan_in(2.0)


def get_initializer(weight_init: str | float) -> Initializer:
    """Initialiser by name (``"normal"``, ``"xavier"``, ``"he"``) or a float std for normal."""
    if isinstance(weight_init, int | float) and not isinstance(weight_init, bool):
        return normal(float(weight_init))
    if weight_init == "normal":
        return normal()
    if weight_init == "xavier":
        return xavier()
    if weight_init == "he":
        return he()
    raise ValueError(
        f"weight_init must be one of {INITIALIZERS} or a float std; got {weight_init!r}"
    )
