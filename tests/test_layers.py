"""Layers and the book's networks: structure, init, manual vs autodiff over the whole loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet.init import get_initializer
from fnnet.layers import activation_layer, affine_layer, serial
from tests.helpers import assert_tree_allclose


def test_two_layer_net_params_are_a_plain_nested_dict():
    params = fnnet.two_layer_net(784, 50, 10).init(jax.random.key(0))
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {"affine1": {"W": (784, 50), "b": (50,)},
                      "affine2": {"W": (50, 10), "b": (10,)}}
    np.testing.assert_array_equal(params["affine1"]["b"], np.zeros(50))


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize(("n", "c"), [(1, 2), (7, 10), (3, 1000)])
@pytest.mark.parametrize("jit", [False, True])
def test_whole_loss_gradient_manual_equals_autodiff(activation, n, c, jit, dtype):
    manual_net = fnnet.two_layer_net(12, 9, c, activation=activation, weight_init="xavier",
                                     grads="manual", dtype=dtype)
    autodiff_net = fnnet.two_layer_net(12, 9, c, activation=activation, weight_init="xavier",
                                       grads="autodiff", dtype=dtype)
    params = manual_net.init(jax.random.key(1))
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((n, 12)), dtype)
    t = jnp.asarray(rng.integers(0, c, n), jnp.int32)
    grads = [jax.value_and_grad(net.loss) for net in (manual_net, autodiff_net)]
    if jit:
        grads = [jax.jit(g) for g in grads]
    (loss_m, grad_m), (loss_a, grad_a) = (g(params, x, t) for g in grads)
    assert loss_m.dtype == dtype
    assert_tree_allclose(loss_m, loss_a, dtype)
    assert_tree_allclose(grad_m, grad_a, dtype)


def test_deep_net_gradient_manual_equals_autodiff_in_float64(x64):
    kwargs = dict(activation="relu", weight_init="he", dtype=jnp.float64)
    nets = [fnnet.multi_layer_net(6, [5, 4, 3], 4, grads=g, **kwargs)
            for g in ("manual", "autodiff")]
    params = nets[0].init(jax.random.key(3))
    assert sorted(params) == ["affine1", "affine2", "affine3", "affine4"]
    x = jax.random.normal(jax.random.key(4), (8, 6), jnp.float64)
    t = jnp.arange(8) % 4
    grads = [jax.grad(net.loss)(params, x, t) for net in nets]
    assert_tree_allclose(grads[0], grads[1], jnp.float64)


def test_manual_and_autodiff_share_forward_values_and_params():
    nets = [fnnet.two_layer_net(5, 4, 3, grads=g) for g in ("manual", "autodiff")]
    params = nets[1].init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    np.testing.assert_array_equal(nets[0].apply(params, x), nets[1].apply(params, x))


def test_accuracy_accepts_indices_and_one_hot_labels():
    net = fnnet.two_layer_net(2, 3, 2)
    params = {"affine1": {"W": jnp.eye(2, 3), "b": jnp.zeros(3)},
              "affine2": {"W": jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), "b": jnp.zeros(2)}}
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    t = jnp.array([0, 1, 1, 1])
    assert float(net.accuracy(params, x, t)) == 0.75
    assert float(net.accuracy(params, x, jax.nn.one_hot(t, 2))) == 0.75


@pytest.mark.parametrize(("name", "std"), [
    ("normal", 0.01), (0.05, 0.05), ("xavier", (1 / 400) ** 0.5), ("he", (2 / 400) ** 0.5),
])
def test_initialisers_have_the_book_standard_deviations(name, std):
    W = get_initializer(name)(jax.random.key(0), (400, 300), jnp.float32)
    assert W.shape == (400, 300) and W.dtype == jnp.float32
    np.testing.assert_allclose(float(jnp.std(W)), std, rtol=0.02)
    np.testing.assert_allclose(float(jnp.mean(W)), 0.0, atol=std * 0.01)


def test_same_key_same_params_different_key_different_params():
    net = fnnet.two_layer_net(5, 4, 3)
    a, b, c = (net.init(jax.random.key(k)) for k in (0, 0, 1))
    assert_tree_allclose(a, b, jnp.float32)
    assert not np.allclose(a["affine1"]["W"], c["affine1"]["W"])


def test_serial_of_named_layers_keeps_only_layers_with_params():
    net = serial(("affine1", affine_layer(3)), ("relu1", activation_layer("relu")))
    size, params = net.init(jax.random.key(0), 4)
    assert size == 3 and list(params) == ["affine1"]
    assert net.apply(params, jnp.ones((2, 4))).shape == (2, 3)
    with pytest.raises(ValueError, match="layer names must be unique"):
        serial(("a", affine_layer(3)), ("a", affine_layer(3)))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(grads="numeric"), r"grads must be one of \('manual', 'autodiff'\); got 'numeric'"),
    (dict(activation="gelu"), r"activation must be one of .*; got 'gelu'"),
    (dict(weight_init="lecun"), r"weight_init must be one of .*; got 'lecun'"),
    (dict(weight_init=-1.0), r"std must be > 0; got -1.0"),
])
def test_builder_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fnnet.two_layer_net(4, 3, 2, **kwargs)


@pytest.mark.parametrize(("args", "message"), [
    ((0, 3, 2), r"input_size must be an integer >= 1; got 0"),
    ((4, 3.5, 2), r"hidden_sizes\[0\] must be an integer >= 1; got 3.5"),
    ((4, 3, 1), r"output_size must be an integer >= 2; got 1"),
])
def test_builder_sizes_are_checked(args, message):
    with pytest.raises(ValueError, match=message):
        fnnet.two_layer_net(*args)


def test_wrong_input_width_is_reported_by_the_first_affine_layer():
    net = fnnet.two_layer_net(4, 3, 2)
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"x.shape=\(2, 5\), W.shape=\(4, 3\)"):
        net.loss(params, jnp.ones((2, 5)), jnp.array([0, 1]))
