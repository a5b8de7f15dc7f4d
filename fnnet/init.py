"""Weight initialisers as values: callables ``init(key, shape, dtype) -> array``.

They have the signature of :mod:`jax.nn.initializers`, so either kind can be passed wherever
fnnet takes a ``weight_init``. The book's chapter-6 presets:

* :func:`normal` ``(std)``: ``W ~ N(0, std²)``; :data:`book_normal` is the book's
  ``std = 0.01``;
* :data:`xavier`: ``W ~ N(0, 1/fan_in)`` — the book's "Xavier" initial value (suited to
  sigmoid and tanh). JAX calls this scaling *LeCun normal*; note that
  ``jax.nn.initializers.lecun_normal`` draws from a *truncated* normal, while the book (and
  this one) uses the plain normal, ``variance_scaling(1.0, "fan_in", "normal")``;
* :data:`he`: ``W ~ N(0, 2/fan_in)`` — He et al.'s initial value for ReLU,
  ``variance_scaling(2.0, "fan_in", "normal")``.

Fan-in: a weight matrix is ``(fan_in, fan_out)``, so ``fan_in = shape[0]``; a convolution
kernel is ``(FN, C, FH, FW)`` (the book's layout), so ``fan_in = C·FH·FW``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnnet._checks import check_positive

Initializer = Callable[..., jax.Array]
"""``init(key, shape, dtype=jnp.float32) -> array``, as in :mod:`jax.nn.initializers`."""

BOOK_STD = 0.01


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs feeding one output unit: ``shape[0]`` of ``(fan_in, fan_out)``; ``C·FH·FW`` of a
    kernel ``(FN, C, FH, FW)``.

    >>> fan_in((784, 50)), fan_in((30, 1, 5, 5))
    (784, 25)
    """
    if len(shape) < 2:
        raise ValueError(f"fan_in: a weight has at least 2 axes; got shape {tuple(shape)}")
    return shape[0] if len(shape) == 2 else math.prod(shape[1:])


def normal(std: float = BOOK_STD) -> Initializer:
    """``W ~ N(0, std²)``; the book's two-layer net uses ``std = 0.01`` (:data:`book_normal`)."""
    std = check_positive("std", std)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return std * jax.random.normal(key, shape, dtype)

    return init


def _scaled_by_fan_in(gain: float, name: str) -> Initializer:
    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return math.sqrt(gain / fan_in(shape)) * jax.random.normal(key, shape, dtype)

    init.__name__ = init.__qualname__ = name
    return init


book_normal: Initializer = normal(BOOK_STD)
xavier: Initializer = _scaled_by_fan_in(1.0, "xavier")
he: Initializer = _scaled_by_fan_in(2.0, "he")

INITIALIZERS: dict[str, Initializer] = {"normal": book_normal, "xavier": xavier, "he": he}
"""The presets by the names the CLI and builders accept."""


def resolve(weight_init: str | float | Initializer) -> Initializer:
    """An initialiser from a preset name, a float std for :func:`normal`, or a callable as is."""
    if callable(weight_init):
        return weight_init
    if isinstance(weight_init, str):
        if weight_init not in INITIALIZERS:
            raise ValueError(f"weight_init must be one of {tuple(INITIALIZERS)}, a float std or "
                             f"an initializer (key, shape, dtype); got {weight_init!r}")
        return INITIALIZERS[weight_init]
    return normal(weight_init)
