"""PRNG keys derived on the host: JAX's threefry key splitting, exactly, in NumPy.

An init's keys depend only on its seed, but each ``jax.random.split`` in a compiled program
is a loop of its own for XLA to compile (~0.1 s apiece on a CPU, more than the rest of a
small init). :func:`derive` computes the keys an init's draws will use on the host instead,
so the init's program takes them as an input (:func:`fnnet.init.draws_as_one`).

The hash is Threefry-2x32 with 20 rounds (Salmon et al., *Parallel random numbers: as easy
as 1, 2, 3*, 2011), as ``jax.random`` computes it: with key ``(k₀, k₁)`` and
``k₂ = k₀ ⊕ k₁ ⊕ 0x1BD11BDA``, the counter pair ``(x₀, x₁)`` starts at ``(x₀ + k₀, x₁ + k₁)``
and goes through five groups of four rounds ``x₀ += x₁; x₁ = rotl(x₁, r) ⊕ x₀`` (rotations
13 15 26 6, then 17 29 16 24, alternately), group ``i`` (from 0) ending with
``x₀ += k₍ᵢ₊₁₎ mod 3``, ``x₁ += k₍ᵢ₊₂₎ mod 3 + i + 1``; all arithmetic mod 2³².

JAX's partitionable threefry (``jax_threefry_partitionable``, its default since 0.5) splits a
key into ``n`` keys by hashing the counters ``(0, j)`` for ``j < n``: key ``j`` is the hashed
pair. ``key(seed)`` for a 32-bit seed is ``(0, seed)``. Where the generator is another one
(or the older threefry splitting), nothing here applies: :func:`applies` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
THREEFRY = "threefry2x32"


def threefry2x32(key: tuple[np.ndarray, np.ndarray], count: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash of the counter pairs ``count`` under the key pairs ``key``
    (``uint32`` arrays, broadcast together)."""
    k0, k1 = (np.asarray(k, np.uint32) for k in key)
    x0, x1 = (np.asarray(x, np.uint32) for x in count)
    schedule = (k0, k1, k0 ^ k1 ^ _PARITY)
    with np.errstate(over="ignore"):
        x0, x1 = x0 + schedule[0], x1 + schedule[1]
        for group in range(5):
            for r in _ROTATIONS[group % 2]:
                x0 = x0 + x1
                x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
            x0 = x0 + schedule[(group + 1) % 3]
            x1 = x1 + schedule[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def split(key_data: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``key_data(split(keys, shape))`` of the keys ``key_data (..., 2)``: ``(..., *shape, 2)``."""
    key_data = np.asarray(key_data, np.uint32)
    shape = tuple(int(n) for n in shape)
    index = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    hi, lo = (index >> np.uint64(32)).astype(np.uint32), index.astype(np.uint32)
    fresh = (1,) * len(shape)
    k0 = key_data[..., 0].reshape(key_data.shape[:-1] + fresh)
    k1 = key_data[..., 1].reshape(key_data.shape[:-1] + fresh)
    return np.stack(threefry2x32((k0, k1), (hi, lo)), axis=-1)


def seed_data(seed: int) -> np.ndarray:
    """``key_data(jax.random.key(seed))`` for ``0 ≤ seed < 2³²``: ``(0, seed)``."""
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed_data: seed must be in [0, 2**32); got {seed}")
    return np.array([0, int(seed)], np.uint32)


def applies(impl: object = None) -> bool:
    """Whether this module's splitting is JAX's: partitionable threefry, for ``impl`` (a key's
    ``jax.random.key_impl``, or the default generator when None)."""
    name = _impl_name(impl if impl is not None else jax.config.jax_default_prng_impl)
    return bool(jax.config.jax_threefry_partitionable) and name == THREEFRY


def _impl_name(impl: object) -> str:
    """A generator's name from a ``PRNGImpl``, a ``jax.random.key_impl`` spec or a string."""
    return str(getattr(impl, "name", impl))


# --- the key part of a traced function, evaluated on the host ------------------------------


class _Unsupported(Exception):
    """An equation the host evaluation does not know: the caller falls back to JAX."""


def _is_key(aval: object) -> bool:
    return jax.dtypes.issubdtype(getattr(aval, "dtype", None), jax.dtypes.prng_key)


def _key_impl_name(aval: object) -> str:
    return _impl_name(getattr(aval.dtype, "_impl", ""))


def _slice(x: np.ndarray, *, start_indices, limit_indices, strides, **_) -> np.ndarray:
    steps = strides or (1,) * len(start_indices)
    return x[tuple(slice(a, b, s) for a, b, s in zip(start_indices, limit_indices, steps,
                                                      strict=True))]


def _reshape(x: np.ndarray, *, new_sizes, dimensions=None, key: bool, **_) -> np.ndarray:
    if dimensions is not None:
        raise _Unsupported("reshape with dimensions")
    return x.reshape(tuple(new_sizes) + (x.shape[-1:] if key else ()))


def _rule(eqn, values: list[np.ndarray]) -> list[np.ndarray]:
    name, params = eqn.primitive.name, eqn.params
    key = bool(eqn.invars) and _is_key(eqn.invars[0].aval)
    if name == "random_wrap":
        if _impl_name(params["impl"]) != THREEFRY:
            raise _Unsupported(f"generator {_impl_name(params['impl'])}")
        return [values[0]]
    if name == "random_unwrap":
        return [values[0]]
    if name == "random_split":
        if _key_impl_name(eqn.invars[0].aval) != THREEFRY:
            raise _Unsupported("split of a non-threefry key")
        return [split(values[0], params["shape"])]
    if name == "slice":
        return [_slice(values[0], **params)]
    if name == "squeeze":
        return [np.squeeze(values[0], axis=tuple(params["dimensions"]))]
    if name == "reshape":
        return [_reshape(values[0], key=key, **params)]
    if name == "concatenate":
        return [np.concatenate(values, axis=params["dimension"])]
    if name in ("pjit", "jit", "closed_call", "core_call"):
        inner = params.get("jaxpr", params.get("call_jaxpr"))
        return _evaluate(inner.jaxpr, list(getattr(inner, "consts", ())), values)
    raise _Unsupported(name)


def _evaluate(jaxpr, consts: list, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """``jaxpr``'s outputs from ``inputs`` (a key as its data), evaluating only the
    equations the outputs need."""
    needed = {v for v in jaxpr.outvars if not hasattr(v, "val")}
    live = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in needed for v in eqn.outvars):
            live.append(eqn)
            needed.update(v for v in eqn.invars if not hasattr(v, "val"))
    env = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, inputs, strict=True))

    def read(atom) -> np.ndarray:
        return np.asarray(atom.val) if hasattr(atom, "val") else env[atom]

    for eqn in reversed(live):
        env.update(zip(eqn.outvars, _rule(eqn, [read(v) for v in eqn.invars]), strict=True))
    return [read(v) for v in jaxpr.outvars]


def derive(closed_jaxpr, inputs: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """The outputs of ``closed_jaxpr`` (from :func:`jax.make_jaxpr`) at ``inputs``, a typed
    key given as its data, computed on the host; None where the outputs need anything but
    threefry key splitting, slicing and reshaping (then let JAX compute them)."""
    try:
        return _evaluate(closed_jaxpr.jaxpr, list(closed_jaxpr.consts),
                         [np.asarray(x) for x in inputs])
    except _Unsupported:
        return None
