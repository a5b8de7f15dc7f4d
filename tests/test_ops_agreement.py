"""Every op of the table against jax.grad of its reference: random shapes, dtypes, jit, vmap,
and a numerical check (jax.test_util.check_grads) in float64.

The test table :data:`CASES` has rows for every op of :data:`fnnet.ops.table.OPS`; an op
without a row fails :func:`test_every_op_of_the_table_has_a_test_row`. Each row draws the
op's arguments; the comparison is of full VJPs under a random cotangent (never ones), so a rule
that forgot to multiply by ``g`` fails too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fnnet import autodiff, manual
from fnnet.ops.table import OPS
from tests.helpers import assert_tree_allclose, away_from_zero, distinct, normal, of_positions


@dataclass(frozen=True)
class Case:
    """One row: ``op(*make(rng, dtype), **static)``, differentiated in the ``diff`` positions."""

    op: str
    make: Callable[[np.random.Generator, jnp.dtype], tuple]
    diff: tuple[int, ...]
    label: str
    static: dict[str, Any] = field(default_factory=dict)
    numerical: bool = True  # False: skip the central-difference check (see the row)
    eager: bool = True  # False: compared under jit only (op-by-op dispatch would be slow)

    def __repr__(self) -> str:
        return f"{self.op}-{self.label}"

    def fn(self, ops) -> Callable:
        return functools.partial(getattr(ops, self.op), **self.static)


def _elementwise(op: str, shape: tuple[int, ...]) -> Case:
    return Case(op, lambda rng, dt: (away_from_zero(rng, shape, dt),), (0,), str(shape))


def _linear(op: str, x_shape: tuple[int, ...], m: int) -> Case:
    def make(rng, dt):
        W = normal(rng, (x_shape[-1], m), dt)
        args = (normal(rng, x_shape, dt), W)
        return (*args, normal(rng, (m,), dt)) if op == "affine" else args

    return Case(op, make, (0, 1, 2) if op == "affine" else (0, 1), f"x{x_shape}-M{m}")


def _loss(op: str, n: int, c: int, labels: str) -> Case:
    def make(rng, dt):
        scores = normal(rng, (n, c), dt, scale=3.0)
        if op == "cross_entropy_error":
            # Probabilities >= 0.5/C: log y stays gentle, so the central difference's
            # O(eps²/y²) error stays far below the tolerance.
            scores = 0.5 * jax.nn.softmax(scores, axis=-1) + 0.5 / c
        classes = rng.integers(0, c, size=n)
        if labels == "int":
            return scores, jnp.asarray(classes, jnp.int32)
        if labels == "onehot":
            return scores, jax.nn.one_hot(classes, c, dtype=dt)
        return scores, jax.nn.softmax(normal(rng, (n, c), dt), axis=-1)  # soft labels

    return Case(op, make, (0,) if labels == "int" else (0, 1), f"N{n}-C{c}-{labels}")


def _arrays(op: str, *shapes: tuple[int, ...], eager: bool = True, **static) -> Case:
    """A row whose arguments are all random arrays of ``shapes``, all differentiated."""
    label = "+".join(map(str, shapes)) + "".join(f"-{k}{v}" for k, v in static.items())
    return Case(op, lambda rng, dt: tuple(normal(rng, s, dt) for s in shapes),
                tuple(range(len(shapes))), label, static, eager=eager)


def _conv(x_shape, w_shape, stride: int, pad: int, eager: bool = False) -> Case:
    def make(rng, dt):
        return (normal(rng, x_shape, dt), normal(rng, w_shape, dt, 0.5),
                normal(rng, (w_shape[0],), dt))

    return Case("conv2d", make, (0, 1, 2), f"x{x_shape}-W{w_shape}-s{stride}-p{pad}",
                dict(stride=stride, pad=pad), eager=eager)


def _pool(x_shape, pool_h: int, pool_w: int, stride: int, pad: int, eager=False) -> Case:
    # distinct values: no ties (see tests/test_conv.py for the tie rule)
    return Case("max_pool2d", lambda rng, dt: (distinct(rng, x_shape, dt),), (0,),
                f"x{x_shape}-{pool_h}x{pool_w}-s{stride}-p{pad}",
                dict(pool_h=pool_h, pool_w=pool_w, stride=stride, pad=pad), eager=eager)


def _dropout(shape, eager=False, **static) -> Case:
    def make(rng, dt):
        return normal(rng, shape, dt), jax.random.key(int(rng.integers(2**31)))

    label = "-".join([str(shape), *(f"{k}={v}" for k, v in static.items())])
    return Case("dropout", make, (0,), label, static, eager=eager)


def _batch_norm(x_shape, eager=False) -> Case:
    def make(rng, dt):
        return (normal(rng, x_shape, dt, 2.0) + 1, normal(rng, (x_shape[1],), dt),
                normal(rng, (x_shape[1],), dt))

    return Case("batch_norm", make, (0, 1, 2), str(x_shape), dict(eps=1e-5), eager=eager)


def _batch_norm_inference(x_shape) -> Case:
    def make(rng, dt):
        d = x_shape[1]
        var = jnp.asarray(0.5 + rng.random(d), dt)  # away from 0: a smooth 1/√(var + eps)
        return (normal(rng, x_shape, dt), normal(rng, (d,), dt), normal(rng, (d,), dt),
                normal(rng, (d,), dt), var)

    return Case("batch_norm_inference", make, (0, 1, 2, 3, 4), str(x_shape), dict(eps=1e-5),
                eager=False)


def _indices(rng: np.random.Generator, shape, V: int) -> jax.Array:
    """Indices in [0, V) with at least one repeat when there are two or more (the rule must
    accumulate them)."""
    idx = rng.integers(0, V, size=shape)
    if idx.size > 1:
        idx.flat[-1] = idx.flat[0]
    return jnp.asarray(idx, jnp.int32)


def _embedding(idx_shape, V: int, D: int, eager: bool = False) -> Case:
    return Case("embedding", lambda rng, dt: (normal(rng, (V, D), dt), _indices(rng, idx_shape, V)),
                (0,), f"idx{idx_shape}-V{V}-D{D}", eager=eager)


def _embedding_dot(N: int, V: int, H: int) -> Case:
    def make(rng, dt):
        return normal(rng, (N, H), dt), normal(rng, (V, H), dt), _indices(rng, (N,), V)

    return Case("embedding_dot", make, (0, 1), f"N{N}-V{V}-H{H}", eager=False)


def _sigmoid_ce(shape, eager: bool = False) -> Case:
    def make(rng, dt):
        return normal(rng, shape, dt, 3.0), jnp.asarray(rng.integers(0, 2, shape), jnp.int32)

    return Case("sigmoid_cross_entropy", make, (0,), str(shape), eager=eager)


RECURRENT_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}


def _recurrent(op: str, N: int, D: int, H: int, T: int | None = None,
               eager: bool = False) -> Case:
    """A cell (``T=None``: ``x (N, D)``) or time layer (``xs (N, T, D)``) row; weights scaled
    by 1/√H so the gates stay away from saturation."""
    cell = op.removeprefix("time_")
    k = RECURRENT_BLOCKS[cell]

    def make(rng, dt):
        x = normal(rng, (N, D) if T is None else (N, T, D), dt)
        state = [normal(rng, (N, H), dt) for _ in range(2 if cell == "lstm" else 1)]
        weights = (normal(rng, (D, k * H), dt, 1 / np.sqrt(D)),
                   normal(rng, (H, k * H), dt, 1 / np.sqrt(H)), normal(rng, (k * H,), dt, 0.5))
        return (x, *state, *weights)

    n_args = 6 if cell == "lstm" else 5
    label = f"N{N}-D{D}-H{H}" + ("" if T is None else f"-T{T}")
    return Case(op, make, tuple(range(n_args)), label, eager=eager)


def _time_sce(N: int, T: int, V: int, ignored: int) -> Case:
    def make(rng, dt):
        ts = rng.integers(0, V, size=(N, T))
        ts.flat[:ignored] = -1
        return normal(rng, (N, T, V), dt, 3.0), jnp.asarray(ts, jnp.int32)

    return Case("time_softmax_cross_entropy", make, (0,), f"N{N}-T{T}-V{V}-ignored{ignored}",
                eager=False)


def _time_affine_sce(N: int, T: int, D: int, V: int, ignored: int) -> Case:
    def make(rng, dt):
        ts = rng.integers(0, V, size=(N, T))
        ts.flat[:ignored] = -1
        return (normal(rng, (N, T, D), dt), normal(rng, (D, V), dt, 1.5), normal(rng, (V,), dt),
                jnp.asarray(ts, jnp.int32))

    return Case("time_affine_softmax_cross_entropy", make, (0, 1, 2),
                f"N{N}-T{T}-D{D}-V{V}-ignored{ignored}", eager=False)


def _time_attention(N: int, T_enc: int, T_dec: int, H: int) -> Case:
    return Case("time_attention",
                lambda rng, dt: (normal(rng, (N, T_enc, H), dt), normal(rng, (N, T_dec, H), dt)),
                (0, 1), f"N{N}-Tenc{T_enc}-Tdec{T_dec}-H{H}", eager=False)


CASES = [
    *[_elementwise(op, s) for op in ("sigmoid", "relu", "tanh")
      for s in [(), (7,), (1, 5), (4, 3, 2)]],
    *[_linear(op, x, m) for op in ("affine", "matmul")
      for x, m in [((1, 3), 2), ((5, 4), 3), ((2, 3, 4), 5), ((6,), 4)]],
    *[Case("softmax", lambda rng, dt, s=s: (normal(rng, s, dt, 3.0),), (0,), str(s),
           numerical=s[-1] < 1000)  # 1000 classes: entries ~1e-4, the difference is noise
      for s in [(1, 2), (4, 10), (3, 1000), (2, 3, 5)]],
    # Every label kind and every size at least once (a diagonal, not the cross product).
    *[_loss(op, n, c, lab) for op in ("softmax_cross_entropy", "cross_entropy_error")
      for n, c, lab in [(1, 2, "int"), (5, 10, "onehot"), (3, 1000, "soft"), (5, 10, "int")]],
    *[_arrays("mean_squared_error", s, s) for s in [(1, 1), (5, 10), (3, 4, 2)]],
    *[_arrays(op, *shapes) for op in ("add", "mul") for shapes in [
        ((3, 1), (1, 4)), ((5, 4), (4,)), ((), (2, 3)), ((2, 1, 3), (4, 1))]],
    _arrays("branch", (4, 3), k=1),
    _arrays("branch", (4, 3), k=3),
    _arrays("repeat", (3,), D=4),
    _arrays("repeat", (2, 3), D=5, axis=1),
    _arrays("repeat", (2, 3), D=2, axis=-1),
    _arrays("sum", (4, 3)),
    _arrays("sum", (2, 3, 4), axis=(0, 2)),
    _arrays("sum", (2, 3, 4), axis=-1, keepdims=True),
    _arrays("sum", (2, 3, 4), axis=None, keepdims=True),
    _conv((1, 1, 5, 5), (2, 1, 3, 3), 1, 0, eager=True),  # batch 1
    _conv((2, 3, 7, 6), (4, 3, 3, 2), 2, 1),      # non-square kernel, stride 2, pad 1
    _conv((3, 2, 6, 7), (2, 2, 2, 3), 3, 2),      # pad 2, stride 3, (H + 2p − FH) % s ≠ 0
    _conv((2, 1, 4, 4), (3, 1, 4, 4), 1, 0),      # kernel = input: one output pixel
    _pool((1, 1, 4, 4), 2, 2, 2, 0, eager=True),  # the book's 2×2 stride 2, batch 1
    _pool((2, 3, 7, 6), 3, 2, 2, 1),              # non-square window, pad 1
    _pool((2, 2, 7, 7), 3, 3, 1, 2),              # overlapping windows, pad 2
    _pool((3, 1, 5, 6), 2, 3, 3, 0),              # leftover rows and columns
    _dropout((7,), rate=0.5, eager=True),
    _dropout((4, 6), rate=0.3, scale_at="test"),
    _dropout((3, 4), rate=0.3, train=False, scale_at="test"),
    _dropout((3, 4), rate=0.0),
    _batch_norm((2, 3), eager=True),              # the smallest legal batch
    _batch_norm((5, 4)),
    _batch_norm((2, 3, 3, 4)),                    # per channel over (N, H, W)
    _batch_norm((1, 2, 3, 3)),                    # batch 1 is fine per channel: N·H·W = 9
    _batch_norm_inference((1, 3)),                # eval mode: batch 1 is fine
    _batch_norm_inference((2, 2, 3, 3)),
    # The sequel: batch 1, H = 1, D ≠ H, T = 1 and T > 1, repeated indices, ignored labels.
    # Eager rows only for one op per module (op-by-op dispatch compiles every primitive).
    _embedding((), 4, 3, eager=True),              # one index: a (D,) row
    _embedding((2, 3), 4, 2),                      # 2-D indices, repeats accumulate
    _embedding_dot(1, 3, 2),
    _embedding_dot(5, 3, 4),                       # 5 rows over 3 words: repeats
    _sigmoid_ce((1,), eager=True),
    _sigmoid_ce((3, 4)),
    _recurrent("rnn", 1, 2, 1, eager=True),
    _recurrent("rnn", 3, 4, 5),
    *[_recurrent(op, N, D, H) for op in ("lstm", "gru") for N, D, H in [(1, 2, 1), (3, 4, 5)]],
    _recurrent("time_rnn", 1, 2, 1, T=1, eager=True),
    _recurrent("time_rnn", 3, 2, 4, T=5),
    *[_recurrent(op, N, D, H, T) for op in ("time_lstm", "time_gru")
      for N, D, H, T in [(1, 2, 1, 1), (3, 2, 4, 5)]],
    _arrays("time_affine", (1, 1, 2), (2, 3), (3,)),
    _arrays("time_affine", (2, 4, 3), (3, 5), (5,), eager=False),
    _time_sce(1, 1, 2, 0),
    _time_sce(2, 4, 5, 3),                         # 3 of 8 positions ignored
    _time_affine_sce(1, 1, 1, 2, 0),
    _time_affine_sce(2, 4, 3, 5, 3),               # repeated labels, 3 of 8 ignored
    _arrays("attention_weight", (1, 3, 1), (1, 1), eager=True),
    _arrays("attention_weight", (2, 4, 3), (2, 3), eager=False),
    _arrays("weight_sum", (1, 3, 1), (1, 3), eager=False),
    _arrays("weight_sum", (2, 4, 3), (2, 4), eager=False),
    _time_attention(1, 3, 2, 1),                   # T_enc ≠ T_dec, N = 1, H = 1
    _time_attention(2, 4, 5, 3),
]
# Compare rules at full float32 precision: GPUs run float32 matmuls and convolutions in TF32
# by default, and the comparison is about the rules, not TF32.
pytestmark = pytest.mark.usefixtures("highest_precision")
FIRST_OF_EACH_OP = list({case.op: case for case in reversed(CASES)}.values())
# Op-by-op dispatch (eager) compiles every primitive on its own: one row per op shows that the
# rule runs without jit; its other rows run under jit only.
EAGER_ROWS = [next(c for c in CASES if c.eager and c.op == op)
              for op in dict.fromkeys(c.op for c in CASES if c.eager)]
# Central differences check the rule (and so the reference) in float64; the rule equals the
# reference on every row, so one numerically checkable row per op suffices (two where the
# rows differ in kind: labels, strides and padding, carried state).
SECOND_NUMERICAL_ROW = {"softmax_cross_entropy", "cross_entropy_error", "conv2d", "max_pool2d",
                        "batch_norm", "time_lstm", "time_gru", "time_attention"}
NUMERICAL_ROWS = [rows[i] for rows in ([c for c in CASES if c.op == op and c.numerical]
                                       for op in dict.fromkeys(c.op for c in CASES)) if rows
                  for i in sorted({0, len(rows) - 1 if rows[0].op in SECOND_NUMERICAL_ROW
                                   else 0})]


def test_every_op_of_the_table_has_a_test_row():
    assert {case.op for case in CASES} == set(OPS)


@pytest.mark.parametrize("name", sorted(OPS))
def test_manual_and_autodiff_export_the_table_with_identical_signatures(name):
    assert getattr(manual, name) is OPS[name].manual
    assert getattr(autodiff, name) is OPS[name].reference
    assert inspect.signature(OPS[name].manual) == inspect.signature(OPS[name].reference)
    assert manual.__all__ == autodiff.__all__ == ["OPS", *OPS]


def _random_like(tree, seed: int):
    """A random cotangent for every leaf of ``tree`` (never ones: a rule ignoring g fails)."""
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(seed)
    return treedef.unflatten([normal(rng, leaf.shape, leaf.dtype) for leaf in leaves])


def _vjp_fn(fn: Callable, case: Case, args: tuple, cot) -> Callable:
    """``args -> (value, cotangents of the differentiable args)`` under cotangent ``cot``."""

    def run(*args):
        value, pullback = jax.vjp(of_positions(fn, args, case.diff),
                                  *(args[i] for i in case.diff))
        return value, pullback(cot)

    return run


def _cotangent(case: Case, args: tuple, seed: int = 1):
    return _random_like(jax.eval_shape(case.fn(autodiff), *args), seed)


# jit in both dtypes; the eager rows in float32, where op-by-op rounding differs most from
# one compiled program (float64 is checked under jit and vmap and numerically).
@pytest.mark.parametrize(("case", "transform", "dtype"), [
    pytest.param(case, transform, dtype, id=f"{dtype}-{transform}-{case!r}") for case in CASES
    for transform in ("eager", "jit") if transform == "jit" or any(case is c for c in EAGER_ROWS)
    for dtype in (("float32", "float64") if transform == "jit" else ("float32",))],
    indirect=["dtype"])
def test_manual_vjp_matches_autodiff(case: Case, transform: str, dtype):
    args = case.make(np.random.default_rng(0), dtype)
    cot = _cotangent(case, args)
    manual_run, reference_run = (_vjp_fn(case.fn(ops), case, args, cot)
                                 for ops in (manual, autodiff))
    if transform == "jit":  # both in one program: one compile (the suite's cost) per case
        (value_m, grads_m), (value_r, grads_r) = jax.jit(
            lambda *a: (manual_run(*a), reference_run(*a)))(*args)
    else:  # the hand rule dispatched op by op; the reference is only the yardstick
        (value_m, grads_m), (value_r, grads_r) = manual_run(*args), jax.jit(reference_run)(*args)
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(value_m))
    assert_tree_allclose(value_m, value_r, dtype)
    assert_tree_allclose(grads_m, grads_r, dtype)
    assert all(g.dtype == args[i].dtype and g.shape == args[i].shape
               for g, i in zip(grads_m, case.diff, strict=True))


@pytest.mark.parametrize("case", FIRST_OF_EACH_OP, ids=repr)
def test_manual_vjp_matches_autodiff_under_vmap(case: Case, dtype):
    batches = [case.make(np.random.default_rng(seed), dtype) for seed in range(3)]
    cots = [_cotangent(case, batch, seed=10 + i) for i, batch in enumerate(batches)]
    stack = functools.partial(jax.tree.map, lambda *xs: jnp.stack(xs))

    def one(ops, args, cot):
        return _vjp_fn(case.fn(ops), case, batches[0], cot)(*args)

    results = jax.jit(lambda *a: [jax.vmap(functools.partial(one, ops))(*a)
                                  for ops in (manual, autodiff)])(stack(*batches), stack(*cots))
    assert_tree_allclose(results[0], results[1], dtype)
    # vmap must agree with doing the examples one at a time.
    single = jax.jit(functools.partial(one, manual))
    one_by_one = stack(*[single(b, c) for b, c in zip(batches, cots, strict=True)])
    assert_tree_allclose(results[0], one_by_one, dtype)


@pytest.mark.parametrize("case", NUMERICAL_ROWS, ids=repr)
def test_manual_vjp_matches_numerical_gradient(case: Case, x64):
    args = case.make(np.random.default_rng(1), jnp.float64)
    eps = 1e-7 if case.op == "cross_entropy_error" else None
    check_grads(jax.jit(of_positions(case.fn(manual), args, case.diff)),
                tuple(args[i] for i in case.diff), order=1, modes=["rev"], eps=eps)
