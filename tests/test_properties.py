"""Property tests: every manual op against its reference over random shapes, scales and labels.

Hypothesis draws the shapes (batch 1…64, classes 2…50, inner sizes 1…64, from pools that
hold the edges, as pairs from a covering set), a scale ``10**u`` with ``u`` in [−2, 4] (so
inputs and logits reach ~1e4), the label form (integer indices, one-hot rows, soft rows
from a softmax, unnormalised non-negative rows) and a seed;
the arrays come from a NumPy generator with that seed. For each example, the manual op
(:mod:`fnnet.manual`) and the reference (:mod:`fnnet.autodiff`, differentiated by
``jax.grad``) must give finite values and VJPs (the math is finite for every input drawn
here) that agree, under a random cotangent (so a rule that ignores ``g`` fails), and the
manual cotangents must have their primals' dtypes.

Tolerances. Both sides evaluate the same formula in different orders, so they differ by
rounding alone. The classic bound for a sum of ``K`` rounded terms is ``K·eps·Σ|terms|``,
so each comparison is elementwise ``|manual − reference| ≤ (4 + K)·eps·S + tiny`` where
``eps`` is the dtype's machine epsilon, ``K`` the longest sum in the rule (N, C or D) and
``S`` the *magnitude of the terms* that make up that entry, e.g. ``|G|·|W|ᵀ`` for
``dx = G·Wᵀ`` (a cancelling sum can be far smaller than its terms, and is only as exact as
its terms are large); ``tiny`` (the smallest normal number, times the cotangent's size)
covers results in the subnormal range. Where ``y = exp(log softmax x)`` is involved, the
absolute rounding error of ``log y`` (``|log y|·eps``) becomes a relative error of ``y``, so
``S`` carries a factor ``1 + |log y|``. Scales reach 1e4 without overflow in float32:
softmax-type ops subtract the row max.

Speed. Every new shape means new XLA executables. Measured here (2-core CPU): one eager
manual+reference VJP of softmax on a new shape costs ~1.1 s (each primitive compiles on its
own), the same as one jitted function ~0.16–0.24 s, and either costs ~ms once compiled. So
manual and reference run inside one ``jit`` (:func:`_both`, cached by shape), and the sizes
come from small pools (edges 1, 2 and the maxima, odd sizes between) so that examples reuse
executables and vary values, scales and labels instead; the whole file takes ~10 s.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fnnet import autodiff, manual
from tests.helpers import of_positions

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

PROPERTY = settings(derandomize=True, deadline=None, max_examples=30, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

seeds = st.integers(0, 2**32 - 1)
scales = st.floats(-2.0, 4.0).map(lambda u: 10.0**u)
# Sizes from pools that hold the edges (1, 2, the maxima) and odd sizes between: every new
# shape costs a compile (~0.2 s here), so examples reuse shapes and vary values instead. The
# sizes are drawn as pairs from a covering set (every batch size and every class count
# appears, with both extremes together and apart), not from the full cross product.
BATCHES, CLASSES = [1, 2, 9, 64], [2, 3, 17, 50]
BATCH_CLASSES = [(1, 2), (1, 50), (2, 17), (9, 3), (64, 2), (64, 50)]
batch_classes = st.sampled_from(BATCH_CLASSES)
ELEMENTWISE_SHAPES = [(), (1,), (7,), (64, 50), (2, 3, 5)]
LINEAR_X_SHAPES = [(1, 1), (2, 3), (64, 64), (9, 17), (3, 5, 8)]  # (..., D)
OUTPUT_SIZES = [1, 10, 50]
LINEAR_SHAPES = [((1, 1), 1), ((1, 1), 50), ((2, 3), 10), ((64, 64), 50), ((64, 64), 1),
                 ((9, 17), 10), ((3, 5, 8), 1)]  # (x shape, M): each of both pools
LABELS = ("int", "onehot", "soft", "unnormalised")


# --- comparison ----------------------------------------------------------------------------


def _vjp(fn: Callable, args: tuple, diff: tuple[int, ...], g: jax.Array):
    """``(value, cotangents of args[diff])`` of ``fn(*args)`` under the cotangent ``g``."""

    value, pullback = jax.vjp(of_positions(fn, args, diff), *(args[i] for i in diff))
    return value, pullback(g)


@partial(jax.jit, static_argnames=("op", "diff"))
def _both(op: str, args: tuple, g: jax.Array, diff: tuple[int, ...]):
    """Manual and reference VJPs in one compiled function: one compile per drawn shape."""
    return (_vjp(getattr(manual, op), args, diff, g),
            _vjp(getattr(autodiff, op), args, diff, g))


def _agree(op: str, args: tuple, diff: tuple[int, ...], *, rng: np.random.Generator,
           magnitudes: Callable, k: int) -> None:
    """Run manual and reference; check finiteness, dtypes and the scaled tolerance.

    ``magnitudes(args, g, value)`` (NumPy float64) gives ``S`` for the value and for each
    cotangent, in order.
    """
    out = jax.eval_shape(getattr(autodiff, op), *args)
    g = jnp.asarray(2.0 * rng.standard_normal(out.shape), out.dtype)
    (value_m, grads_m), (value_r, grads_r) = _both(op, args, g, diff)
    eps, tiny = float(jnp.finfo(out.dtype).eps), float(jnp.finfo(out.dtype).tiny)
    g64 = np.asarray(g, np.float64)
    sizes = magnitudes([np.asarray(a, np.float64) for a in args], g64,
                       np.asarray(value_r, np.float64))
    outputs = [("value", value_m, value_r),
               *((f"d(arg {i})", gm, gr) for i, gm, gr in zip(diff, grads_m, grads_r,
                                                                 strict=True))]
    for (name, m, r), size in zip(outputs, sizes, strict=True):
        assert m.dtype == r.dtype, f"{op} {name}: dtype {m.dtype} vs reference {r.dtype}"
        m64, r64 = np.asarray(m, np.float64), np.asarray(r, np.float64)
        assert np.isfinite(r64).all(), f"{op} {name}: the reference is not finite"
        assert np.isfinite(m64).all(), f"{op} {name}: manual is not finite where the math is"
        bound = (4 + k) * eps * size + tiny * (1 + np.max(np.abs(g64), initial=0.0))
        excess = np.abs(m64 - r64) - bound
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        assert (excess <= 0).all(), (
            f"{op} {name}: manual {m64[worst]!r} vs reference {r64[worst]!r} at {worst} "
            f"(|diff| {abs(m64[worst] - r64[worst]):.3g} > bound {bound[worst]:.3g})")
    for i, gm in zip(diff, grads_m, strict=True):
        assert gm.dtype == args[i].dtype, f"{op}: d(arg {i}) is {gm.dtype}, not {args[i].dtype}"


def _normal(rng: np.random.Generator, shape, scale: float = 1.0, dtype=jnp.float32):
    return jnp.asarray(scale * rng.standard_normal(shape), dtype)


def _softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax64(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _labels(rng: np.random.Generator, form: str, n: int, c: int, dtype=jnp.float32):
    """Class labels for ``(n, c)`` scores in one of :data:`LABELS`."""
    picked = rng.integers(0, c, size=n)
    if form == "int":
        return jnp.asarray(picked, jnp.int32)
    if form == "onehot":
        return jnp.asarray(np.eye(c)[picked], dtype)
    soft = _softmax64(rng.standard_normal((n, c)) * 10.0 ** rng.uniform(-1, 2))  # exact 0s too
    if form == "soft":
        return jnp.asarray(soft, dtype)
    return jnp.asarray(soft * rng.uniform(0.0, 3.0, size=(n, 1)), dtype)  # rows not summing to 1


def _dense(labels: np.ndarray, form: str, c: int) -> np.ndarray:
    return np.eye(c)[labels.astype(int)] if form == "int" else labels


# --- elementwise ---------------------------------------------------------------------------


def _activation_magnitudes(op: str) -> Callable:
    """``S`` of the value and of ``dx``; the rules are products except for one difference:
    sigmoid's ``1 − y`` and tanh's ``1 − y·y`` (terms 1 and ``y²``: near ``|y| = 1`` the
    difference is far smaller than its terms, and two correct roundings of it differ)."""

    def magnitudes(args, g, y):
        if op == "sigmoid":
            return [np.abs(y), np.abs(g) * np.abs(y) * (1 + np.abs(y))]
        if op == "tanh":
            return [np.abs(y), np.abs(g) * (1 + y * y)]
        return [np.abs(y), np.abs(g)]

    return magnitudes


@pytest.mark.parametrize("op", ["sigmoid", "relu", "tanh"])
@PROPERTY
@given(shape=st.sampled_from(ELEMENTWISE_SHAPES), scale=scales, seed=seeds)
def test_activations_agree(op, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = np.asarray(scale * rng.standard_normal(shape))
    x[np.asarray(rng.random(shape)) < 0.1] = 0.0  # relu's kink: gradient 0 there, as jax's
    _agree(op, (jnp.asarray(x, jnp.float32),), (0,), rng=rng, k=0,
           magnitudes=_activation_magnitudes(op))


# --- linear --------------------------------------------------------------------------------


def _linear_magnitudes(op: str) -> Callable:
    """``S`` of each entry: the sum of the absolute values of its terms, i.e. the same maps on
    ``|x|, |W|, |b|, |g|``: ``|x|·|W| + |b|``, ``|G|·|W|ᵀ``, ``|X|ᵀ·|G|``, ``Σₙ|Gₙ|``."""

    def magnitudes(args, g, value):
        x, W = np.abs(args[0]), np.abs(args[1])
        g = np.abs(g)
        rows_x, rows_g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        sizes = [x @ W, g @ W.T, rows_x.T @ rows_g]
        if op == "affine":
            sizes[0] = sizes[0] + np.abs(args[2])
            sizes.append(rows_g.sum(axis=0))
        return sizes

    return magnitudes


def test_the_size_pairs_cover_every_pool_value():
    assert sorted({n for n, _ in BATCH_CLASSES}) == BATCHES
    assert sorted({c for _, c in BATCH_CLASSES}) == CLASSES
    assert {x for x, _ in LINEAR_SHAPES} == set(LINEAR_X_SHAPES)
    assert {m for _, m in LINEAR_SHAPES} == set(OUTPUT_SIZES)


@pytest.mark.parametrize("op", ["affine", "matmul"])
@PROPERTY
@given(shape=st.sampled_from(LINEAR_SHAPES), scale=scales, seed=seeds)
def test_linear_agrees(op, shape, scale, seed):
    x_shape, m = shape
    rng = np.random.default_rng(seed)
    d = x_shape[-1]
    x, W = _normal(rng, x_shape, scale), _normal(rng, (d, m), scale)
    args = (x, W, _normal(rng, (m,), scale)) if op == "affine" else (x, W)
    rows = int(np.prod(x_shape[:-1]))
    _agree(op, args, tuple(range(len(args))), rng=rng, k=max(d, rows),
           magnitudes=_linear_magnitudes(op))


# --- softmax and the losses ----------------------------------------------------------------


@PROPERTY
@given(nc=batch_classes, scale=scales, seed=seeds)
def test_softmax_agrees(nc, scale, seed):
    n, c = nc
    rng = np.random.default_rng(seed)

    def magnitudes(args, g, y):
        y = np.exp(_log_softmax64(args[0]))
        y_term = y * (1 + np.abs(_log_softmax64(args[0])))  # exp turns |log y|·eps relative
        # dx = y·(g − Σ g·y): terms y·|g| and y·Σ|g|·y.
        return [y_term, y_term * (np.abs(g) + np.sum(np.abs(g) * y, -1, keepdims=True))]

    _agree("softmax", (_normal(rng, (n, c), scale),), (0,), rng=rng, k=c,
           magnitudes=magnitudes)


def _sce_magnitudes(form: str, n: int, c: int) -> Callable:
    """L = −Σ t·logp / N (terms |t·logp|); dx = g·(y·Σt − t)/N (terms y·Σ|t| and |t|, with
    y's relative error |logp|·eps); dt = −g·logp/N (a product)."""

    def magnitudes(args, g, loss):
        logp = _log_softmax64(args[0])
        t = _dense(args[1], form, c)
        y = np.exp(logp)
        value = np.sum(np.abs(t * logp)) / n + np.abs(loss)
        dx = np.abs(g) / n * (y * (1 + np.abs(logp)) * np.sum(np.abs(t), 1, keepdims=True)
                              + np.abs(t))
        dt = np.abs(g) / n * (1 + np.abs(logp))
        return [value, dx, dt][: 2 if form == "int" else 3]

    return magnitudes


@PROPERTY
@given(nc=batch_classes, form=st.sampled_from(LABELS), scale=scales, seed=seeds)
def test_softmax_cross_entropy_agrees(nc, form, scale, seed):
    n, c = nc
    rng = np.random.default_rng(seed)
    args = (_normal(rng, (n, c), scale), _labels(rng, form, n, c))
    _agree("softmax_cross_entropy", args, (0,) if form == "int" else (0, 1), rng=rng,
           k=max(n, c), magnitudes=_sce_magnitudes(form, n, c))


@PROPERTY
@given(nc=batch_classes, form=st.sampled_from(LABELS), scale=scales, seed=seeds)
def test_cross_entropy_error_agrees(nc, form, scale, seed):
    n, c = nc
    rng = np.random.default_rng(seed)
    # Probabilities from scaled logits: at large scales many are exactly 0 or 1.
    probs = jnp.asarray(_softmax64(scale * rng.standard_normal((n, c))), jnp.float32)

    def magnitudes(args, g, loss):
        t = _dense(args[1], form, c)
        log_y = np.log(args[0] + 1e-7)
        # Products per entry (dy = −g·t/(N(y+ε)), dt = −g·log(y+ε)/N): no cancellation.
        dy = np.abs(g) / n * np.abs(t) / (args[0] + 1e-7)
        sizes = [np.sum(np.abs(t * log_y)) / n + np.abs(loss), dy,
                 np.abs(g) / n * (1 + np.abs(log_y))]
        return sizes[: 2 if form == "int" else 3]

    _agree("cross_entropy_error", (probs, _labels(rng, form, n, c)),
           (0,) if form == "int" else (0, 1), rng=rng, k=max(n, c), magnitudes=magnitudes)


@PROPERTY
@given(nc=batch_classes, scale=scales, seed=seeds)
def test_mean_squared_error_agrees(nc, scale, seed):
    n, c = nc
    rng = np.random.default_rng(seed)
    y = _normal(rng, (n, c), scale)
    t = _normal(rng, (n, c), scale) if rng.random() < 0.8 else y  # t = y: zero loss and grads

    def magnitudes(args, g, loss):
        y, t = args
        terms = np.abs(g) / n * (np.abs(y) + np.abs(t))  # dy = g·(y − t)/N
        return [np.sum((y - t) ** 2) / (2 * n) + np.abs(loss), terms, terms]

    _agree("mean_squared_error", (y, t), (0, 1), rng=rng, k=n * c, magnitudes=magnitudes)


# --- float64 -------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=20,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(nc=batch_classes, form=st.sampled_from(LABELS), scale=scales, seed=seeds)
def test_softmax_cross_entropy_and_affine_agree_in_float64(x64, nc, form, scale, seed):
    """The same properties in float64 (x64 on), where eps is 2e-16: the tolerance tightens
    by the ratio of the epsilons, so a float32 rounding inside a rule would fail here."""
    n, c = nc
    rng = np.random.default_rng(seed)
    args = (_normal(rng, (n, c), scale, jnp.float64), _labels(rng, form, n, c, jnp.float64))
    assert args[0].dtype == jnp.float64
    _agree("softmax_cross_entropy", args, (0,) if form == "int" else (0, 1), rng=rng,
           k=max(n, c), magnitudes=_sce_magnitudes(form, n, c))
    x, W = _normal(rng, (n, c), scale, jnp.float64), _normal(rng, (c, 7), scale, jnp.float64)
    _agree("affine", (x, W, _normal(rng, (7,), scale, jnp.float64)), (0, 1, 2), rng=rng,
           k=max(n, c), magnitudes=_linear_magnitudes("affine"))
