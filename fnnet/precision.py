"""Mixed precision: float32 master parameters, matmuls and activations in a lower dtype.

:func:`mixed_precision` wraps a :class:`~fnnet.layers.Model` so that its forward pass casts
the parameters and inputs to ``compute_dtype`` (bfloat16 by default). Gradients come back in
float32 because the cast's VJP casts the cotangent back: the optimiser and its state never
see bfloat16, and the hand rules return cotangents in their (bfloat16) primal dtype in
between. ``softmax_cross_entropy`` computes the loss in float32 internally but returns it in
the logits' dtype, so the loss reported here is that bfloat16 value cast to float32 (about
3 significant digits); the gradients do not depend on that rounding.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnnet.layers import Model

PRECISIONS = {"fp32": None, "bf16": jnp.bfloat16}


def cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
    """Every floating leaf of ``tree`` cast to ``dtype``; other leaves (integer labels) kept."""

    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)


def mixed_precision(model: Model, compute_dtype: jnp.dtype = jnp.bfloat16) -> Model:
    """``model`` computing in ``compute_dtype`` over float32 master params (see module doc)."""

    def apply(params, x):
        logits = model.apply(cast_floating(params, compute_dtype), cast_floating(x, compute_dtype))
        return logits.astype(jnp.float32)

    def loss(params, x, t):
        low = cast_floating((params, x, t), compute_dtype)
        return model.loss(*low).astype(jnp.float32)

    def accuracy(params, x, t):
        return model.accuracy(cast_floating(params, compute_dtype), cast_floating(x, compute_dtype),
                              t)

    return Model(model.init, apply, loss, accuracy)


def with_precision(model: Model, precision: str) -> Model:
    """``"fp32"`` leaves the model as it is; ``"bf16"`` wraps it in :func:`mixed_precision`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}; got {precision!r}")
    dtype = PRECISIONS[precision]
    return model if dtype is None else mixed_precision(model, dtype)
