"""Layers and the book's networks: structure, init, manual vs autodiff over the whole loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet import layers, nets
from fnnet.init import fan_in, he, resolve, xavier
from fnnet.layers import (
    activation_layer,
    affine_layer,
    batch_norm_layer,
    conv_layer,
    dropout_layer,
    embedding_layer,
    flatten_layer,
    max_pool_layer,
    recurrent_layer,
    serial,
    time_affine_layer,
)
from tests.helpers import assert_tree_allclose

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")


def test_two_layer_net_params_are_a_plain_nested_dict():
    params = fnnet.two_layer_net(784, 50, 10).init(jax.random.key(0))
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {"affine1": {"W": (784, 50), "b": (50,)},
                      "affine2": {"W": (50, 10), "b": (10,)}}
    np.testing.assert_array_equal(params["affine1"]["b"], np.zeros(50))


# Each activation, batch/class size and transform at least once (not the cross product: every
# rule is already checked per op at many shapes in test_ops_agreement).
@pytest.mark.parametrize(("activation", "n", "c", "jit"), [
    ("relu", 1, 2, False), ("sigmoid", 7, 10, True), ("tanh", 3, 1000, True),
    ("relu", 7, 10, True), ("tanh", 1, 2, False)])
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
    if jit:  # both in one program
        (loss_m, grad_m), (loss_a, grad_a) = jax.jit(
            lambda *a: [g(*a) for g in grads])(params, x, t)
    else:
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
    grads = jax.jit(lambda p: [jax.grad(net.loss)(p, x, t) for net in nets])(params)
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
    W = resolve(name)(jax.random.key(0), (400, 300), jnp.float32)
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
    shape, params, state = net.init(jax.random.key(0), (4,))
    assert shape == (3,) and list(params) == ["affine1"] and state == {}
    y, new_state = net.apply(params, state, jnp.ones((2, 4)))
    assert y.shape == (2, 3) and new_state == {}
    with pytest.raises(ValueError, match="layer names must be unique"):
        serial(("a", affine_layer(3)), ("a", affine_layer(3)))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(grads="numeric"), r"grads must be one of \('manual', 'autodiff'\); got 'numeric'"),
    (dict(activation="gelu"), r"activation must be one of .*; got 'gelu'"),
    (dict(weight_init="lecun"), r"weight_init must be one of .*; got 'lecun'"),
    (dict(weight_init=-1.0), r"std must be a finite number > 0; got -1.0"),
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


# --- layers over shapes: what init announces is what apply returns -------------------------

FLAT_AND_IMAGES = [(5,), (2, 3), (1, 4, 4)]
IMAGES = [(1, 6, 6), (3, 5, 7)]
LAYER_ROWS = {  # constructor -> (a layer, the input shapes it is checked on)
    "affine_layer": (lambda: affine_layer(3), FLAT_AND_IMAGES),
    "activation_layer": (lambda: activation_layer("tanh"), FLAT_AND_IMAGES),
    "flatten_layer": (flatten_layer, FLAT_AND_IMAGES),
    "conv_layer": (lambda: conv_layer(4, (3, 2), stride=2, pad=1), IMAGES),
    "max_pool_layer": (lambda: max_pool_layer(2), IMAGES),
    "dropout_layer": (lambda: dropout_layer(0.5), FLAT_AND_IMAGES),
    "batch_norm_layer": (batch_norm_layer, [(5,), *IMAGES]),
    "serial": (lambda: serial(("flat", flatten_layer()), ("affine", affine_layer(4)),
                              ("relu", activation_layer("relu"))), FLAT_AND_IMAGES),
    # the sequel's: word ids (T,) and sequences (T, D); a stateless recurrent layer keeps {}
    "embedding_layer": (lambda: embedding_layer(9, 4), [(3,), (2, 5)], jnp.int32),
    "recurrent_layer": (lambda: recurrent_layer("lstm", 3), [(1, 2), (4, 5)]),
    "time_affine_layer": (lambda: time_affine_layer(6), [(1, 2), (4, 5)]),
}


def test_every_layer_constructor_has_a_shape_row():
    constructors = {name for name in dir(layers)
                    if (name.endswith("_layer") and not name.startswith("_")) or name == "serial"}
    assert constructors == set(LAYER_ROWS)


@pytest.mark.parametrize(("name", "input_shape"), [
    pytest.param(name, shape, id=f"{name}-{shape}") for name, (_, shapes, *_) in
    LAYER_ROWS.items() for shape in shapes])
@pytest.mark.parametrize("train", [False, True])
def test_init_announces_the_shape_apply_returns(name, input_shape, train):
    layer, _, *dtype = LAYER_ROWS[name]
    layer = layer()
    shape, params, state = layer.init(jax.random.key(0), input_shape)
    x = jax.ShapeDtypeStruct((7, *input_shape), dtype[0] if dtype else jnp.float32)
    y, new_state = jax.eval_shape(
        lambda x: layer.apply(params, state, x, key=jax.random.key(1), train=train), x)
    assert y.shape == (7, *shape)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_affine_layer_acts_on_the_last_axis():
    shape, params, _ = affine_layer(5).init(jax.random.key(0), (28, 28))
    assert shape == (28, 5) and params["W"].shape == (28, 5)


def test_builders_take_numpy_and_jax_integer_sizes():
    net = fnnet.two_layer_net(64, np.int64(50), jnp.int32(10))
    params = net.init(jax.random.key(0))
    assert params["affine1"]["W"].shape == (64, 50) and net.output_shape == (10,)


def test_a_stateless_net_keeps_the_one_line_gradient_and_has_empty_state():
    net = fnnet.two_layer_net(4, 3, 2)
    params, x, t = net.init(jax.random.key(0)), jnp.ones((5, 4)), jnp.array([0, 1, 0, 1, 1])
    grads = jax.grad(net.loss)(params, x, t)
    (loss, state), grads_aux = jax.value_and_grad(net.loss_and_state, has_aux=True)(
        params, net.init_state(), x, t)
    assert net.init_state() == {} and state == {}
    assert float(loss) == pytest.approx(float(net.loss(params, x, t)))
    assert_tree_allclose(grads, grads_aux, jnp.float32)


def test_build_net_uses_the_same_names_as_the_cli():
    assert list(nets.NETS) == ["two-layer", "mlp", "simple-conv", "deep-conv"]
    net = nets.build_net("mlp", (64,), 10, hidden=[8, 8], weight_init="he")
    assert list(net.init(jax.random.key(0))) == ["affine1", "affine2", "affine3"]
    with pytest.raises(ValueError, match="exactly one hidden layer"):
        nets.build_net("two-layer", (64,), 10, hidden=[8, 8])
    with pytest.raises(ValueError, match=r"net must be one of .*; got 'resnet'"):
        nets.build_net("resnet", (64,), 10)


def test_each_net_defaults_to_the_books_initial_weights():
    """The book's TwoLayerNet and SimpleConvNet: N(0, 0.01²); MultiLayerNet(Extend) and
    DeepConvNet: He (``weight_init_std='relu'``) — issue 18: an MLP at 0.01 never learned."""
    assert nets.BOOK_INIT == {"two-layer": "normal", "mlp": "he", "simple-conv": "normal",
                              "deep-conv": "he"}
    stds = {}
    for name in ("two-layer", "mlp"):
        params = nets.build_net(name, (400,), 10, hidden=[300]).init(jax.random.key(0))
        stds[name] = float(jnp.std(params["affine1"]["W"]))
    assert stds["two-layer"] == pytest.approx(0.01, rel=0.02)
    assert stds["mlp"] == pytest.approx((2 / 400) ** 0.5, rel=0.02)
    W = fnnet.multi_layer_net(400, [300], 10).init(jax.random.key(0))["affine1"]["W"]
    assert float(jnp.std(W)) == pytest.approx((2 / 400) ** 0.5, rel=0.02)


# --- initialisers as values ----------------------------------------------------------------


def test_fan_in_of_a_matrix_and_of_a_conv_kernel():
    assert fan_in((784, 50)) == 784
    assert fan_in((30, 3, 5, 5)) == 75  # C·FH·FW of (FN, C, FH, FW)


@pytest.mark.parametrize(("ours", "scale"), [(xavier, 1.0), (he, 2.0)])
@pytest.mark.parametrize("shape", [(40, 30), (8, 3, 5, 5)], ids=str)
def test_presets_equal_jax_variance_scaling_with_a_plain_normal(ours, scale, shape):
    axes = dict(in_axis=-2, out_axis=-1) if len(shape) == 2 else dict(in_axis=1, out_axis=0)
    theirs = jax.nn.initializers.variance_scaling(scale, "fan_in", "normal", **axes)
    key = jax.random.key(3)
    np.testing.assert_array_equal(ours(key, shape, jnp.float32),
                                  theirs(key, shape, jnp.float32))


def test_a_jax_initializer_is_accepted_as_a_value():
    net = fnnet.two_layer_net(4, 3, 2, weight_init=jax.nn.initializers.zeros)
    assert not np.any(net.init(jax.random.key(0))["affine1"]["W"])


# --- the chapter 6-8 nets --------------------------------------------------------------------


def test_simple_conv_net_is_the_books_chapter_7_net():
    net = nets.simple_conv_net((1, 28, 28), 10)
    params = net.init(jax.random.key(0))
    assert jax.tree.map(jnp.shape, params) == {
        "conv1": {"W": (30, 1, 5, 5), "b": (30,)}, "affine1": {"W": (30 * 12 * 12, 100),
                                                             "b": (100,)},
        "affine2": {"W": (100, 10), "b": (10,)}}
    assert float(jnp.std(params["conv1"]["W"])) == pytest.approx(0.01, rel=0.2)


def test_deep_conv_net_is_the_books_chapter_8_net():
    net = nets.deep_conv_net((1, 28, 28), 10)
    params = jax.eval_shape(net.init, jax.random.key(0))  # shapes only: nothing compiled
    shapes = jax.tree.map(jnp.shape, params)
    assert [shapes[f"conv{i}"]["W"] for i in range(1, 7)] == [
        (16, 1, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3),
        (64, 64, 3, 3)]
    assert shapes["affine1"]["W"] == (64 * 3 * 3, 50) and shapes["affine2"]["W"] == (50, 10)
    with pytest.raises(ValueError, match="training mode needs a key"):
        jax.eval_shape(net.loss, params, jnp.ones((2, 1, 28, 28)), jnp.array([0, 1]))


def test_batch_norm_net_keeps_running_statistics_and_uses_them_in_eval_mode():
    net = fnnet.multi_layer_net(4, [3], 2, batchnorm=True, dropout=0.0)
    params, state = net.init(jax.random.key(0)), net.init_state()
    assert jax.tree.map(jnp.shape, state) == {"batchnorm1": {"mean": (3,), "var": (3,)}}
    x = jax.random.normal(jax.random.key(1), (8, 4)) * 3 + 1
    (_, new_state) = net.loss_and_state(params, state, x, jnp.zeros(8, int))
    h = x @ params["affine1"]["W"] + params["affine1"]["b"]
    np.testing.assert_allclose(new_state["batchnorm1"]["mean"], 0.1 * h.mean(0), rtol=1e-5)
    np.testing.assert_allclose(new_state["batchnorm1"]["var"], 0.9 + 0.1 * h.var(0), rtol=1e-5)
    train_logits = net.apply(params, x, state=new_state, train=True)
    eval_logits = net.apply(params, x, state=new_state)
    assert not np.allclose(train_logits, eval_logits)  # batch vs running statistics
    with pytest.raises(ValueError, match="needs its running statistics"):
        net.apply(params, x)


def test_dropout_net_masks_in_training_and_is_deterministic_per_key():
    net = fnnet.multi_layer_net(4, [50], 2, dropout=0.5)
    params, x, t = net.init(jax.random.key(0)), jnp.ones((3, 4)), jnp.array([0, 1, 0])
    a, b, c = (net.loss(params, x, t, key=jax.random.key(k)) for k in (1, 1, 2))
    assert float(a) == float(b) and float(a) != float(c)
    assert float(net.loss(params, x, t, train=False)) == float(
        net.loss(params, x, t, train=False))
