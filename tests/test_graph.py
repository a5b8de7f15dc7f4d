"""Computational-graph nodes (add, mul, branch, repeat, sum): the rules in closed form, static
arguments, dtypes, and their errors. (Their agreement with jax.grad under jit and vmap, and
numerically, runs from the op table in tests/test_ops_agreement.py.)"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import autodiff, manual
from fnnet.ops import graph
from tests.helpers import normal
from tests.test_ops_agreement import FIRST_OF_EACH_OP, Case, _random_like

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

BOTH = [manual, autodiff]
IDS = ["manual", "autodiff"]
NODES = ("add", "mul", "branch", "repeat", "sum")


def _value_and_vjp(fn: Callable, args: tuple, cot) -> tuple:
    value, pullback = jax.vjp(fn, *args)
    return value, pullback(cot)


# --- the rules in closed form --------------------------------------------------------------


def _rng_arrays(*shapes, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return [normal(rng, s, dtype) for s in shapes]


def test_add_unbroadcasts_the_cotangent_to_each_input():
    x, y, g = _rng_arrays((3, 1), (1, 4), (3, 4))
    dx, dy = jax.vjp(manual.add, x, y)[1](g)
    np.testing.assert_allclose(dx, g.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(dy, g.sum(axis=0, keepdims=True), rtol=1e-6)
    x, y, g = _rng_arrays((5, 4), (4,), (5, 4), seed=1)
    dx, dy = jax.vjp(manual.add, x, y)[1](g)
    np.testing.assert_array_equal(dx, g)
    np.testing.assert_allclose(dy, g.sum(axis=0), rtol=1e-6)
    x, y, g = _rng_arrays((), (2, 3), (2, 3), seed=2)
    dx, dy = jax.vjp(manual.add, x, y)[1](g)
    assert dx.shape == ()
    np.testing.assert_allclose(dx, g.sum(), rtol=1e-6)
    np.testing.assert_array_equal(dy, g)


def test_mul_swaps_the_inputs_and_unbroadcasts():
    x, y, g = _rng_arrays((3, 1), (1, 4), (3, 4))
    dx, dy = jax.vjp(manual.mul, x, y)[1](g)
    np.testing.assert_allclose(dx, (g * y).sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(dy, (g * x).sum(axis=0, keepdims=True), rtol=1e-6)
    # The book's apple example: price = apple · count · tax.
    d_apple, d_count, d_tax = jax.grad(
        lambda a, n, t: manual.mul(manual.mul(a, n), t), argnums=(0, 1, 2))(100.0, 2.0, 1.1)
    np.testing.assert_allclose([d_apple, d_count, d_tax], [2.2, 110.0, 200.0], rtol=1e-6)


def test_branch_sums_the_cotangents_of_its_copies():
    x, g1, g2, g3 = _rng_arrays((2, 3), (2, 3), (2, 3), (2, 3))
    copies, pullback = jax.vjp(lambda v: manual.branch(v, 3), x)
    assert isinstance(copies, tuple) and len(copies) == 3
    assert all(np.array_equal(c, x) for c in copies)
    (dx,) = pullback((g1, g2, g3))
    np.testing.assert_allclose(dx, g1 + g2 + g3, rtol=1e-6)
    (single,) = manual.branch(x, 1)
    np.testing.assert_array_equal(single, x)


def test_repeat_tiles_along_a_new_axis_and_sums_back():
    x, g = _rng_arrays((2, 3), (2, 4, 3))
    y, pullback = jax.vjp(lambda v: manual.repeat(v, 4, axis=1), x)
    np.testing.assert_array_equal(y, np.repeat(np.asarray(x)[:, None, :], 4, axis=1))
    (dx,) = pullback(g)
    np.testing.assert_allclose(dx, g.sum(axis=1), rtol=1e-6)


def test_sum_broadcasts_the_cotangent_back():
    x, g = _rng_arrays((2, 3, 4), (3,))
    y, pullback = jax.vjp(lambda v: manual.sum(v, axis=(0, 2)), x)
    np.testing.assert_allclose(y, np.asarray(x).sum(axis=(0, 2)), rtol=1e-5)
    (dx,) = pullback(g)
    np.testing.assert_array_equal(dx, np.broadcast_to(np.asarray(g)[None, :, None], (2, 3, 4)))
    assert float(jax.grad(manual.sum)(jnp.float32(3.0))) == 1.0


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_matmul_built_from_repeat_mul_sum_has_matmuls_gradient(ops):
    """y = x·W as graph nodes: repeat x over M, multiply by W (broadcast), sum over D."""
    x, W, g = _rng_arrays((5, 4), (4, 3), (5, 3), dtype=jnp.float32)

    def graph_matmul(x, W):
        return ops.sum(ops.mul(ops.repeat(x, W.shape[1], axis=2), W), axis=1)

    y_graph, pull_graph = jax.vjp(graph_matmul, x, W)
    y_mat, pull_mat = jax.vjp(manual.matmul, x, W)
    np.testing.assert_allclose(y_graph, y_mat, rtol=1e-5, atol=1e-6)
    for a, b in zip(pull_graph(g), pull_mat(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the MatMul node is the linear module's, re-used (fnnet.manual runs it in a named scope)
    assert manual.matmul.__wrapped__ is graph.matmul


def test_static_arguments_under_jit():
    x = jnp.arange(6.0).reshape(2, 3)
    y = jax.jit(manual.repeat, static_argnums=(1, 2))(x, 3, -1)
    assert y.shape == (2, 3, 3)
    s = jax.jit(manual.sum, static_argnames=("axis", "keepdims"))(x, axis=(0, 1), keepdims=True)
    assert s.shape == (1, 1) and float(s[0, 0]) == 15.0
    copies = jax.jit(manual.branch, static_argnums=1)(x, 2)
    assert len(copies) == 2


# --- dtypes --------------------------------------------------------------------------------


HALF_CASES = [case for case in FIRST_OF_EACH_OP if case.op in NODES]


@pytest.mark.parametrize("case, half", [*((c, jnp.bfloat16) for c in HALF_CASES),
                                        (HALF_CASES[1], jnp.float16)], ids=repr)
def test_half_precision_in_half_precision_gradient_out(case: Case, half):
    args = case.make(np.random.default_rng(0), half)
    cot = _random_like(jax.eval_shape(case.fn(manual), *args), seed=4)
    grads = _value_and_vjp(case.fn(manual), args, cot)[1]
    reference = _value_and_vjp(case.fn(autodiff), args, cot)[1]
    assert all(g.dtype == half for g in grads)
    for a, b in zip(grads, reference, strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("op", ["add", "mul"])
def test_mixed_dtypes_promote_forward_and_cast_each_cotangent_back(op):
    x = jnp.ones((2, 3), jnp.bfloat16)
    y = jnp.full((3,), 2.0, jnp.float32)
    z, pullback = jax.vjp(getattr(manual, op), x, y)
    assert z.dtype == jnp.float32
    dx, dy = pullback(jnp.ones_like(z))
    assert (dx.dtype, dy.dtype) == (jnp.bfloat16, jnp.float32)
    np.testing.assert_allclose(np.asarray(dy), [2.0, 2.0, 2.0] if op == "add" else [2.0] * 3)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
@pytest.mark.parametrize("op", ["add", "mul"])
def test_non_broadcastable_shapes_name_both(ops, op):
    with pytest.raises(ValueError, match=rf"{op}: x and y must have broadcastable shapes.*"
                                         r"x.shape=\(3, 2\), y.shape=\(4,\)"):
        getattr(ops, op)(jnp.zeros((3, 2)), jnp.zeros((4,)))


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
@pytest.mark.parametrize("call, name", [
    (lambda o: o.add(jnp.zeros(3, jnp.int32), jnp.zeros(3)), "x"),
    (lambda o: o.mul(jnp.zeros(3), jnp.arange(3)), "y"),
    (lambda o: o.branch(jnp.arange(3), 2), "x"),
    (lambda o: o.repeat(jnp.arange(3), 2), "x"),
    (lambda o: o.sum(jnp.array([True, False])), "x"),
])
def test_integer_and_bool_inputs_raise_type_error(ops, call, name):
    with pytest.raises(TypeError, match=rf"{name} must have a floating-point dtype.*got (int|bo)"):
        call(ops)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_static_int_errors(ops):
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"branch: k must be >= 1; got 0"):
        ops.branch(x, 0)
    with pytest.raises(TypeError, match=r"branch: k must be a Python int.*got float 2.0"):
        ops.branch(x, 2.0)
    with pytest.raises(TypeError, match=r"branch: k must be a Python int.*got bool"):
        ops.branch(x, True)
    with pytest.raises(TypeError, match=r"branch: k must be a Python int.*got ArrayImpl"):
        ops.branch(x, jnp.int32(2))
    with pytest.raises(ValueError, match=r"repeat: D must be >= 1; got -1"):
        ops.repeat(x, -1)
    with pytest.raises(TypeError, match=r"repeat: axis must be a Python int"):
        ops.repeat(x, 2, axis=1.0)
    assert ops.branch(x, np.int64(2))[1].shape == (2, 3)  # NumPy ints are fine


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_axis_out_of_range(ops):
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"repeat: axis 3 is out of range for the new axis of "
                                         r"an x with ndim 2 \(expected -3 <= axis <= 2\)"):
        ops.repeat(x, 2, axis=3)
    with pytest.raises(ValueError, match=r"repeat: axis -4 is out of range"):
        ops.repeat(x, 2, axis=-4)
    with pytest.raises(ValueError, match=r"sum: axis 2 is out of range for x with ndim 2 "
                                         r"\(expected -2 <= axis <= 1\)"):
        ops.sum(x, axis=2)
    with pytest.raises(ValueError, match=r"sum: axis -3 is out of range"):
        ops.sum(x, axis=(0, -3))
    with pytest.raises(ValueError, match=r"sum: axis must not repeat an axis; got \(1, -1\)"):
        ops.sum(x, axis=(1, -1))
    with pytest.raises(ValueError, match=r"x is a scalar"):
        ops.sum(jnp.float32(1.0), axis=0)


def test_every_node_is_exported_by_both_namespaces():
    for name in NODES:
        assert name in manual.OPS and name in autodiff.__all__
        assert getattr(manual, name) is not getattr(autodiff, name)
    assert manual.sum.__wrapped__ is graph.sum_ and autodiff.sum is graph.sum_reference
