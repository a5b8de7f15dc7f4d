"""attention_weight, weight_sum, time_attention: the rules in closed form, time_attention as
the book's per-step loop, large scores, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import autodiff, manual
from tests.helpers import assert_tree_allclose

pytestmark = pytest.mark.usefixtures("highest_precision")

BOTH = [manual, autodiff]
IDS = ["manual", "autodiff"]


def _normal(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape))


def test_attention_weight_and_weight_sum_rules_in_closed_form(x64):
    rng = np.random.default_rng(0)
    hs, h = _normal(rng, 2, 4, 3), _normal(rng, 2, 3)
    da, dc = _normal(rng, 2, 4), _normal(rng, 2, 3)
    a, pullback = jax.vjp(manual.attention_weight, hs, h)
    np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(a, jax.nn.softmax(np.einsum("nth,nh->nt", hs, h)), rtol=1e-12)
    ds = a * (da - (da * a).sum(axis=1, keepdims=True))
    dhs, dh = pullback(da)
    np.testing.assert_allclose(dhs, ds[:, :, None] * h[:, None, :], rtol=1e-12)
    np.testing.assert_allclose(dh, np.einsum("nt,nth->nh", ds, hs), rtol=1e-12)
    c, pullback = jax.vjp(manual.weight_sum, hs, a)
    np.testing.assert_allclose(c, np.einsum("nt,nth->nh", a, hs), rtol=1e-12)
    dhs, da = pullback(dc)
    np.testing.assert_allclose(dhs, a[:, :, None] * dc[:, None, :], rtol=1e-12)
    np.testing.assert_allclose(da, np.einsum("nth,nh->nt", hs, dc), rtol=1e-12)


def test_time_attention_is_the_books_loop_of_attention_layers(x64):
    rng = np.random.default_rng(1)
    hs_enc, hs_dec = _normal(rng, 2, 5, 3), _normal(rng, 2, 4, 3)
    dC = _normal(rng, 2, 4, 3)

    def loop(hs_enc, hs_dec):  # one Attention (weight, then sum) per decoder step
        return jnp.stack([manual.weight_sum(hs_enc, manual.attention_weight(hs_enc, hs_dec[:, t]))
                          for t in range(hs_dec.shape[1])], axis=1)

    out, pullback = jax.vjp(manual.time_attention, hs_enc, hs_dec)
    want, want_pullback = jax.vjp(loop, hs_enc, hs_dec)
    assert out.shape == (2, 4, 3)
    assert_tree_allclose((out, pullback(dC)), (want, want_pullback(dC)), jnp.float64)


def test_large_scores_give_one_hot_weights_and_finite_gradients(dtype):
    hs = jnp.array([[[100.0, 0.0], [-100.0, 0.0], [0.0, 100.0]]], dtype)
    h = jnp.array([[100.0, 1.0]], dtype)  # scores 1e4, −1e4, 100

    @jax.jit
    def run(hs, h):
        def loss(ops):
            return lambda hs, h: jnp.sum(ops.attention_weight(hs, h) * jnp.arange(3.0))

        return [(ops.attention_weight(hs, h), jax.grad(loss(ops), (0, 1))(hs, h),
                 ops.time_attention(hs, h[:, None])) for ops in BOTH]

    (a, grads, out), (a_ref, grads_ref, out_ref) = run(hs, h)
    np.testing.assert_allclose(a, [[1, 0, 0]], atol=1e-30)
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert_tree_allclose((a, grads, out), (a_ref, grads_ref, out_ref), dtype)
    np.testing.assert_allclose(out[0, 0], hs[0, 0], rtol=1e-6)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_bad_input_names_the_argument(ops):
    hs = jnp.zeros((2, 4, 3))
    with pytest.raises(ValueError, match=r"attention_weight: h must have shape \(N, H\) = "
                                         r"\(2, 3\) for hs of shape \(2, 4, 3\); got \(2, 4\)"):
        ops.attention_weight(hs, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"attention_weight: hs must be 3-D \(batch N, time T, "
                                         r"hidden size H\); got shape \(4, 3\)"):
        ops.attention_weight(hs[0], jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"weight_sum: a must have shape \(N, T\) = \(2, 4\)"):
        ops.weight_sum(hs, jnp.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"weight_sum: a must have a floating-point dtype"):
        ops.weight_sum(hs, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"time_attention: hs_dec must have shape \(N, T_dec, "
                                         r"H\) with N = 2 and H = 3"):
        ops.time_attention(hs, jnp.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match=r"time_attention: hs_enc needs at least one time step"):
        ops.time_attention(hs[:, :0], jnp.zeros((2, 5, 3)))
