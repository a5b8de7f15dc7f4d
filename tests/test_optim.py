"""Hand-written SGD against optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnnet
from fnnet.data import load_digits
from fnnet.optim import get_optimizer, sgd, sgd_update
from fnnet.train import batch_indices, init_train_state, make_train_step


def test_sgd_update_is_theta_minus_lr_times_grad():
    params = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(3.0)}}
    grads = {"a": jnp.array([0.5, -1.0]), "b": {"c": jnp.array(2.0)}}
    new = sgd_update(params, grads, 0.1)
    np.testing.assert_allclose(new["a"], [0.95, 2.1])
    np.testing.assert_allclose(new["b"]["c"], 2.8)


def test_hand_sgd_equals_optax_sgd_after_100_steps():
    data = load_digits()
    net = fnnet.two_layer_net(64, 20, 10, activation="sigmoid")
    x, t = jnp.asarray(data.x_train), jnp.asarray(data.t_train)
    indices = batch_indices(jax.random.key(5), num_examples=len(x), batch_size=50,
                            num_steps=25, sampling="replacement")
    finals = []
    for optimizer in (sgd(0.5), optax.sgd(0.5)):
        state = init_train_state(net, net.init(jax.random.key(0)), optimizer)
        step = make_train_step(net, optimizer)
        for i in range(100):
            state, _ = step(state, x[indices[i % 25]], t[indices[i % 25]])
        finals.append(state.params)
    # Both compute θ + (−η·g) in float32 with the same operations, so no tolerance is needed:
    # the parameters agree bit for bit.
    for a, b in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_hand_sgd_composes_with_optax_chain():
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), sgd(0.1))
    params = {"w": jnp.array([3.0, 4.0])}
    updates, _ = optimizer.update({"w": jnp.array([30.0, 40.0])}, optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.06, -0.08], rtol=1e-6)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_learning_rate_must_be_positive_and_finite(lr):
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        sgd(lr)


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match=r"optimizer must be one of \('sgd', 'optax-sgd'\)"):
        get_optimizer("adam", 0.1)
