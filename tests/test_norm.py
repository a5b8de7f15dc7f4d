"""dropout, batch_norm and batch_norm_inference: manual rule vs jax.grad of the reference
(dtypes, jit, eager, vmap, a numerical check), the dropout mask and modes, batch statistics,
the batch-of-one error, bad arguments.

``CASES`` is written for the table-driven harness: each case names the op, draws its
positional arguments, says which of them are differentiated, and carries the static keyword
arguments.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fnnet.ops import norm
from tests.helpers import assert_tree_allclose, normal, of_positions


@dataclass(frozen=True)
class Case:
    op: str
    make: Callable[[np.random.Generator, jnp.dtype], tuple]  # the op's positional arguments
    diff: tuple[int, ...]  # positions of the differentiated arguments
    label: str
    kwargs: dict = field(default_factory=dict)  # static keyword arguments

    def __repr__(self) -> str:
        return f"{self.op}-{self.label}"


def _dropout(shape, **kwargs) -> Case:
    def make(rng, dt):
        return normal(rng, shape, dt), jax.random.key(int(rng.integers(2**31)))

    label = "-".join([str(shape), *(f"{k}={v}" for k, v in kwargs.items())])
    return Case("dropout", make, (0,), label, kwargs)


def _feature_vectors(rng, x_shape, dt):
    return normal(rng, (x_shape[1],), dt), normal(rng, (x_shape[1],), dt)


def _batch_norm(x_shape) -> Case:
    def make(rng, dt):
        return (normal(rng, x_shape, dt, 2.0) + 1, *_feature_vectors(rng, x_shape, dt))

    return Case("batch_norm", make, (0, 1, 2), str(x_shape), dict(eps=1e-5))


def _batch_norm_inference(x_shape) -> Case:
    def make(rng, dt):
        d = x_shape[1]
        var = jnp.asarray(0.5 + rng.random(d), dt)  # away from 0: a smooth 1/√(var + eps)
        return (normal(rng, x_shape, dt), *_feature_vectors(rng, x_shape, dt),
                normal(rng, (d,), dt), var)

    return Case("batch_norm_inference", make, (0, 1, 2, 3, 4), str(x_shape), dict(eps=1e-5))


CASES = [
    _dropout((7,), rate=0.5),
    _dropout((4, 6), rate=0.3, scale_at="test"),
    _dropout((3, 4), rate=0.3, train=False, scale_at="test"),
    _dropout((3, 4), rate=0.0),
    _batch_norm((2, 3)),             # the smallest legal batch
    _batch_norm((5, 4)),
    _batch_norm((2, 3, 3, 4)),       # per channel over (N, H, W)
    _batch_norm((1, 2, 3, 3)),       # batch 1 is fine per channel: N·H·W = 9
    _batch_norm_inference((1, 3)),   # eval mode: batch 1 is fine
    _batch_norm_inference((2, 2, 3, 3)),
]
OPS = ("dropout", "batch_norm", "batch_norm_inference")
EAGER_CASES = [CASES[0], CASES[5]]
VMAP_CASES = [CASES[1], CASES[6], CASES[9]]


def _op(case: Case, manual: bool) -> Callable:
    fn = getattr(norm, case.op if manual else f"{case.op}_reference")
    return functools.partial(fn, **case.kwargs)


def _vjp(fn: Callable, case: Case) -> Callable:
    """``(args, cot) -> (value, cotangents of case.diff)``; every argument is an input (keys
    included), so the result can be jitted and vmapped as a whole."""

    def run(args, cot):
        value, pullback = jax.vjp(of_positions(fn, args, case.diff),
                                  *(args[i] for i in case.diff))
        return value, pullback(cot)

    return run


def _both(case: Case) -> Callable:
    """``(args, cot) -> (manual result, reference result)``: one program, one compile."""
    manual, reference = (_vjp(_op(case, m), case) for m in (True, False))
    return lambda args, cot: (manual(args, cot), reference(args, cot))


def _args_and_cotangent(case: Case, rng: np.random.Generator, dtype):
    args = case.make(rng, dtype)
    out = jax.eval_shape(_op(case, True), *args)
    return args, normal(rng, out.shape, out.dtype)  # random cotangent: a rule must scale by g


def _check_agreement(case: Case, dtype, transform: str) -> None:
    args, cot = _args_and_cotangent(case, np.random.default_rng(0), dtype)
    both = _both(case)
    ((value_m, grads_m), (value_r, grads_r)) = (jax.jit(both) if transform == "jit"
                                                else both)(args, cot)
    assert value_m.dtype == dtype
    assert_tree_allclose(value_m, value_r, dtype)
    assert_tree_allclose(grads_m, grads_r, dtype)
    assert [g.dtype for g in grads_m] == [args[i].dtype for i in case.diff]


@pytest.mark.parametrize("name", OPS)
def test_manual_and_reference_have_identical_signatures(name):
    manual, reference = getattr(norm, name), getattr(norm, f"{name}_reference")
    assert inspect.signature(manual) == inspect.signature(reference)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_manual_vjp_matches_autodiff_under_jit(case: Case, dtype):
    _check_agreement(case, dtype, "jit")


@pytest.mark.parametrize("case", EAGER_CASES, ids=repr)
def test_manual_vjp_matches_autodiff_eagerly(case: Case):
    _check_agreement(case, jnp.dtype("float32"), "eager")


@pytest.mark.parametrize("case", VMAP_CASES, ids=repr)
def test_manual_vjp_matches_autodiff_under_vmap(case: Case):
    dtype = jnp.dtype("float32")  # the dtype sweep is done under jit; vmap is dtype-blind
    # Every argument is mapped, keys included: each example has its own dropout mask.
    draws = [_args_and_cotangent(case, np.random.default_rng(seed), dtype) for seed in range(2)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *draws)
    batched, single = jax.jit(jax.vmap(_both(case))), jax.jit(_vjp(_op(case, True), case))
    manual, reference = batched(*stacked)
    assert_tree_allclose(manual, reference, dtype)
    one_by_one = [single(*draw) for draw in draws]
    assert_tree_allclose(manual, jax.tree.map(lambda *xs: jnp.stack(xs), *one_by_one), dtype)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_manual_vjp_matches_numerical_gradient(case: Case, x64):
    args = case.make(np.random.default_rng(1), jnp.float64)
    check_grads(jax.jit(of_positions(_op(case, True), args, case.diff)),
                tuple(args[i] for i in case.diff), order=1, modes=["rev"])


# --- dropout -------------------------------------------------------------------------------

DROPOUT_FNS = [norm.dropout, norm.dropout_reference]
DROPOUT_IDS = ["manual", "reference"]


def test_dropout_manual_and_reference_drop_the_same_entries():
    x = jnp.arange(1.0, 1001.0)
    key = jax.random.key(3)
    for scale_at, factor in [("train", 1 / 0.75), ("test", 1.0)]:
        ys = [fn(x, key, rate=0.25, scale_at=scale_at) for fn in DROPOUT_FNS]
        np.testing.assert_array_equal(ys[0], ys[1])
        kept = np.asarray(ys[0]) != 0
        np.testing.assert_allclose(ys[0][kept], x[kept] * factor, rtol=1e-6)
        assert 0.70 < kept.mean() < 0.80  # about keep = 0.75 of 1000 entries
        # the same key draws the same mask; another key another one
        np.testing.assert_array_equal(norm.dropout(x, key, rate=0.25, scale_at=scale_at), ys[0])
    other = norm.dropout(x, jax.random.key(4), rate=0.25)
    assert not np.array_equal(np.asarray(other) != 0, kept)


def test_dropout_gradient_in_closed_form_is_g_times_mask_over_keep():
    x = jnp.linspace(-1.0, 1.0, 50)
    g = jnp.linspace(2.0, 3.0, 50)
    key = jax.random.key(0)
    mask = jax.random.bernoulli(key, 0.6, x.shape)
    for scale_at, factor in [("train", 1 / 0.6), ("test", 1.0)]:
        y, pullback = jax.vjp(lambda x, s=scale_at: norm.dropout(x, key, rate=0.4, scale_at=s), x)
        np.testing.assert_allclose(y, jnp.where(mask, x * factor, 0), rtol=1e-6)
        np.testing.assert_allclose(pullback(g)[0], jnp.where(mask, g * factor, 0), rtol=1e-6)


@pytest.mark.parametrize("fn", DROPOUT_FNS, ids=DROPOUT_IDS)
def test_dropout_raw_uint32_and_typed_keys_draw_the_same_mask(fn):
    x = jnp.ones(64)
    typed = fn(x, jax.random.key(7), rate=0.5)
    raw = fn(x, jax.random.PRNGKey(7), rate=0.5)
    np.testing.assert_array_equal(typed, raw)


@pytest.mark.parametrize("fn", DROPOUT_FNS, ids=DROPOUT_IDS)
@pytest.mark.parametrize("scale_at", ["train", "test"])
def test_dropout_rate_zero_is_the_identity(fn, scale_at):
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    g = jnp.linspace(1.0, 2.0, 12).reshape(3, 4)
    for train in (True, False):
        y, pullback = jax.vjp(
            lambda x, t=train: fn(x, jax.random.key(0), rate=0.0, train=t, scale_at=scale_at), x)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(pullback(g)[0], g)
    np.testing.assert_array_equal(fn(x, None, rate=0.0), x)  # no mask drawn: no key needed


@pytest.mark.parametrize("fn", DROPOUT_FNS, ids=DROPOUT_IDS)
def test_dropout_eval_mode_is_identity_or_the_books_scaling(fn):
    x = jnp.linspace(-1.0, 1.0, 12)
    np.testing.assert_array_equal(fn(x, None, rate=0.3, train=False), x)
    np.testing.assert_allclose(fn(x, None, rate=0.3, train=False, scale_at="test"), x * 0.7,
                               rtol=1e-6)
    dx = jax.grad(lambda x: fn(x, None, rate=0.3, train=False, scale_at="test").sum())(x)
    np.testing.assert_allclose(dx, jnp.full_like(x, 0.7), rtol=1e-6)


@pytest.mark.parametrize("fn", DROPOUT_FNS, ids=DROPOUT_IDS)
@pytest.mark.parametrize(("key", "kwargs", "error", "match"), [
    (jax.random.key(0), dict(rate=1.0),
     ValueError, r"dropout: rate \(the probability of dropping\) must lie in \[0, 1\); got 1.0"),
    (jax.random.key(0), dict(rate=-0.1), ValueError, r"must lie in \[0, 1\); got -0.1"),
    (jax.random.key(0), dict(rate=float("nan")), ValueError, r"got nan"),
    (jax.random.key(0), dict(rate="0.5"), TypeError, r"rate must be a concrete Python number"),
    (jax.random.key(0), dict(rate=0.5, train=1), TypeError, r"train must be a Python bool"),
    (jax.random.key(0), dict(rate=0.5, scale_at="eval"),
     ValueError, r"scale_at must be 'train' \(inverted dropout\) or 'test'.*got 'eval'"),
    (None, dict(rate=0.5), TypeError, r"dropout: key must be one JAX PRNG key.*got dtype None"),
    (jnp.zeros(2), dict(rate=0.5), TypeError, r"key must be one JAX PRNG key.*float32"),
    (jax.random.split(jax.random.key(0), 3), dict(rate=0.5),
     TypeError, r"key must be one JAX PRNG key.*shape \(3,\)"),
    (jax.random.key(0)[None], dict(rate=0.5, train=False), TypeError, r"shape \(1,\)"),
])
def test_dropout_bad_arguments_are_named(fn, key, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(jnp.ones(4), key, **kwargs)


def test_dropout_rate_cannot_be_traced():
    with pytest.raises(TypeError, match=r"dropout: rate must be a concrete Python number"):
        jax.jit(lambda x, r: norm.dropout(x, jax.random.key(0), rate=r))(jnp.ones(3), 0.5)


# --- batch norm ----------------------------------------------------------------------------

BN_FNS = [norm.batch_norm, norm.batch_norm_reference]
BN_IDS = ["manual", "reference"]


def test_batch_norm_output_has_batch_mean_beta_and_variance_gamma_squared(x64):
    rng = np.random.default_rng(5)
    x = normal(rng, (6, 2, 3, 3), jnp.float64, 3.0) + 2
    gamma, beta = jnp.array([2.0, 0.5]), jnp.array([-1.0, 4.0])
    y = norm.batch_norm(x, gamma, beta, eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), beta, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), gamma**2, rtol=1e-12)


def test_batch_norm_on_images_is_the_books_transpose_to_rows(x64):
    # The book normalises (N, C, H, W) by moving C last and flattening to (N·H·W, C).
    rng = np.random.default_rng(6)
    x, g = normal(rng, (2, 3, 2, 4), jnp.float64), normal(rng, (2, 3, 2, 4), jnp.float64)
    gamma, beta = normal(rng, (3,), jnp.float64), normal(rng, (3,), jnp.float64)

    def as_rows(a):
        return a.transpose(0, 2, 3, 1).reshape(-1, 3)

    @jax.jit
    def both(x, g, gamma, beta):
        y, pullback = jax.vjp(norm.batch_norm, x, gamma, beta)
        y_rows, pullback_rows = jax.vjp(norm.batch_norm, as_rows(x), gamma, beta)
        return y, y_rows, pullback(g), pullback_rows(as_rows(g))

    y, y_rows, (dx, dgamma, dbeta), (dx_rows, dgamma_rows, dbeta_rows) = both(x, g, gamma, beta)
    np.testing.assert_allclose(as_rows(y), y_rows, rtol=1e-12)
    np.testing.assert_allclose(as_rows(dx), dx_rows, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dgamma, dgamma_rows, rtol=1e-12)
    np.testing.assert_allclose(dbeta, dbeta_rows, rtol=1e-12)


def test_batch_norm_input_gradient_sums_to_zero_per_feature(x64):
    # y does not change when a constant is added to a feature's column, so Σₙ dx = 0.
    rng = np.random.default_rng(7)
    x, g = normal(rng, (5, 3), jnp.float64), normal(rng, (5, 3), jnp.float64)
    dx = jax.jit(lambda x, g: jax.vjp(norm.batch_norm, x, jnp.ones(3), jnp.zeros(3))[1](g)[0])
    np.testing.assert_allclose(dx(x, g).sum(axis=0), 0, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2)])
def test_statistics_and_inference_reproduce_training_mode(shape, x64):
    rng = np.random.default_rng(8)
    x = normal(rng, shape, jnp.float64, 2.0) + 1
    gamma, beta = normal(rng, (3,), jnp.float64), normal(rng, (3,), jnp.float64)
    mean, var = norm.batch_norm_statistics(x)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    np.testing.assert_allclose(mean, np.mean(x, axis=axes), rtol=1e-12)
    np.testing.assert_allclose(var, np.var(x, axis=axes), rtol=1e-12)  # biased (ddof = 0)
    for fn in (norm.batch_norm_inference, norm.batch_norm_inference_reference):
        np.testing.assert_allclose(fn(x, gamma, beta, mean, var, eps=1e-5),
                                   norm.batch_norm(x, gamma, beta, eps=1e-5), rtol=1e-12)


def test_half_precision_in_half_precision_out():
    x = jnp.linspace(-2.0, 2.0, 12).reshape(4, 3).astype(jnp.bfloat16)
    gamma, beta = jnp.ones(3, jnp.bfloat16), jnp.zeros(3, jnp.bfloat16)
    @jax.jit
    def value_and_vjp(*args):
        y, pullback = jax.vjp(norm.batch_norm, *args)
        return y, pullback(jnp.ones_like(y))

    y, grads = value_and_vjp(x, gamma, beta)
    assert y.dtype == jnp.bfloat16
    assert [d.dtype for d in grads] == [jnp.bfloat16] * 3
    assert [a.dtype for a in norm.batch_norm_statistics(x)] == [jnp.bfloat16] * 2


@pytest.mark.parametrize("fn", BN_FNS, ids=BN_IDS)
@pytest.mark.parametrize(("shape", "count"), [((1, 4), "N = 1"), ((1, 2, 1, 1), "N·H·W = 1")])
def test_batch_of_one_in_training_mode_is_an_error_not_a_nan(fn, shape, count):
    with pytest.raises(ValueError, match=rf"batch_norm: training mode normalises each feature "
                                         rf"over .* needs at least 2; got {count} "):
        fn(jnp.ones(shape), jnp.ones(shape[1]), jnp.zeros(shape[1]))


@pytest.mark.parametrize("fn", BN_FNS, ids=BN_IDS)
@pytest.mark.parametrize(("shapes", "kwargs", "error", "match"), [
    (((4, 3), (2,), (3,)), {},
     ValueError, r"batch_norm: gamma must have shape \(D,\) = \(3,\) for x of shape \(4, 3\); "
                 r"got \(2,\)"),
    (((4, 3), (3,), (1, 3)), {}, ValueError, r"beta must have shape \(D,\) = \(3,\)"),
    (((2, 3, 4, 4), (4,), (3,)), {},
     ValueError, r"gamma must have shape \(C,\) = \(3,\) for x of shape \(2, 3, 4, 4\)"),
    (((2, 3, 4), (3,), (3,)), {},
     ValueError, r"batch_norm: x must be 2-D \(N, D\) or 4-D \(N, C, H, W\); got shape "
                 r"\(2, 3, 4\)"),
    (((4, 3), (3,), (3,)), dict(eps=-1e-5), ValueError, r"eps must be a finite number >= 0"),
])
def test_batch_norm_bad_arguments_are_named(fn, shapes, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*(jnp.ones(s) for s in shapes), **kwargs)


@pytest.mark.parametrize("fn", [norm.batch_norm_inference, norm.batch_norm_inference_reference],
                         ids=BN_IDS)
def test_batch_norm_inference_checks_the_statistics_shapes(fn):
    x, v = jnp.ones((2, 3)), jnp.ones(3)
    with pytest.raises(ValueError, match=r"batch_norm_inference: var must have shape \(D,\) = "
                                         r"\(3,\) for x of shape \(2, 3\); got \(1,\)"):
        fn(x, v, v, v, jnp.ones(1))
    assert fn(jnp.ones((1, 3)), v, v, v, v).shape == (1, 3)  # batch 1 is fine in eval mode
