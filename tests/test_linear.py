"""affine and matmul: the rule in closed form, leading axes, bad shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import autodiff, manual

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

BOTH = [manual, autodiff]
IDS = ["manual", "autodiff"]


def test_affine_rule_in_closed_form():
    rng = np.random.default_rng(0)
    x, W, b = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in [(4, 3), (3, 2), (2,)])
    g = jnp.asarray(rng.standard_normal((4, 2)), jnp.float32)
    _, pullback = jax.vjp(manual.affine, x, W, b)
    dx, dW, db = pullback(g)
    np.testing.assert_allclose(dx, g @ W.T, rtol=1e-6)
    np.testing.assert_allclose(dW, x.T @ g, rtol=1e-6)
    np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-6)


def test_leading_axes_are_summed_into_the_weight_gradient():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 3, 4)), jnp.float32)
    W = jnp.asarray(rng.standard_normal((4, 5)), jnp.float32)
    dW = jax.grad(lambda w: manual.matmul(x, w).sum())(W)
    np.testing.assert_allclose(dW, x.reshape(6, 4).T @ jnp.ones((6, 5)), rtol=1e-5)


def test_mixed_precision_cotangents_match_each_primal_dtype():
    x = jnp.ones((2, 3), jnp.bfloat16)
    W = jnp.ones((3, 4), jnp.float32)
    b = jnp.zeros((4,), jnp.float32)
    dx, dW, db = jax.grad(lambda *a: manual.affine(*a).sum(), argnums=(0, 1, 2))(x, W, b)
    assert (dx.dtype, dW.dtype, db.dtype) == (jnp.bfloat16, jnp.float32, jnp.float32)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_affine_shape_errors_name_the_argument(ops):
    x, W, b = jnp.zeros((5, 3)), jnp.zeros((4, 2)), jnp.zeros((2,))
    with pytest.raises(ValueError, match=r"x.shape\[-1\] must equal W.shape\[0\].*"
                                         r"x.shape=\(5, 3\), W.shape=\(4, 2\)"):
        ops.affine(x, W, b)
    with pytest.raises(ValueError, match=r"b must have shape \(W.shape\[1\],\) = \(2,\); "
                                         r"got \(1, 2\)"):
        ops.affine(jnp.zeros((5, 4)), W, jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"W must be 2-D .* got shape \(4,\)"):
        ops.affine(jnp.zeros((5, 4)), jnp.zeros((4,)), b)
    with pytest.raises(TypeError, match=r"affine: W must have a floating-point dtype.*int32"):
        ops.affine(jnp.zeros((5, 4)), jnp.zeros((4, 2), jnp.int32), b)
    with pytest.raises(ValueError, match=r"matmul: x.shape\[-1\] must equal W.shape\[0\]"):
        ops.matmul(jnp.zeros(()), W)
