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

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from fnnet.layers import Model

PRECISIONS = {"fp32": None, "bf16": jnp.bfloat16}
MATMUL_PRECISIONS = ("default", "high", "highest")
"""float32 matmul and convolution precision (``jax.default_matmul_precision``): ``default``
lets the backend choose — NVIDIA GPUs then run float32 products in TF32 (10-bit mantissa
inputs, ~1e-3 relative error); ``high`` is bf16×3 (about float32); ``highest`` is full float32.
CPUs compute in float32 at every setting."""


@contextlib.contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    """Trace and compile inside with float32 matmuls at ``name`` (:data:`MATMUL_PRECISIONS`);
    ``"default"`` leaves JAX's setting alone.

    >>> import jax, jax.numpy as jnp
    >>> with matmul_precision("highest"):
    ...     float(jax.jit(jnp.dot)(jnp.ones(3), jnp.ones(3)))
    3.0
    """
    if name not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul precision must be one of {MATMUL_PRECISIONS}; got {name!r}")
    if name == "default":
        yield
        return
    with jax.default_matmul_precision(name):
        yield


def cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
    """Every floating leaf of ``tree`` cast to ``dtype``; other leaves (integer labels) kept."""

    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)


def mixed_precision(model: Model, compute_dtype: jnp.dtype = jnp.bfloat16) -> Model:
    """``model`` computing in ``compute_dtype`` over float32 master params (see module doc).

    The model's state (batch-norm running statistics) stays float32 as well.
    """

    def low(tree):
        return cast_floating(tree, compute_dtype)

    def apply(params, x, *, state=None, key=None, train=False):
        return model.apply(low(params), low(x), state=state, key=key,
                           train=train).astype(jnp.float32)

    def loss(params, x, t, *, state=None, key=None, train=True):
        return model.loss(low(params), low(x), low(t), state=state, key=key,
                          train=train).astype(jnp.float32)

    def loss_and_state(params, state, x, t, *, key=None):
        value, new_state = model.loss_and_state(low(params), state, low(x), low(t), key=key)
        return value.astype(jnp.float32), cast_floating(new_state, jnp.float32)

    def accuracy(params, x, t, *, state=None):
        return model.accuracy(low(params), low(x), t, state=state)

    return model._replace(apply=apply, loss=loss, loss_and_state=loss_and_state,
                          accuracy=accuracy)


def with_precision(model: Model, precision: str) -> Model:
    """``"fp32"`` leaves the model as it is; ``"bf16"`` wraps it in :func:`mixed_precision`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}; got {precision!r}")
    dtype = PRECISIONS[precision]
    return model if dtype is None else mixed_precision(model, dtype)
