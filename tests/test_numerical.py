"""fnnet.numerical: chapter 4's numerical gradient is a real one (loss evaluations, not
autodiff), agrees with the hand rules, and trains the two-layer net through fit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet.data import load_digits
from fnnet.numerical import numerical_gradient, numerically_differentiated
from fnnet.optim import sgd
from fnnet.train import fit
from tests.helpers import max_abs_diff, tree_allclose

pytestmark = pytest.mark.usefixtures("highest_precision")


def _batch(dtype, n=6, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.uniform(size=(n, d)), dtype),
            jnp.asarray(rng.integers(0, classes, n), jnp.int32))


def test_the_numerical_gradient_of_the_two_layer_net_equals_the_manual_one(x64):
    x, t = _batch(jnp.float64)
    build = functools.partial(fnnet.two_layer_net, 5, 4, 3, activation="sigmoid",
                              weight_init="he", dtype=jnp.float64)
    manual = build(grads="manual")
    params = manual.init(jax.random.key(0))
    expected = jax.grad(manual.loss)(params, x, t)
    numerical = jax.jit(jax.grad(build(grads="numerical").loss))(params, x, t)
    assert tree_allclose(numerical, expected, rtol=1e-7, atol=1e-9), max_abs_diff(numerical,
                                                                                  expected)


def test_it_evaluates_the_loss_instead_of_differentiating_it():
    """Where autodiff is told a wrong derivative (stop_gradient, a custom_vjp dropping a
    factor 2), the numerical gradient still finds the true one: it never calls a VJP."""
    @jax.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))  # wrong: dx = g·x

    def loss(params):
        return jnp.sum(jax.lax.stop_gradient(params["a"]) ** 2) + jnp.sum(square(params["b"]))

    params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([0.5, 3.0])}
    autodiff = jax.grad(loss)(params)
    numerical = jax.grad(functools.partial(numerically_differentiated, loss))(params)
    np.testing.assert_allclose(autodiff["a"], [0.0, 0.0])
    np.testing.assert_allclose(autodiff["b"], [0.5, 3.0])
    np.testing.assert_allclose(numerical["a"], [2.0, -4.0], rtol=1e-4)
    np.testing.assert_allclose(numerical["b"], [1.0, 6.0], rtol=1e-4)
    assert jax.grad(lambda p: 3 * numerically_differentiated(loss, p))(params)["b"][1] == \
        pytest.approx(18.0, rel=1e-4)  # scaled by the incoming cotangent


def test_the_two_layer_net_trains_by_numerical_gradient_as_backprop_does(x64):
    """Chapter 4: the same init and batches give the same loss at every step (float64: the
    numerical gradient's error, ~1e-10, stays far below the tolerance)."""
    data = load_digits()
    data = data._replace(x_train=data.x_train[:200].astype(np.float64),
                         t_train=data.t_train[:200], x_test=data.x_test.astype(np.float64))
    runs = {}
    for grads in ("manual", "numerical"):
        net = fnnet.two_layer_net(64, 6, 10, grads=grads, weight_init="he", dtype=jnp.float64)
        _, runs[grads] = fit(net, net.init(jax.random.key(0)), data, optimizer=sgd(0.5),
                             key=jax.random.key(1), batch_size=50, steps=8, record_steps=True)
    manual, numerical = np.array(runs["manual"].step_loss), np.array(runs["numerical"].step_loss)
    assert manual[-1] < manual[0] - 0.1
    np.testing.assert_allclose(numerical, manual, rtol=1e-7)


def test_what_it_cannot_do_is_refused():
    with pytest.raises(ValueError, match="grads='numerical' cannot train batch norm"):
        fnnet.multi_layer_net(4, [3], 2, batchnorm=True, grads="numerical")
    with pytest.raises(TypeError, match="params must be floating"):
        numerical_gradient(jnp.sum, jnp.arange(3))
    with pytest.raises(ValueError, match="step must be > 0"):
        numerical_gradient(jnp.sum, jnp.ones(3), step=0.0)
