"""Elementwise activations: sigmoid, relu, tanh — manual rules and their references.

Every function here takes a floating array of any shape and returns one of the same shape and
dtype. The manual versions save the *output* ``y`` for the backward pass (the book's trick:
both rules below are functions of ``y`` alone), so no ``exp`` is recomputed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array

# --- sigmoid -------------------------------------------------------------------------------


@jax.custom_vjp
def _sigmoid(x: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(x)


def _sigmoid_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = jax.nn.sigmoid(x)
    return y, y


def _sigmoid_bwd(y: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return ((g * y * (1 - y)).astype(y.dtype),)


_sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)


def sigmoid(x: jax.Array) -> jax.Array:
    r"""Logistic sigmoid with the hand-derived backward rule.

    Forward:  ``y = 1 / (1 + exp(-x))`` (computed stably by ``jax.nn.sigmoid``: finite for
    any finite ``x``, e.g. ``sigmoid(-1000.) == 0``).

    Backward: ``dy/dx = exp(-x) / (1 + exp(-x))² = y·(1 − y)``, so ``dx = g·y·(1 − y)``.

    Args:
      x: floating array, any shape.

    Returns:
      ``y``, same shape and dtype as ``x``.

    >>> import jax, jax.numpy as jnp
    >>> float(jax.grad(sigmoid)(jnp.float32(0.0)))
    0.25
    """
    return _sigmoid(as_float_array("sigmoid", "x", x))


def sigmoid_reference(x: jax.Array) -> jax.Array:
    """Sigmoid as plain ``jax.nn.sigmoid``; its gradient comes from ``jax.grad``."""
    return jax.nn.sigmoid(as_float_array("sigmoid", "x", x))


# --- relu ----------------------------------------------------------------------------------


@jax.custom_vjp
def _relu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0)


def _relu_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = jnp.maximum(x, 0)
    return y, y


def _relu_bwd(y: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    # y > 0 exactly where x > 0; a new array is built, the incoming g is never mutated.
    return (jnp.where(y > 0, g, 0).astype(y.dtype),)


_relu.defvjp(_relu_fwd, _relu_bwd)


def relu(x: jax.Array) -> jax.Array:
    """Rectified linear unit with the hand-derived backward rule.

    Forward:  ``y = max(x, 0)``.

    Backward: ``dy/dx = 1`` for ``x > 0`` and ``0`` for ``x ≤ 0`` (the subgradient 0 at
    ``x = 0``, as ``jax.nn.relu``), so ``dx = g·[x > 0]``.

    Args:
      x: floating array, any shape.

    Returns:
      ``y``, same shape and dtype as ``x``.

    >>> import jax, jax.numpy as jnp
    >>> float(jax.grad(relu)(jnp.float32(0.0)))
    0.0
    """
    return _relu(as_float_array("relu", "x", x))


def relu_reference(x: jax.Array) -> jax.Array:
    """ReLU as plain ``jax.nn.relu`` (gradient 0 at 0); differentiated by ``jax.grad``."""
    return jax.nn.relu(as_float_array("relu", "x", x))


# --- tanh ----------------------------------------------------------------------------------


@jax.custom_vjp
def _tanh(x: jax.Array) -> jax.Array:
    return jnp.tanh(x)


def _tanh_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    y = jnp.tanh(x)
    return y, y


def _tanh_bwd(y: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return ((g * (1 - y * y)).astype(y.dtype),)


_tanh.defvjp(_tanh_fwd, _tanh_bwd)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent with the hand-derived backward rule.

    Forward:  ``y = tanh(x)``.

    Backward: ``d tanh(x)/dx = 1 − tanh(x)² = 1 − y²``, so ``dx = g·(1 − y²)``.
    """
    return _tanh(as_float_array("tanh", "x", x))


def tanh_reference(x: jax.Array) -> jax.Array:
    """``jnp.tanh``, differentiated by ``jax.grad``."""
    return jnp.tanh(as_float_array("tanh", "x", x))
