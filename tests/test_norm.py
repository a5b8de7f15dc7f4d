"""dropout, batch_norm and batch_norm_inference: the dropout mask and modes, batch statistics,
the batch-of-one error, bad arguments. (Their agreement with jax.grad of the references under
jit and vmap, in float32 and float64, and numerically, runs from the op table in
tests/test_ops_agreement.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.ops import norm
from tests.helpers import normal

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

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
