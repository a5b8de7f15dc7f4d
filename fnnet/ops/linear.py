"""Linear maps: ``matmul`` (y = x·W) and ``affine`` (y = x·W + b), manual and reference.

``x`` may have any number of leading axes, ``(..., D)``; ``W`` is ``(D, M)`` and ``b`` is
``(M,)``. In the rules below ``X`` and ``G`` are ``x`` and ``g`` with their leading axes
flattened into one: ``X`` is ``(N, D)`` and ``G`` is ``(N, M)``.
"""

from __future__ import annotations

import jax

from fnnet._checks import as_float_array, check_ndim


def _check_matmul_args(op: str, x: object, W: object) -> tuple[jax.Array, jax.Array]:
    x = as_float_array(op, "x", x)
    W = as_float_array(op, "W", W)
    check_ndim(op, "W", W, 2, "(input size D, output size M)")
    if x.ndim < 1 or x.shape[-1] != W.shape[0]:
        raise ValueError(
            f"{op}: x.shape[-1] must equal W.shape[0] (the input size); "
            f"got x.shape={tuple(x.shape)}, W.shape={tuple(W.shape)}"
        )
    return x, W


def _weight_grads(x: jax.Array, W: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(dx, dW) = (G·Wᵀ, Xᵀ·G)`` for ``y = x·W``, reshaped and cast to the primals."""
    dx = (g @ W.T.astype(g.dtype)).astype(x.dtype)
    x_rows = x.reshape(-1, x.shape[-1])
    g_rows = g.reshape(-1, g.shape[-1])
    dW = (x_rows.T.astype(g.dtype) @ g_rows).astype(W.dtype)
    return dx, dW


# --- matmul --------------------------------------------------------------------------------


@jax.custom_vjp
def _matmul(x: jax.Array, W: jax.Array) -> jax.Array:
    return x @ W


def _matmul_fwd(x: jax.Array, W: jax.Array):
    return x @ W, (x, W)


def _matmul_bwd(res, g: jax.Array):
    x, W = res
    return _weight_grads(x, W, g)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def matmul(x: jax.Array, W: jax.Array) -> jax.Array:
    """Matrix product with the hand-derived backward rule.

    Forward:  ``y = x·W``, i.e. ``yₙₘ = Σ_d xₙd·Wdm``.

    Backward: ``∂yₙₘ/∂xₙd = Wdm`` and ``∂yₙₘ/∂Wdm = xₙd``, so
    ``dx = g·Wᵀ`` and ``dW = Xᵀ·G`` (summed over every leading axis of ``x``).

    Args:
      x: ``(..., D)`` floating array.
      W: ``(D, M)`` floating array.

    Returns:
      ``(..., M)`` array, dtype the promotion of ``x`` and ``W``.
    """
    x, W = _check_matmul_args("matmul", x, W)
    return _matmul(x, W)


def matmul_reference(x: jax.Array, W: jax.Array) -> jax.Array:
    """``x @ W`` in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    x, W = _check_matmul_args("matmul", x, W)
    return x @ W


# --- affine --------------------------------------------------------------------------------


def _check_affine_args(x: object, W: object, b: object):
    x, W = _check_matmul_args("affine", x, W)
    b = as_float_array("affine", "b", b)
    if b.shape != (W.shape[1],):
        raise ValueError(
            f"affine: b must have shape (W.shape[1],) = ({W.shape[1]},); got {tuple(b.shape)}"
        )
    return x, W, b


@jax.custom_vjp
def _affine(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    return x @ W + b


def _affine_fwd(x: jax.Array, W: jax.Array, b: jax.Array):
    return x @ W + b, (x, W, b)


def _affine_bwd(res, g: jax.Array):
    x, W, b = res
    dx, dW = _weight_grads(x, W, g)
    db = g.reshape(-1, g.shape[-1]).sum(axis=0).astype(b.dtype)
    return dx, dW, db


_affine.defvjp(_affine_fwd, _affine_bwd)


def affine(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """Affine (fully connected) layer with the hand-derived backward rule.

    Forward:  ``y = x·W + b`` (``b`` added to every row).

    Backward: as :func:`matmul` for ``x`` and ``W``; ``b`` reaches every row, so its
    cotangent sums them: ``dx = g·Wᵀ``, ``dW = Xᵀ·G``, ``db = Σₙ Gₙ``.

    Args:
      x: ``(..., D)`` floating array.
      W: ``(D, M)`` floating array.
      b: ``(M,)`` floating array.

    Returns:
      ``(..., M)`` array.
    """
    x, W, b = _check_affine_args(x, W, b)
    return _affine(x, W, b)


def affine_reference(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """``x @ W + b`` in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    x, W, b = _check_affine_args(x, W, b)
    return x @ W + b

