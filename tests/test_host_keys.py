"""fnnet.host_keys: JAX's threefry key splitting in NumPy, bit for bit, and the key part of
a traced init evaluated on the host."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from fnnet import host_keys


def test_threefry_known_answers():
    """Random123's known-answer vectors for Threefry-2x32, 20 rounds."""
    cases = [((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF,) * 2, (0xFFFFFFFF,) * 2, (0x1CB996FC, 0xBB002BE7)),
             ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
    for key, count, expected in cases:
        got = host_keys.threefry2x32(key, count)
        assert tuple(int(x) for x in got) == expected


def test_threefry_is_jaxs_on_random_counters():
    rng = np.random.default_rng(0)
    key = rng.integers(0, 2**32, 2, dtype=np.uint32)
    count = rng.integers(0, 2**32, 2 * 37, dtype=np.uint32)
    expected = np.asarray(threefry_2x32((key[0], key[1]), count))  # halves as the pair
    got = np.concatenate(host_keys.threefry2x32((key[0], key[1]), (count[:37], count[37:])))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", [0, 1, 42, 123_456_789, 2**32 - 1])
def test_seed_and_split_are_jaxs(seed):
    key = jax.random.key(np.uint32(seed))
    data = host_keys.seed_data(seed)
    np.testing.assert_array_equal(data, jax.random.key_data(key))
    for shape in [(1,), (2,), (17,), (3, 4)]:
        np.testing.assert_array_equal(host_keys.split(data, shape),
                                      jax.random.key_data(jax.random.split(key, shape)))


def test_split_of_a_batch_of_keys():
    keys = jax.random.split(jax.random.key(7), (3, 2))
    expected = jax.vmap(jax.vmap(lambda k: jax.random.split(k, 5)))(keys)
    np.testing.assert_array_equal(host_keys.split(np.asarray(jax.random.key_data(keys)), (5,)),
                                  jax.random.key_data(expected))


def test_a_seed_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\); got -1"):
        host_keys.seed_data(-1)


def _derived(fn, key):
    closed = jax.make_jaxpr(fn)(key)
    return host_keys.derive(closed, [np.asarray(jax.random.key_data(key))])


def test_derive_follows_splits_slices_and_reshapes():
    def keys_of(key):
        a, b = jax.random.split(key)
        grid = jax.random.split(b, (2, 3)).reshape(6)
        return [jax.random.key_data(k) for k in (a, *grid[1:4], jax.random.split(a, 4)[3])]

    key = jax.random.key(11)
    got = _derived(keys_of, key)
    assert got is not None
    for a, b in zip(got, keys_of(key), strict=True):
        np.testing.assert_array_equal(a, b)


def test_derive_gives_up_on_what_it_does_not_know():
    assert _derived(lambda key: jax.random.key_data(jax.random.fold_in(key, 3)),
                    jax.random.key(0)) is None


def test_applies_only_to_partitionable_threefry():
    assert host_keys.applies() and host_keys.applies(jax.random.key_impl(jax.random.key(0)))
    assert not host_keys.applies("rbg")
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        assert not host_keys.applies()
    finally:
        jax.config.update("jax_threefry_partitionable", previous)
