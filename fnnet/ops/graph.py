"""Computational-graph nodes: add, mul, branch (copy), repeat, sum — manual and reference.

These are the nodes of the sequel book's chapter 1: each is a tiny function whose backward
rule follows from one line of calculus, and any network is a graph of them. Every node exists
twice, as elsewhere in :mod:`fnnet.ops`: ``<node>`` is a ``jax.custom_vjp`` with the hand rule,
``<node>_reference`` is plain ``jax.numpy`` differentiated by ``jax.grad``. The sum node is
called ``sum_`` here (so the builtin ``sum`` keeps its meaning in this module) and is exported
as ``sum`` by :mod:`fnnet.manual` and :mod:`fnnet.autodiff`.

The MatMul node is :func:`fnnet.ops.linear.matmul` (re-exported here, not duplicated):
``y = x·W``, ``dx = g·Wᵀ``, ``dW = xᵀ·g``.

Conventions: inputs are floating arrays (integer inputs raise ``TypeError``); static integers
(``k``, ``D``, ``axis``) are Python ints passed through ``nondiff_argnums``, never arrays, so
under ``jit`` they must be static too; each backward rule returns its cotangents cast to the
dtype of the matching primal (bfloat16 in, bfloat16 gradient out).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fnnet._checks import as_float_array, static_int
from fnnet.ops.linear import matmul as matmul
from fnnet.ops.linear import matmul_reference as matmul_reference

Shape = tuple[int, ...]
Axis = int | Sequence[int] | None

# --- shared checks and helpers -------------------------------------------------------------


def _normalize_axis(op: str, axis: object, ndim: int, what: str = "") -> int:
    """One axis in ``[-ndim, ndim)`` as a non-negative int, or ``ValueError``/``TypeError``;
    ``what`` says which array ``ndim`` counts the axes of."""
    axis = static_int(op, "axis", axis)
    if not -ndim <= axis < ndim:
        valid = f"{-ndim} <= axis <= {ndim - 1}" if ndim else "no axis: x is a scalar"
        raise ValueError(
            f"{op}: axis {axis} is out of range {what or f'for x with ndim {ndim}'} "
            f"(expected {valid})"
        )
    return axis % ndim


def _broadcast_shape(op: str, x: jax.Array, y: jax.Array) -> Shape:
    """The NumPy broadcast of ``x.shape`` and ``y.shape``, or a ``ValueError`` naming both."""
    try:
        return tuple(np.broadcast_shapes(x.shape, y.shape))
    except ValueError:
        raise ValueError(
            f"{op}: x and y must have broadcastable shapes (aligned from the right, each axis "
            f"equal or 1); got x.shape={tuple(x.shape)}, y.shape={tuple(y.shape)}"
        ) from None


def _check_binary(op: str, x: object, y: object) -> tuple[jax.Array, jax.Array]:
    x = as_float_array(op, "x", x)
    y = as_float_array(op, "y", y)
    _broadcast_shape(op, x, y)
    return x, y


def unbroadcast(g: jax.Array, shape: Shape) -> jax.Array:
    """Sum ``g`` (of a broadcast shape) back down to ``shape``: the VJP of broadcasting.

    An input of ``shape`` that was broadcast to ``g.shape`` reached every position along the
    axes it was stretched over (the extra leading axes, and its size-1 axes), so its cotangent
    is ``g`` summed over exactly those axes, then reshaped to ``shape``.

    >>> unbroadcast(jnp.ones((2, 3, 4)), (3, 1)).tolist()
    [[8.0], [8.0], [8.0]]
    """
    lead = g.ndim - len(shape)
    stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return jnp.sum(g, axis=tuple(range(lead)) + stretched).reshape(shape)


# --- add -----------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _add(x_spec: tuple[Shape, np.dtype], y_spec: tuple[Shape, np.dtype], x, y):
    return x + y


def _add_fwd(x_spec, y_spec, x, y):
    return x + y, None  # the backward needs only the (static) shapes and dtypes


def _add_bwd(x_spec, y_spec, _, g):
    (x_shape, x_dtype), (y_shape, y_dtype) = x_spec, y_spec
    return unbroadcast(g, x_shape).astype(x_dtype), unbroadcast(g, y_shape).astype(y_dtype)


_add.defvjp(_add_fwd, _add_bwd)


def add(x: jax.Array, y: jax.Array) -> jax.Array:
    """Add node, with NumPy broadcasting and the hand-derived backward rule.

    Forward:  ``z = x + y``, broadcast to the common shape.

    Backward: ``∂z/∂x = ∂z/∂y = 1``, so each input gets ``g`` as it is — then "un-broadcast":
    an input stretched over an axis fed every position on it, so its cotangent sums ``g``
    over the axes it was broadcast along and takes back its own shape
    (``dx = unbroadcast(g, x.shape)``, ``dy = unbroadcast(g, y.shape)``)::

        forward:  (x, y) ──▶ x + y
        backward: (Σ_bcast g, Σ_bcast g) ◀── g

    Args:
      x, y: floating arrays of broadcastable shapes, e.g. ``(3, 1)`` and ``(1, 4)``.

    Returns:
      ``x + y`` of the broadcast shape, dtype the promotion of both.

    >>> import jax, jax.numpy as jnp
    >>> jax.grad(lambda b: add(jnp.ones((2, 3)), b).sum())(jnp.zeros(3)).tolist()
    [2.0, 2.0, 2.0]
    """
    x, y = _check_binary("add", x, y)
    return _add((x.shape, x.dtype), (y.shape, y.dtype), x, y)


def add_reference(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x + y`` in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    x, y = _check_binary("add", x, y)
    return x + y


# --- mul -----------------------------------------------------------------------------------


@jax.custom_vjp
def _mul(x: jax.Array, y: jax.Array) -> jax.Array:
    return x * y


def _mul_fwd(x: jax.Array, y: jax.Array):
    return x * y, (x, y)


def _mul_bwd(res, g: jax.Array):
    x, y = res
    dx = unbroadcast(g * y.astype(g.dtype), x.shape).astype(x.dtype)
    dy = unbroadcast(g * x.astype(g.dtype), y.shape).astype(y.dtype)
    return dx, dy


_mul.defvjp(_mul_fwd, _mul_bwd)


def mul(x: jax.Array, y: jax.Array) -> jax.Array:
    """Multiply node (elementwise), with NumPy broadcasting and the hand-derived rule.

    Forward:  ``z = x·y``, broadcast to the common shape.

    Backward: ``∂z/∂x = y`` and ``∂z/∂y = x`` — the inputs swap roles — so
    ``dx = unbroadcast(g·y, x.shape)`` and ``dy = unbroadcast(g·x, y.shape)``::

        forward:  (x, y) ──▶ x·y
        backward: (Σ_bcast g·y, Σ_bcast g·x) ◀── g

    Args:
      x, y: floating arrays of broadcastable shapes.

    Returns:
      ``x * y`` of the broadcast shape, dtype the promotion of both.

    >>> import jax, jax.numpy as jnp
    >>> [float(d) for d in jax.grad(mul, argnums=(0, 1))(jnp.float32(3.0), jnp.float32(5.0))]
    [5.0, 3.0]
    """
    x, y = _check_binary("mul", x, y)
    return _mul(x, y)


def mul_reference(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x * y`` in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    x, y = _check_binary("mul", x, y)
    return x * y


# --- branch (copy) -------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _branch(k: int, x: jax.Array) -> tuple[jax.Array, ...]:
    return (x,) * k


def _branch_fwd(k: int, x: jax.Array):
    return (x,) * k, None


def _branch_bwd(k: int, _, gs: tuple[jax.Array, ...]):
    total = gs[0]
    for g in gs[1:]:
        total = total + g
    return (total.astype(gs[0].dtype),)


_branch.defvjp(_branch_fwd, _branch_bwd)


def branch(x: jax.Array, k: int) -> tuple[jax.Array, ...]:
    """Branch (Repeat/copy) node: one input sent down ``k`` edges, with the hand rule.

    Forward:  ``(y₁, …, y_k) = (x, …, x)``.

    Backward: ``x`` influences the loss through every copy and ``∂yᵢ/∂x = I``, so by the
    multivariable chain rule its cotangent is the sum of theirs, ``dx = Σᵢ gᵢ``::

        forward:  x ──▶ (x, x, …, x)
        backward: Σᵢ gᵢ ◀── (g₁, …, g_k)

    Args:
      x: floating array, any shape.
      k: number of copies, a static Python int ``>= 1``.

    Returns:
      A tuple of ``k`` arrays, each ``x``.

    >>> import jax, jax.numpy as jnp
    >>> float(jax.grad(lambda v: (lambda a, b, c: a + 2 * b + 3 * c)(*branch(v, 3)))(1.0))
    6.0
    """
    x = as_float_array("branch", "x", x)
    k = static_int("branch", "k", k, minimum=1)
    return _branch(k, x)


def branch_reference(x: jax.Array, k: int) -> tuple[jax.Array, ...]:
    """``(x,) * k``; ``jax.grad`` sums the cotangents of the copies itself."""
    x = as_float_array("branch", "x", x)
    k = static_int("branch", "k", k, minimum=1)
    return (x,) * k


# --- repeat --------------------------------------------------------------------------------


def _check_repeat(x: object, D: object, axis: object) -> tuple[jax.Array, int, int]:
    x = as_float_array("repeat", "x", x)
    D = static_int("repeat", "D", D, minimum=1)
    # A new axis: x.ndim + 1 places to put it.
    axis = _normalize_axis("repeat", axis, x.ndim + 1,
                           f"for the new axis of an x with ndim {x.ndim}")
    return x, D, axis


def _tile_new_axis(x: jax.Array, D: int, axis: int) -> jax.Array:
    return jnp.repeat(jnp.expand_dims(x, axis), D, axis=axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _repeat(D: int, axis: int, x: jax.Array) -> jax.Array:
    return _tile_new_axis(x, D, axis)


def _repeat_fwd(D: int, axis: int, x: jax.Array):
    return _tile_new_axis(x, D, axis), None


def _repeat_bwd(D: int, axis: int, _, g: jax.Array):
    return (jnp.sum(g, axis=axis).astype(g.dtype),)


_repeat.defvjp(_repeat_fwd, _repeat_bwd)


def repeat(x: jax.Array, D: int, axis: int = 0) -> jax.Array:
    """Repeat node: ``x`` tiled ``D`` times along a new axis, with the hand-derived rule.

    Forward:  ``y = stack([x] * D, axis)``: shape ``x.shape`` with ``D`` inserted at ``axis``
    (e.g. ``(H,) → (D, H)`` for ``axis=0``). It is :func:`branch` with the copies stacked.

    Backward: as for branch, every copy's cotangent flows back to ``x``:
    ``dx = Σ_d g[…, d, …]``, the sum of ``g`` over the new axis::

        forward:  x ──▶ [x, x, …, x]  (D copies along axis)
        backward: Σ_axis g ◀── g

    Args:
      x: floating array, any shape.
      D: number of copies, a static Python int ``>= 1``.
      axis: where the new axis goes, ``-(x.ndim + 1) <= axis <= x.ndim`` (static).

    Returns:
      Array of ``x.ndim + 1`` dimensions, dtype of ``x``.

    >>> import jax, jax.numpy as jnp
    >>> jax.grad(lambda v: (repeat(v, 4) * jnp.arange(4.0)[:, None]).sum())(jnp.ones(2)).tolist()
    [6.0, 6.0]
    """
    x, D, axis = _check_repeat(x, D, axis)
    return _repeat(D, axis, x)


def repeat_reference(x: jax.Array, D: int, axis: int = 0) -> jax.Array:
    """``jnp.repeat(jnp.expand_dims(x, axis), D, axis)``; differentiated by ``jax.grad``."""
    x, D, axis = _check_repeat(x, D, axis)
    return _tile_new_axis(x, D, axis)


# --- sum -----------------------------------------------------------------------------------


def _check_sum(x: object, axis: object) -> tuple[jax.Array, tuple[int, ...]]:
    """``x`` and the summed axes as a sorted tuple of non-negative ints (all for ``None``)."""
    x = as_float_array("sum", "x", x)
    if axis is None:
        return x, tuple(range(x.ndim))
    if isinstance(axis, tuple | list):
        axes = tuple(_normalize_axis("sum", a, x.ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"sum: axis must not repeat an axis; got {tuple(axis)}")
        return x, tuple(sorted(axes))
    return x, (_normalize_axis("sum", axis, x.ndim),)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _sum(x_shape: Shape, axes: tuple[int, ...], keepdims: bool, x: jax.Array) -> jax.Array:
    return jnp.sum(x, axis=axes, keepdims=keepdims)


def _sum_fwd(x_shape: Shape, axes: tuple[int, ...], keepdims: bool, x: jax.Array):
    return jnp.sum(x, axis=axes, keepdims=keepdims), None


def _sum_bwd(x_shape: Shape, axes: tuple[int, ...], keepdims: bool, _, g: jax.Array):
    if not keepdims:
        g = jnp.expand_dims(g, axes)
    return (jnp.broadcast_to(g, x_shape).astype(g.dtype),)


_sum.defvjp(_sum_fwd, _sum_bwd)


def sum_(x: jax.Array, axis: Axis = None, keepdims: bool = False) -> jax.Array:
    """Sum node over ``axis``, with the hand-derived backward rule (exported as ``sum``).

    Forward:  ``y = Σ_axis x`` (every axis for ``axis=None``), as ``jnp.sum``.

    Backward: ``∂y/∂xᵢ = 1`` for every ``xᵢ`` that was summed into ``y``, so each gets the
    cotangent of its sum: ``g`` broadcast back over the summed axes (the mirror image of
    repeat, whose backward is a sum)::

        forward:  x ──▶ Σ_axis x
        backward: [g, g, …, g] (broadcast over axis) ◀── g

    Args:
      x: floating array, any shape.
      axis: ``None`` (all axes), an int, or a tuple of distinct ints in ``[-x.ndim, x.ndim)``;
        static.
      keepdims: keep the summed axes with size 1 (static).

    Returns:
      The sum, dtype of ``x``.

    >>> import jax, jax.numpy as jnp
    >>> f = lambda v: (sum_(v, axis=1) * jnp.array([1.0, 2.0])).sum()
    >>> jax.grad(f)(jnp.ones((2, 3))).tolist()
    [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    """
    x, axes = _check_sum(x, axis)
    return _sum(tuple(x.shape), axes, bool(keepdims), x)


def sum_reference(x: jax.Array, axis: Axis = None, keepdims: bool = False) -> jax.Array:
    """``jnp.sum(x, axis, keepdims=keepdims)``; differentiated by ``jax.grad``."""
    x, axes = _check_sum(x, axis)
    return jnp.sum(x, axis=axes, keepdims=bool(keepdims))
