"""Shared test helpers: tolerances per dtype, pytree comparison, random inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Manual and autodiff gradients take different (but equally valid) rounding paths; these
# bound the difference: a few ulps of the dtype, scaled by the size of the values.
TOLERANCES = {
    jnp.dtype("float64"): dict(rtol=1e-12, atol=1e-14),
    jnp.dtype("float32"): dict(rtol=2e-5, atol=1e-6),
    jnp.dtype("bfloat16"): dict(rtol=2e-2, atol=1e-2),
}


def tolerance(dtype) -> dict[str, float]:
    return TOLERANCES[jnp.dtype(dtype)]


def tree_allclose(a, b, *, rtol: float, atol: float) -> bool:
    """True when both pytrees have the same structure, shapes, dtypes and close values."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if not np.allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                           rtol=rtol, atol=atol, equal_nan=False):
            return False
    return True


def assert_tree_allclose(a, b, dtype) -> None:
    tol = tolerance(dtype)
    if not tree_allclose(a, b, **tol):
        diffs = jax.tree.map(
            lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)),
                                      initial=0.0)),
            a, b,
        )
        raise AssertionError(f"pytrees differ beyond {tol}: max abs differences {diffs}")


def max_abs_diff(a, b) -> float:
    """Largest absolute difference over all leaves of two pytrees."""
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def normal(rng: np.random.Generator, shape, dtype, scale: float = 1.0) -> jax.Array:
    return jnp.asarray(scale * rng.standard_normal(shape), dtype=dtype)


def away_from_zero(rng: np.random.Generator, shape, dtype) -> jax.Array:
    """Values with |x| ≥ 0.1, so a finite-difference step never crosses a kink at 0."""
    values = rng.standard_normal(shape)
    return jnp.asarray(np.sign(values) * (0.1 + np.abs(values)), dtype=dtype)


def of_positions(fn, args: tuple, positions) -> object:
    """``fn`` as a function of ``args[i] for i in positions`` only, the other arguments fixed
    (integer labels, static ints): what ``jax.vjp`` and ``check_grads`` differentiate."""

    def on_positions(*values):
        full = list(args)
        for i, value in zip(positions, values, strict=True):
            full[i] = value
        return fn(*full)

    return on_positions


def distinct(rng: np.random.Generator, shape, dtype) -> jax.Array:
    """Values spaced at least ``1/size`` apart (no ties in any pooling window, and a
    finite-difference step never changes which entry is the maximum), in ``[−1, 1)``."""
    size = int(np.prod(shape))
    return jnp.asarray((2 * rng.permutation(size) / size - 1).reshape(shape), dtype)
