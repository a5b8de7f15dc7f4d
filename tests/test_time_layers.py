"""time_affine and time_softmax_cross_entropy: rows folded over N·T, ignored labels (all of
them too), extreme logits, label ranges, bad input."""

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


def test_time_affine_is_affine_on_the_n_times_t_rows(x64):
    rng = np.random.default_rng(0)
    xs, W, b = (jnp.asarray(rng.standard_normal(s)) for s in [(2, 3, 4), (4, 5), (5,)])
    g = jnp.asarray(rng.standard_normal((2, 3, 5)))

    @jax.jit  # one program (eagerly, each primitive would compile on its own)
    def run(xs, W, b, g):
        ys, pullback = jax.vjp(manual.time_affine, xs, W, b)
        return ys, pullback(g)

    ys, (dxs, dW, db) = run(xs, W, b, g)
    xs, W, b, g = (np.asarray(a) for a in (xs, W, b, g))
    np.testing.assert_allclose(ys, np.einsum("ntd,dm->ntm", xs, W) + b, rtol=1e-12)
    np.testing.assert_allclose(dxs, g @ W.T, rtol=1e-12)
    np.testing.assert_allclose(dW, xs.reshape(6, 4).T @ g.reshape(6, 5), rtol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=(0, 1)), rtol=1e-12)


def _sce_data(seed=1, dtype=jnp.float64):
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(3 * rng.standard_normal((2, 4, 5)), dtype)
    ts = jnp.asarray(rng.integers(0, 5, (2, 4)), jnp.int32)
    return xs, ts.at[0, 1].set(-1).at[1, 3].set(-1)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_ignored_positions_are_left_out_of_the_mean_and_the_gradient(ops, x64):
    xs, ts = _sce_data()
    kept = np.asarray(ts).reshape(-1) != -1
    rows, labels = xs.reshape(8, 5)[kept], ts.reshape(-1)[kept]
    loss, dxs = jax.jit(jax.value_and_grad(
        lambda x: 3.0 * ops.time_softmax_cross_entropy(x, ts)))(xs)
    want_loss, want_rows = jax.jit(jax.value_and_grad(
        lambda r: 3.0 * manual.softmax_cross_entropy(r, labels)))(rows)  # mean over 6, not 8
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-12)
    np.testing.assert_allclose(dxs.reshape(8, 5)[kept], want_rows, rtol=1e-12)
    np.testing.assert_array_equal(dxs[0, 1], 0)
    np.testing.assert_array_equal(dxs[1, 3], 0)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_another_ignore_label_and_all_ignored(ops, x64):
    xs, ts = _sce_data()
    ts = np.asarray(ts)
    padded = jnp.asarray(np.where(ts == -1, 0, ts + 1))  # labels 1..5 of 6 classes, 0 pads
    xs6 = jnp.asarray(np.concatenate([np.zeros((2, 4, 1)), np.asarray(xs)], axis=2))
    shifted = jnp.asarray(np.where(ts == -1, -1, ts + 1))
    by_zero, by_minus_one = jax.jit(lambda x, a, b: (
        ops.time_softmax_cross_entropy(x, a, ignore_label=0),
        ops.time_softmax_cross_entropy(x, b)))(xs6, padded, shifted)
    np.testing.assert_allclose(float(by_zero), float(by_minus_one), rtol=1e-12)
    # Every position ignored: the loss is defined as 0, and its gradient is 0, not NaN. The
    # eager call runs the label check on the values (all ignored passes it); the gradient is
    # the same rule either way, so it is taken under jit (one program, not op-by-op dispatch).
    none = jnp.full((2, 4), -1)
    assert float(ops.time_softmax_cross_entropy(xs, none)) == 0.0
    loss, dxs = jax.jit(jax.value_and_grad(ops.time_softmax_cross_entropy))(xs, none)
    assert float(loss) == 0.0
    np.testing.assert_array_equal(dxs, np.zeros(xs.shape))


def test_extreme_logits_stay_finite_and_agree(dtype):
    xs = jnp.array([[[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [0.0, 0.0, 1e4]]], dtype)
    ts = jnp.array([[0, 0, -1]])
    loss, dxs = jax.jit(jax.value_and_grad(manual.time_softmax_cross_entropy))(xs, ts)
    ref_loss, ref_dxs = jax.jit(jax.value_and_grad(autodiff.time_softmax_cross_entropy))(xs, ts)
    assert np.isfinite(loss) and np.all(np.isfinite(dxs))
    np.testing.assert_allclose(float(loss), (0 + 2e4) / 2, rtol=1e-6)  # right, wrong by 2e4
    assert_tree_allclose((loss, dxs), (ref_loss, ref_dxs), dtype)


def test_half_precision_is_computed_in_float32():
    xs, ts = _sce_data(dtype=jnp.float32)
    xs16 = xs.astype(jnp.bfloat16)
    loss, dxs = jax.jit(jax.value_and_grad(manual.time_softmax_cross_entropy))(xs16, ts)
    assert loss.dtype == dxs.dtype == jnp.bfloat16
    assert_tree_allclose(dxs, jax.jit(jax.grad(autodiff.time_softmax_cross_entropy))(xs16, ts),
                         jnp.bfloat16)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_bad_input_names_the_argument(ops):
    xs = jnp.zeros((2, 3, 4))
    ts = jnp.zeros((2, 3), jnp.int32)
    op = ops.time_softmax_cross_entropy
    with pytest.raises(ValueError, match=r"ts must lie in \[0, V\) = \[0, 4\) or equal "
                                         r"ignore_label = -1; got other values in \[0, 4\]"):
        op(xs, ts.at[0, 0].set(4))
    with pytest.raises(ValueError, match=r"ts must hold one class index per position, shape "
                                         r"\(N, T\) = \(2, 3\); got \(2, 3, 4\)"):
        op(xs, jnp.zeros((2, 3, 4), jnp.int32))
    with pytest.raises(TypeError, match=r"ts must have an integer dtype.*float32"):
        op(xs, jnp.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"ignore_label must be a Python int"):
        op(xs, ts, ignore_label=-1.0)
    with pytest.raises(ValueError, match=r"xs must be 3-D \(batch N, time T, classes V\)"):
        op(xs[0], ts[0])
    loss, dxs = jax.jit(jax.value_and_grad(op))(xs, ts.at[0, 0].set(7))
    assert np.isnan(loss) and np.all(np.isnan(dxs[0, 0]))  # under jit: loud NaN
    with pytest.raises(ValueError, match=r"time_affine: xs.shape\[2\] must equal W.shape\[0\]"):
        ops.time_affine(xs, jnp.zeros((3, 2)), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"time_affine: xs must be 3-D"):
        ops.time_affine(xs[0], jnp.zeros((4, 2)), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"time_affine: b must have shape \(W.shape\[1\],\)"):
        ops.time_affine(xs, jnp.zeros((4, 2)), jnp.zeros(3))


# --- time_affine_softmax_cross_entropy --------------------------------------------------------


def _fused_args(rng, N=2, T=4, D=3, V=5, scale=1.0, dtype=jnp.float64):
    ts = rng.integers(0, V, size=(N, T))
    ts.flat[1] = -1
    return (jnp.asarray(rng.standard_normal((N, T, D)), dtype),
            jnp.asarray(scale * rng.standard_normal((D, V)), dtype),
            jnp.asarray(rng.standard_normal(V), dtype), jnp.asarray(ts, jnp.int32))


@pytest.mark.parametrize("block_bytes", [None, 3 * 5 * 8], ids=["one-block", "3-row-blocks"])
def test_fused_head_equals_affine_then_loss_in_blocks_of_rows(x64, monkeypatch, block_bytes):
    """8 rows in blocks of 3 (a padded last block) give the composition's value and grads,
    under a cotangent g ≠ 1; the ignored position gets no gradient."""
    from fnnet.ops import time_layers

    if block_bytes is not None:
        monkeypatch.setattr(time_layers, "BLOCK_BYTES", block_bytes)
        assert time_layers._block_rows(8, 5, 8) == 3 or jax.default_backend() != "cpu"
    args = _fused_args(np.random.default_rng(0))

    def composed(xs, W, b):
        return 2.5 * manual.time_softmax_cross_entropy(manual.time_affine(xs, W, b), args[3])

    def fused(xs, W, b):
        return 2.5 * manual.time_affine_softmax_cross_entropy(xs, W, b, args[3])

    value, grads = jax.jit(jax.value_and_grad(fused, argnums=(0, 1, 2)))(*args[:3])
    expected = jax.jit(jax.value_and_grad(composed, argnums=(0, 1, 2)))(*args[:3])
    assert_tree_allclose((value, grads), expected, jnp.float64)
    # the call that is not differentiated computes the loss alone, the same value
    np.testing.assert_allclose(jax.jit(fused)(*args[:3]), expected[0], rtol=1e-13)
    assert np.all(np.asarray(grads[0][0, 1]) == 0)  # the ignored position


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_fused_head_is_finite_for_huge_logits_and_all_ignored(ops):
    xs, W, b, ts = _fused_args(np.random.default_rng(1), scale=1e4, dtype=jnp.float32)
    step = jax.jit(jax.value_and_grad(ops.time_affine_softmax_cross_entropy, argnums=(0, 1, 2)))
    loss, grads = step(xs, W, b, ts)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
    loss, grads = step(xs, W, b, jnp.full_like(ts, -1))
    assert float(loss) == 0 and all(np.all(np.asarray(g) == 0) for g in grads)


def test_fused_head_bad_input_names_the_argument():
    xs, W, b = jnp.zeros((2, 3, 4)), jnp.zeros((4, 5)), jnp.zeros(5)
    ts = jnp.zeros((2, 3), jnp.int32)
    op = manual.time_affine_softmax_cross_entropy
    with pytest.raises(ValueError, match=r"time_affine_softmax_cross_entropy: ts must lie in "
                                         r"\[0, V\) = \[0, 5\)"):
        op(xs, W, b, ts.at[1, 2].set(5))
    with pytest.raises(ValueError, match=r"time_affine_softmax_cross_entropy: xs.shape\[2\] "
                                         r"must equal W.shape\[0\]"):
        op(xs, W[:3], b, ts)
    with pytest.raises(ValueError, match=r"needs V >= 2 columns"):
        op(xs, W[:, :1], b[:1], ts)
    loss = jax.jit(op)(xs, W, b, ts.at[0, 0].set(9))
    assert np.isnan(loss)  # under jit: loud NaN
