"""Optimisers written by hand over the parameter pytree.

:func:`sgd` is packaged as an ``optax.GradientTransformation`` (so it composes with
``optax.chain`` and plugs into the same train step as ``optax.sgd``); :func:`sgd_update` is
the same rule as one pure function.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import optax

OPTIMIZERS = ("sgd", "optax-sgd")


def _check_learning_rate(learning_rate: float) -> None:
    if not (isinstance(learning_rate, int | float) and math.isfinite(learning_rate)
            and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0; got {learning_rate!r}")


def sgd_update(params: Any, grads: Any, learning_rate: float) -> Any:
    """One SGD step over matching pytrees: ``θ ← θ − η·∂L/∂θ`` for every leaf."""
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def sgd(learning_rate: float) -> optax.GradientTransformation:
    """Plain SGD by hand, as a stateless ``GradientTransformation``.

    ``update(g) = −η·g``; applied with ``optax.apply_updates`` this is ``θ ← θ − η·g``,
    the book's ``SGD.update``. It computes the same numbers as ``optax.sgd(η)``.

    >>> import jax.numpy as jnp, optax
    >>> opt = sgd(0.5)
    >>> updates, _ = opt.update({"w": jnp.array(2.0)}, opt.init({"w": jnp.array(1.0)}))
    >>> float(optax.apply_updates({"w": jnp.array(1.0)}, updates)["w"])
    0.0
    """
    _check_learning_rate(learning_rate)

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: optax.EmptyState, params: Any = None):
        del params
        return jax.tree.map(lambda g: -learning_rate * g, updates), state

    return optax.GradientTransformation(init, update)


def get_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """``"sgd"`` (by hand, :func:`sgd`) or ``"optax-sgd"`` (``optax.sgd``)."""
    _check_learning_rate(learning_rate)
    if name == "sgd":
        return sgd(learning_rate)
    if name == "optax-sgd":
        return optax.sgd(learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {name!r}")
