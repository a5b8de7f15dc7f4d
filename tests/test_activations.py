"""Activations: extreme inputs, the kink of relu, dtype preservation, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import autodiff, manual

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

BOTH = [manual, autodiff]


@pytest.mark.parametrize("ops", BOTH, ids=["manual", "autodiff"])
def test_sigmoid_is_finite_and_correct_at_extremes_in_float32(ops):
    x = jnp.array([-1000.0, -50.0, 0.0, 100.0, 1000.0], jnp.float32)
    y = ops.sigmoid(x)
    dx = jax.grad(lambda v: ops.sigmoid(v).sum())(x)
    np.testing.assert_array_equal(np.asarray(y), [0.0, np.float32(np.exp(-50.0)), 0.5, 1.0, 1.0])
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(np.asarray(dx), [0.0, np.exp(-50.0), 0.25, 0.0, 0.0], rtol=1e-6)
    assert float(jax.grad(ops.sigmoid)(jnp.float32(-1000.0))) == 0.0
    assert float(jax.grad(ops.sigmoid)(jnp.float32(1000.0))) == 0.0


@pytest.mark.parametrize("ops", BOTH, ids=["manual", "autodiff"])
def test_relu_gradient_at_zero_is_zero(ops):
    assert float(jax.grad(ops.relu)(0.0)) == 0.0
    assert float(jax.grad(ops.relu)(1e-30)) == 1.0
    assert float(jax.grad(ops.relu)(-1e-30)) == 0.0


def test_relu_backward_does_not_mutate_the_incoming_gradient():
    x = jnp.array([-1.0, 2.0, -3.0, 4.0])
    g = jnp.ones(4)
    _, pullback = jax.vjp(manual.relu, x)
    (dx,) = pullback(g)
    np.testing.assert_array_equal(np.asarray(dx), [0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(g), [1.0, 1.0, 1.0, 1.0])


def test_tanh_rule_is_one_minus_y_squared():
    x = jnp.linspace(-3.0, 3.0, 7)
    np.testing.assert_allclose(jax.vmap(jax.grad(manual.tanh))(x), 1 - jnp.tanh(x) ** 2,
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_in_half_precision_gradient_out(name, dtype):
    x = jnp.linspace(-2.0, 2.0, 8, dtype=dtype) + 0.1
    grad = jax.grad(lambda v: getattr(manual, name)(v).astype(jnp.float32).sum())(x)
    reference = jax.grad(lambda v: getattr(autodiff, name)(v).astype(jnp.float32).sum())(x)
    assert grad.dtype == dtype
    np.testing.assert_allclose(np.asarray(grad, np.float32), np.asarray(reference, np.float32),
                               rtol=2e-2, atol=1e-2)


@pytest.mark.parametrize("ops", BOTH, ids=["manual", "autodiff"])
@pytest.mark.parametrize("name", ["sigmoid", "relu", "tanh"])
def test_integer_input_is_a_type_error_naming_x(ops, name):
    with pytest.raises(TypeError, match=rf"{name}: x must have a floating-point dtype.*int32"):
        getattr(ops, name)(jnp.arange(3, dtype=jnp.int32))


def test_forward_mode_fails_but_second_derivatives_work():
    # custom_vjp has no forward mode: jax.jvp / jax.jacfwd of the op itself raise. Second
    # derivatives still work: jax.hessian is jacfwd∘jacrev, and the forward pass there runs
    # over the backward rule, which is made of ordinary differentiable jnp ops.
    f_manual = lambda x: manual.sigmoid(x).sum()  # noqa: E731
    x = jnp.array([-1.0, 0.0, 2.0])
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jacfwd(f_manual)(x)
    expected = jax.hessian(lambda v: jax.nn.sigmoid(v).sum())(x)
    np.testing.assert_allclose(jax.jacrev(jax.grad(f_manual))(x), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.hessian(f_manual)(x), expected, rtol=1e-6, atol=1e-7)
