"""Every manual op against jax.grad of its reference: random shapes, dtypes, jit, vmap, and a
numerical check (jax.test_util.check_grads) in float64.

Each case draws the op's inputs; the comparison is of full VJPs under a random cotangent, so a
rule that forgot to multiply by ``g`` fails too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fnnet import autodiff, manual
from tests.helpers import assert_tree_allclose, away_from_zero, normal, of_positions


@dataclass(frozen=True)
class Case:
    op: str
    make: Callable[[np.random.Generator, jnp.dtype], tuple]  # the op's arguments
    diff: tuple[int, ...]  # positions of the floating (differentiable) arguments
    label: str

    def __repr__(self) -> str:
        return f"{self.op}-{self.label}"


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
            scores = jax.nn.softmax(scores, axis=-1)
        classes = rng.integers(0, c, size=n)
        if labels == "int":
            return scores, jnp.asarray(classes, jnp.int32)
        if labels == "onehot":
            return scores, jax.nn.one_hot(classes, c, dtype=dt)
        return scores, jax.nn.softmax(normal(rng, (n, c), dt), axis=-1)  # soft labels

    return Case(op, make, (0,) if labels == "int" else (0, 1), f"N{n}-C{c}-{labels}")


def _mse(shape: tuple[int, ...]) -> Case:
    return Case("mean_squared_error",
                lambda rng, dt: (normal(rng, shape, dt), normal(rng, shape, dt)), (0, 1),
                str(shape))


CASES = [
    *[_elementwise(op, s) for op in ("sigmoid", "relu", "tanh")
      for s in [(), (7,), (1, 5), (4, 3, 2)]],
    *[_linear(op, x, m) for op in ("affine", "matmul")
      for x, m in [((1, 3), 2), ((5, 4), 3), ((2, 3, 4), 5), ((6,), 4)]],
    *[Case("softmax", lambda rng, dt, s=s: (normal(rng, s, dt, 3.0),), (0,), str(s))
      for s in [(1, 2), (4, 10), (3, 1000), (2, 3, 5)]],
    *[_loss(op, n, c, lab) for op in ("softmax_cross_entropy", "cross_entropy_error")
      for n, c in [(1, 2), (5, 10), (3, 1000)] for lab in ("int", "onehot", "soft")],
    *[_mse(s) for s in [(1, 1), (5, 10), (3, 4, 2)]],
]


def _vjp_fn(fn, case: Case, args: tuple):
    """``args -> (value, cotangents of the differentiable args)`` under cotangent ``cot``."""

    def run(*args):
        value, pullback = jax.vjp(of_positions(fn, args, case.diff),
                                  *(args[i] for i in case.diff))
        cot = jnp.full_like(value, 1.7) + 0.3 * jnp.arange(value.size, dtype=value.dtype).reshape(
            value.shape)
        return value, pullback(cot)

    return run


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("transform", ["eager", "jit"])
def test_manual_vjp_matches_autodiff(case: Case, transform: str, dtype):
    args = case.make(np.random.default_rng(0), dtype)
    runs = [_vjp_fn(getattr(m, case.op), case, args) for m in (manual, autodiff)]
    if transform == "jit":
        runs = [jax.jit(run) for run in runs]
    (value_m, grads_m), (value_r, grads_r) = (run(*args) for run in runs)
    assert value_m.dtype == dtype
    assert_tree_allclose(value_m, value_r, dtype)
    assert_tree_allclose(grads_m, grads_r, dtype)
    assert all(g.dtype == args[i].dtype for g, i in zip(grads_m, case.diff, strict=True))


@pytest.mark.parametrize("case", CASES[::3], ids=repr)
def test_manual_vjp_matches_autodiff_under_vmap(case: Case, dtype):
    rngs = [np.random.default_rng(seed) for seed in range(3)]
    batches = [case.make(rng, dtype) for rng in rngs]
    stacked = tuple(jnp.stack(column) for column in zip(*batches, strict=True))
    results = [jax.vmap(_vjp_fn(getattr(m, case.op), case, batches[0]))(*stacked)
               for m in (manual, autodiff)]
    assert_tree_allclose(results[0], results[1], dtype)
    # vmap must agree with doing the examples one at a time.
    one_by_one = [_vjp_fn(manual.__dict__[case.op], case, b)(*b) for b in batches]
    assert_tree_allclose(results[0], jax.tree.map(lambda *xs: jnp.stack(xs), *one_by_one), dtype)


@pytest.mark.parametrize("case", [c for c in CASES if c.op != "softmax" or "1000" not in c.label],
                         ids=repr)
def test_manual_vjp_matches_numerical_gradient(case: Case, x64):
    args = case.make(np.random.default_rng(1), jnp.float64)
    eps = None
    if case.op == "cross_entropy_error":
        # log y is steep at small y: keep y ≥ 0.5/C and take a smaller step, so the central
        # difference's O(eps²/y²) error stays far below the tolerance.
        args = (0.5 * args[0] + 0.5 / args[0].shape[1], *args[1:])
        eps = 1e-7

    check_grads(of_positions(getattr(manual, case.op), args, case.diff),
                tuple(args[i] for i in case.diff), order=1, modes=["rev"], eps=eps)
