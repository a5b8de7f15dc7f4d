"""Computational-graph nodes (add, mul, branch, repeat, sum): the hand rules against jax.grad of
the references under random cotangents, in closed form, under jit and vmap, numerically in
float64, across dtypes, and their errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fnnet import autodiff, manual
from fnnet.ops import graph
from tests.helpers import assert_tree_allclose, normal

BOTH = [manual, autodiff]
IDS = ["manual", "autodiff"]
NODES = ("add", "mul", "branch", "repeat", "sum")


@dataclass(frozen=True)
class Case:
    op: str
    shapes: tuple[tuple[int, ...], ...]  # shapes of the array arguments (all differentiable)
    static: dict[str, Any] = field(default_factory=dict)  # static keyword arguments
    out: Any = None  # expected output shape (a tuple of shapes for branch)

    def __repr__(self) -> str:
        extra = "".join(f"-{k}{v}" for k, v in self.static.items())
        return f"{self.op}-{'+'.join(map(str, self.shapes))}{extra}"

    def fn(self, ops) -> Callable:
        return functools.partial(getattr(ops, self.op), **self.static)

    def args(self, rng: np.random.Generator, dtype) -> tuple[jax.Array, ...]:
        return tuple(normal(rng, shape, dtype) for shape in self.shapes)


CASES = [
    *[Case(op, shapes, out=out) for op in ("add", "mul") for shapes, out in [
        (((3, 1), (1, 4)), (3, 4)),
        (((5, 4), (4,)), (5, 4)),
        (((), (2, 3)), (2, 3)),
        (((2, 1, 3), (4, 1)), (2, 4, 3)),
    ][: 4 if op == "add" else 3]],
    Case("branch", ((4, 3),), {"k": 1}, ((4, 3),)),
    Case("branch", ((4, 3),), {"k": 3}, ((4, 3),) * 3),
    Case("repeat", ((3,),), {"D": 4}, (4, 3)),
    Case("repeat", ((2, 3),), {"D": 5, "axis": 1}, (2, 5, 3)),
    Case("repeat", ((2, 3),), {"D": 2, "axis": -1}, (2, 3, 2)),
    Case("sum", ((4, 3),), {}, ()),
    Case("sum", ((2, 3, 4),), {"axis": (0, 2)}, (3,)),
    Case("sum", ((2, 3, 4),), {"axis": -1, "keepdims": True}, (2, 3, 1)),
    Case("sum", ((2, 3, 4),), {"axis": None, "keepdims": True}, (1, 1, 1)),
]


def _random_like(tree, seed: int):
    """A random cotangent for every leaf of ``tree`` (never ones: a rule ignoring g fails)."""
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(seed)
    return treedef.unflatten([normal(rng, leaf.shape, leaf.dtype) for leaf in leaves])


def _value_and_vjp(fn: Callable, args: tuple, cot) -> tuple:
    value, pullback = jax.vjp(fn, *args)
    return value, pullback(cot)


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("transform", ["eager", "jit"])
def test_manual_vjp_matches_autodiff(case: Case, transform: str, dtype):
    args = case.args(np.random.default_rng(0), dtype)
    cot = _random_like(jax.eval_shape(case.fn(autodiff), *args), seed=1)
    run_m, run_r = (functools.partial(_value_and_vjp, case.fn(ops)) for ops in BOTH)
    if transform == "jit":
        run_m = jax.jit(run_m)  # the hand rule under jit, against the eager reference
    (value_m, grads_m), (value_r, grads_r) = run_m(args, cot), run_r(args, cot)
    assert jax.tree.map(jnp.shape, value_m) == case.out
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves((value_m, grads_m)))
    assert_tree_allclose(value_m, value_r, dtype)
    assert_tree_allclose(grads_m, grads_r, dtype)
    assert tuple(g.shape for g in grads_m) == case.shapes


@pytest.mark.parametrize("case", CASES[::2], ids=repr)
def test_manual_vjp_under_vmap_matches_one_by_one(case: Case, dtype):
    batches = [case.args(np.random.default_rng(seed), dtype) for seed in range(3)]
    out_shape = jax.eval_shape(case.fn(autodiff), *batches[0])
    cots = [_random_like(out_shape, seed=10 + i) for i in range(3)]
    stack = functools.partial(jax.tree.map, lambda *xs: jnp.stack(xs))
    batched = jax.vmap(functools.partial(_value_and_vjp, case.fn(manual)))(
        stack(*batches), stack(*cots))
    # The batched hand rule against each example alone (which matches autodiff, see above).
    one_by_one = stack(*[_value_and_vjp(case.fn(manual), b, c)
                         for b, c in zip(batches, cots, strict=True)])
    assert_tree_allclose(batched, one_by_one, dtype)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_manual_vjp_matches_numerical_gradient(case: Case, x64):
    args = case.args(np.random.default_rng(2), jnp.float64)
    fn = case.fn(manual)
    check_grads(fn, args, order=1, modes=["rev"])  # (check_vjp draws random cotangents)


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
    assert graph.matmul is manual.matmul  # the MatMul node is the linear module's, re-used


def test_static_arguments_under_jit():
    x = jnp.arange(6.0).reshape(2, 3)
    y = jax.jit(manual.repeat, static_argnums=(1, 2))(x, 3, -1)
    assert y.shape == (2, 3, 3)
    s = jax.jit(manual.sum, static_argnames=("axis", "keepdims"))(x, axis=(0, 1), keepdims=True)
    assert s.shape == (1, 1) and float(s[0, 0]) == 15.0
    copies = jax.jit(manual.branch, static_argnums=1)(x, 2)
    assert len(copies) == 2


# --- dtypes --------------------------------------------------------------------------------


HALF_CASES = [CASES[i] for i in (0, 5, 8, 10, 13)]  # one of each node


@pytest.mark.parametrize("case, half", [*((c, jnp.bfloat16) for c in HALF_CASES),
                                        (HALF_CASES[1], jnp.float16)], ids=repr)
def test_half_precision_in_half_precision_gradient_out(case: Case, half):
    args = case.args(np.random.default_rng(0), half)
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
    assert manual.sum is graph.sum_ and autodiff.sum is graph.sum_reference
