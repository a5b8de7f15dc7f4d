"""fnnet.init.draws_as_one: an init's normal draws as one batched draw, with the same values,
eagerly and under jit, shared between models of the same shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet.compiles import count_compilations
from fnnet.init import draws_as_one, he, normal, standard_normal

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
