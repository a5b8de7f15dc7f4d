"""fnnet.init.draws_as_one: an init's normal draws as one batched draw, with the same values,
eagerly and under jit, shared between models of the same shapes; fnnet.train.init_from_seed
with its keys split on the host."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet.compiles import count_compilations
from fnnet.init import draws_as_one, he, normal, standard_normal
from fnnet.nets import SAMPLED_NETS, build_net
from fnnet.train import init_from_seed

SHAPES = [((3, 4), jnp.float32), ((5,), jnp.float32), ((2, 1, 3, 3), jnp.bfloat16),
          ((7, 2), jnp.float32)]


def _init(key):
    """Draws of several shapes and dtypes through fnnet's initialisers, one user draw."""
    keys = jax.random.split(key, len(SHAPES) + 1)
    drawn = [he(k, shape, dtype) if len(shape) > 1 else normal(0.5)(k, shape, dtype)
             for k, (shape, dtype) in zip(keys, SHAPES, strict=False)]
    return [*drawn, jax.random.uniform(keys[-1], (2,))]  # not batched, left as it is


@pytest.mark.parametrize("jit", [False, True])
def test_the_batched_draws_are_the_draws_one_by_one(jit):
    run = jax.jit(draws_as_one(_init)) if jit else draws_as_one(_init)
    batched, direct = run(jax.random.key(3)), _init(jax.random.key(3))
    for a, b in zip(batched, direct, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_without_partitionable_threefry_the_draws_are_made_one_by_one():
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        batched, direct = draws_as_one(_init)(jax.random.key(4)), _init(jax.random.key(4))
    finally:
        jax.config.update("jax_threefry_partitionable", previous)
    for a, b in zip(batched, direct, strict=True):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_an_init_that_draws_differently_the_second_time_is_refused():
    calls = []

    def impure(key):
        calls.append(1)
        return standard_normal(key, (2,) if len(calls) == 1 else (3,))

    with pytest.raises(RuntimeError, match="must be pure"):
        draws_as_one(impure)(jax.random.key(0))


def test_models_of_the_same_shapes_share_the_compiled_draw():
    fnnet.two_layer_net(6, 5, 3).init(jax.random.key(0))
    with count_compilations() as compiles:
        params = fnnet.two_layer_net(6, 5, 3, activation="tanh").init(jax.random.key(1))
    assert compiles.programs == 0
    assert params["affine1"]["W"].shape == (6, 5)


def test_a_raw_key_and_an_init_the_host_cannot_follow_give_the_same_draws():
    def folded(key):  # fold_in: the host does not derive it, so JAX does, op by op
        return _init(jax.random.fold_in(key, 2))

    raw = jax.random.PRNGKey(5)
    for init in (_init, folded):
        for a, b in zip(draws_as_one(init)(raw), init(raw), strict=True):
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def _sampled(name):
    net = SAMPLED_NETS[name]
    return lambda: net.build(dtype=jnp.float32, **net.options)


SEEDED = {"deep-conv": lambda: build_net("deep-conv", (1, 8, 8), 10),
          "mlp": lambda: build_net("mlp", (6,), 3, hidden=[5, 4]),
          "better-rnnlm": _sampled("better-rnnlm"), "attention": _sampled("attention"),
          "cbow": _sampled("cbow")}


@pytest.mark.parametrize("name", SEEDED)
def test_init_from_seed_is_the_jitted_split_and_init_bit_for_bit(name):
    """The keys split on the host and the init's one program give what the split and the
    init traced into one jitted program give."""
    model = SEEDED[name]()
    with count_compilations() as compiles:
        params, data_key = init_from_seed(model, 5)
    assert compiles.programs <= 1  # the init's program (0: another test compiled it)

    def start(seed):
        init_key, key = jax.random.split(jax.random.key(seed))
        return model.init(init_key), key

    expected, expected_key = jax.jit(start)(np.uint32(5))
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.random.key_data(data_key),
                                  jax.random.key_data(expected_key))


def test_float64_draws_with_host_keys_are_the_draws_one_by_one(x64):
    def init(key):
        keys = jax.random.split(key, 3)
        return [he(keys[0], (4, 3), jnp.float64), normal(0.1)(keys[2], (5,), jnp.float64),
                he(keys[1], (2, 2, 3, 3), jnp.float32)]

    key = jax.random.key(9)
    with count_compilations() as compiles:
        batched = draws_as_one(init)(key)
    assert compiles.programs == 1  # the float64 and float32 draws and the scaling, together
    for a, b in zip(batched, init(key), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
