"""embedding, embedding_dot, sigmoid_cross_entropy: repeated indices accumulate, index and
label ranges, extreme logits, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import autodiff, manual
from tests.helpers import assert_tree_allclose

BOTH = [manual, autodiff]
IDS = ["manual", "autodiff"]


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_repeated_indices_accumulate_into_the_table_gradient(ops):
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.standard_normal((4, 2)), jnp.float32)
    idx = jnp.array([1, 3, 1, 1])
    g = jnp.asarray(rng.standard_normal((4, 2)), jnp.float32)
    dW = jax.jit(lambda w, i, g: jax.vjp(lambda w: ops.embedding(w, i), w)[1](g)[0])(W, idx, g)
    expected = np.zeros((4, 2), np.float32)
    np.add.at(expected, np.asarray(idx), np.asarray(g))
    np.testing.assert_allclose(dW, expected, rtol=1e-6)
    np.testing.assert_allclose(dW[1], g[0] + g[2] + g[3], rtol=1e-6)
    # The book's first attempt, dW[idx] = dout, keeps one of the three rows for word 1.
    book_trap = np.zeros((4, 2), np.float32)
    book_trap[np.asarray(idx)] = np.asarray(g)
    assert not np.allclose(dW[1], book_trap[1])


def test_any_index_shape_looks_rows_up():
    W = jnp.arange(12.0).reshape(4, 3)
    indices = [jnp.array(2), jnp.array([[0, 3], [3, 1]]), jnp.zeros((2, 1, 3), jnp.uint8)]
    # every index shape, both ops and the gradient: one program
    outs, dW = jax.jit(lambda W, indices: (
        [[ops.embedding(W, idx) for ops in BOTH] for idx in indices],
        jax.grad(lambda w: manual.embedding(w, indices[0]).sum())(W)))(W, indices)
    for idx, by_ops in zip(indices, outs, strict=True):
        for out in by_ops:
            assert out.shape == (*idx.shape, 3)
            np.testing.assert_array_equal(out, np.asarray(W)[np.asarray(idx)])
    np.testing.assert_array_equal(dW, np.eye(4)[2][:, None] * np.ones(3))


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_embedding_dot_rule_in_closed_form(ops):
    rng = np.random.default_rng(1)
    h = jnp.asarray(rng.standard_normal((3, 2)))
    W = jnp.asarray(rng.standard_normal((5, 2)))
    idx = jnp.array([4, 0, 4])
    g = jnp.asarray(rng.standard_normal(3))

    @jax.jit  # one program (eagerly, each primitive would compile on its own)
    def run(h, W, idx, g):
        out, pullback = jax.vjp(lambda h, w: ops.embedding_dot(h, w, idx), h, W)
        return out, pullback(g)

    out, (dh, dW) = run(h, W, idx, g)
    h, W, g = (np.asarray(a) for a in (h, W, g))
    np.testing.assert_allclose(out, np.sum(h * W[idx], axis=1), rtol=1e-6)
    np.testing.assert_allclose(dh, g[:, None] * W[idx], rtol=1e-6)
    np.testing.assert_allclose(dW[4], g[0] * h[0] + g[2] * h[2], rtol=1e-6)
    np.testing.assert_allclose(dW[1:4], 0)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_indices_out_of_range_raise_eagerly_and_give_nan_under_jit(ops):
    W = jnp.ones((3, 2))
    for bad in ([0, 3], [-1, 1]):  # no NumPy wrap-around for -1
        with pytest.raises(ValueError, match=r"embedding: idx must lie in \[0, V\) = \[0, 3\)"):
            ops.embedding(W, jnp.array(bad))
        with pytest.raises(ValueError, match=r"embedding_dot: idx must lie in \[0, V\)"):
            ops.embedding_dot(jnp.ones((2, 2)), W, jnp.array(bad))
    out = jax.jit(ops.embedding)(W, jnp.array([0, 3, -1]))
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1:]))
    dW = jax.jit(jax.grad(lambda w, i: ops.embedding(w, i).sum()))(W, jnp.array([0, 3, -1]))
    np.testing.assert_array_equal(dW, [[1, 1], [0, 0], [0, 0]])  # the bad rows go nowhere


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_bad_embedding_input_names_the_argument(ops):
    W = jnp.ones((4, 3))
    with pytest.raises(TypeError, match=r"embedding: idx must have an integer dtype.*float32"):
        ops.embedding(W, jnp.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"embedding: idx must have an integer dtype.*bool"):
        ops.embedding(W, jnp.array([True]))
    with pytest.raises(TypeError, match=r"embedding: W must have a floating-point dtype.*int32"):
        ops.embedding(jnp.ones((4, 3), jnp.int32), jnp.array([0]))
    with pytest.raises(ValueError, match=r"embedding: W must be 2-D .*got shape \(4,\)"):
        ops.embedding(jnp.ones(4), jnp.array([0]))
    with pytest.raises(ValueError, match=r"embedding_dot: h must be 2-D .*got shape \(3,\)"):
        ops.embedding_dot(jnp.ones(3), W, jnp.array([0]))
    with pytest.raises(ValueError, match=r"W.shape\[1\] must equal h.shape\[1\].*"
                                         r"h.shape=\(2, 5\), W.shape=\(4, 3\)"):
        ops.embedding_dot(jnp.ones((2, 5)), W, jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"idx must have shape \(N,\) = \(2,\).*got \(2, 1\)"):
        ops.embedding_dot(jnp.ones((2, 3)), W, jnp.array([[0], [1]]))


# --- sigmoid_cross_entropy -----------------------------------------------------------------


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_sigmoid_cross_entropy_at_logits_of_1e4_is_finite_and_exact(ops, dtype):
    x = jnp.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype)
    t = jnp.array([1, 0, 0, 1, 1])
    loss, dx = jax.jit(jax.value_and_grad(ops.sigmoid_cross_entropy))(x, t)
    assert loss.dtype == dtype and dx.dtype == dtype
    # right with certainty (0, 0), wrong by 1e4 (twice), and log 2 at x = 0; mean over 5.
    np.testing.assert_allclose(float(loss), (2e4 + np.log(2)) / 5, rtol=1e-6)
    np.testing.assert_allclose(dx, np.array([0, 0, 1, -1, -0.5]) / 5, rtol=1e-6, atol=1e-12)


def test_sigmoid_cross_entropy_gradient_is_g_times_sigmoid_minus_t_over_size():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 4)) * 3, jnp.float32)
    t = jnp.asarray(rng.integers(0, 2, (3, 4)))
    loss, dx, y = jax.jit(lambda x, t: (manual.sigmoid_cross_entropy(x, t), jax.grad(
        lambda v: 2.5 * manual.sigmoid_cross_entropy(v, t))(x), jax.nn.sigmoid(x)))(x, t)
    y, t = np.asarray(y), np.asarray(t)
    np.testing.assert_allclose(dx, 2.5 * (y - t) / 12, rtol=1e-6)
    expected = np.mean(-t * np.log(y) - (1 - t) * np.log(1 - y))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_half_precision_logits_keep_their_dtype():
    x = jnp.array([0.5, -2.0], jnp.bfloat16)
    (loss, dx), ref = jax.jit(lambda x, t: (
        jax.value_and_grad(manual.sigmoid_cross_entropy)(x, t),
        jax.grad(autodiff.sigmoid_cross_entropy)(x, t)))(x, jnp.array([1, 0]))
    assert loss.dtype == dx.dtype == jnp.bfloat16
    assert_tree_allclose(dx, ref, jnp.bfloat16)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_bad_sigmoid_cross_entropy_labels_name_t(ops):
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match=r"t must hold labels 0 or 1; got values in \[0, 2\]"):
        ops.sigmoid_cross_entropy(x, jnp.array([0, 2, 1]))
    with pytest.raises(TypeError, match=r"t must hold integer 0/1 labels.*float32"):
        ops.sigmoid_cross_entropy(x, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"t must have the shape of x, \(3,\); got \(3, 1\)"):
        ops.sigmoid_cross_entropy(x, jnp.zeros((3, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"x must not be empty"):
        ops.sigmoid_cross_entropy(jnp.zeros(0), jnp.zeros(0, jnp.int32))
    loss, dx = jax.jit(jax.value_and_grad(ops.sigmoid_cross_entropy))(x, jnp.array([0, 2, 1]))
    assert np.isnan(loss) and np.isnan(dx[1])  # under jit: loud NaN, not a wrong number
