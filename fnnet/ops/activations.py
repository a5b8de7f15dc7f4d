"""Elementwise activations: sigmoid, relu, tanh — manual rules and their references.

All three come from one factory, :func:`elementwise`: the forward is a plain ``jax.numpy``
function and the hand rule is written in terms of the *output* ``y`` (the book's trick: each
derivative below is a function of ``y`` alone), so the backward pass saves ``y`` and recomputes
no ``exp``. Every function here takes a floating array of any shape and returns one of the same
shape and dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array

Unary = Callable[[jax.Array], jax.Array]


def elementwise(name: str, forward: Unary,
                rule: Callable[[jax.Array, jax.Array], jax.Array]) -> tuple[Unary, Unary]:
    """``(manual, reference)`` for an elementwise ``y = forward(x)``.

    ``manual`` is a ``jax.custom_vjp`` whose backward is ``dx = rule(y, g)`` (cast to ``y``'s
    dtype); ``reference`` is ``forward`` itself, differentiated by ``jax.grad``. Both check that
    ``x`` is floating and report errors under ``name``.
    """

    @jax.custom_vjp
    def core(x: jax.Array) -> jax.Array:
        return forward(x)

    def fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = forward(x)
        return y, y

    def bwd(y: jax.Array, g: jax.Array) -> tuple[jax.Array]:
        return (rule(y, g).astype(y.dtype),)

    core.defvjp(fwd, bwd)

    def manual(x: jax.Array) -> jax.Array:
        return core(as_float_array(name, "x", x))

    def reference(x: jax.Array) -> jax.Array:
        return forward(as_float_array(name, "x", x))

    manual.__name__, reference.__name__ = name, f"{name}_reference"
    manual.__qualname__, reference.__qualname__ = manual.__name__, reference.__name__
    return manual, reference


sigmoid, sigmoid_reference = elementwise(
    "sigmoid", jax.nn.sigmoid, lambda y, g: g * y * (1 - y))
sigmoid.__doc__ = r"""Logistic sigmoid with the hand-derived backward rule.

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
sigmoid_reference.__doc__ = "Sigmoid as plain ``jax.nn.sigmoid``; gradient by ``jax.grad``."

# y > 0 exactly where x > 0; a new array is built, the incoming g is never mutated.
relu, relu_reference = elementwise("relu", jax.nn.relu, lambda y, g: jnp.where(y > 0, g, 0))
relu.__doc__ = """Rectified linear unit with the hand-derived backward rule.

    Forward:  ``y = max(x, 0)``.

    Backward: ``dy/dx = 1`` for ``x > 0`` and ``0`` for ``x ≤ 0`` (the subgradient 0 at
    ``x = 0``, as ``jax.nn.relu``), so ``dx = g·[y > 0]`` (``y > 0`` exactly where ``x > 0``).

    Args:
      x: floating array, any shape.

    Returns:
      ``y``, same shape and dtype as ``x``.

    >>> import jax, jax.numpy as jnp
    >>> float(jax.grad(relu)(jnp.float32(0.0)))
    0.0
    """
relu_reference.__doc__ = "ReLU as plain ``jax.nn.relu`` (gradient 0 at 0); by ``jax.grad``."

tanh, tanh_reference = elementwise("tanh", jnp.tanh, lambda y, g: g * (1 - y * y))
tanh.__doc__ = """Hyperbolic tangent with the hand-derived backward rule.

    Forward:  ``y = tanh(x)``.

    Backward: ``d tanh(x)/dx = 1 − tanh(x)² = 1 − y²``, so ``dx = g·(1 − y²)``.
    """
tanh_reference.__doc__ = "``jnp.tanh``, differentiated by ``jax.grad``."
