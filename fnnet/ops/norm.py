"""Dropout and batch normalisation (the book's chapter 6), manual rules and references.

* :func:`dropout` — random masking with an explicit key; inverted (scaled at train time) by
  default, the book's variant (scaled at test time) with ``scale_at="test"``.
* :func:`batch_norm` — training mode: normalise with the batch's own mean and biased
  variance; the backward rule is the book's step-by-step derivation.
* :func:`batch_norm_inference` — eval mode: normalise with given (running) statistics.
* :func:`batch_norm_statistics` — the batch mean and biased variance that a layer folds into
  its running statistics (plain ``jnp``: state, not something to differentiate).

Half precision (bfloat16, float16) batch-norm inputs are computed in float32 inside and cast
back; static options (``rate``, ``eps``, ``train``, ``scale_at``) must be Python values.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from fnnet._checks import as_float_array

# --- static options ------------------------------------------------------------------------


def _static_float(op: str, name: str, value: object) -> float:
    """``value`` as a Python float; ``TypeError`` for arrays under a trace and non-numbers."""
    if isinstance(value, bool | np.bool_ | str | bytes):
        raise TypeError(f"{op}: {name} must be a concrete Python number; got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise TypeError(
            f"{op}: {name} must be a concrete Python number (it is static); "
            f"got {type(value).__name__}"
        ) from None


def _static_bool(op: str, name: str, value: object) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{op}: {name} must be a Python bool (it is static); got {type(value).__name__}"
        )
    return bool(value)


# --- dropout -------------------------------------------------------------------------------

ScaleAt = Literal["train", "test"]


def _check_key(op: str, key: object) -> jax.Array:
    """A typed key (``jax.random.key``) of shape ``()``, or a raw ``uint32`` key
    (``jax.random.PRNGKey``) of shape ``(k,)``; ``TypeError`` otherwise."""
    key_dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    if key_dtype is not None and jax.dtypes.issubdtype(key_dtype, jax.dtypes.prng_key):
        if shape == ():
            return key  # type: ignore[return-value]
    elif key_dtype == jnp.uint32 and len(shape) == 1:
        return key  # type: ignore[return-value]
    raise TypeError(
        f"{op}: key must be one JAX PRNG key: jax.random.key(seed) (shape ()) or a raw uint32 "
        f"key from jax.random.PRNGKey(seed) (shape (2,)); got dtype {key_dtype}, "
        f"shape {shape} (split a batch of keys, or vmap over them)"
    )


def _check_dropout_args(x: object, key: object, rate: object, train: object, scale_at: object):
    op = "dropout"
    x = as_float_array(op, "x", x)
    rate = _static_float(op, "rate", rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{op}: rate (the probability of dropping) must lie in [0, 1); "
                         f"got {rate}")
    train = _static_bool(op, "train", train)
    if scale_at not in ("train", "test"):
        raise ValueError(f"{op}: scale_at must be 'train' (inverted dropout) or 'test' (the "
                         f"book's); got {scale_at!r}")
    if key is not None or (train and rate > 0):
        key = _check_key(op, key)  # None is fine only where no mask is drawn
    return x, key, rate, train, scale_at


def _dropout_plan(key: jax.Array | None, shape: tuple[int, ...], rate: float, train: bool,
                  scale_at: str) -> tuple[jax.Array | None, float]:
    """``(mask, factor)`` with ``y = where(mask, x·factor, 0)``; ``mask is None`` when nothing
    is dropped. The one place the mask is drawn, shared by the manual op and the reference."""
    keep = 1.0 - rate
    if not train:
        return None, (keep if scale_at == "test" else 1.0)
    if rate == 0.0:
        return None, 1.0
    mask = jax.random.bernoulli(key, keep, shape)
    return mask, (1.0 / keep if scale_at == "train" else 1.0)


def _masked_scale(x: jax.Array, mask: jax.Array, factor: float) -> jax.Array:
    return jnp.where(mask, x * factor, jnp.zeros((), x.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dropout(x: jax.Array, mask: jax.Array, factor: float) -> jax.Array:
    return _masked_scale(x, mask, factor)


def _dropout_fwd(x, mask, factor):
    return _masked_scale(x, mask, factor), mask


def _dropout_bwd(factor, mask, g):
    # y = mask·factor·x elementwise, so dx = g·mask·factor; the boolean mask has no cotangent.
    return _masked_scale(g, mask, factor), None


_dropout.defvjp(_dropout_fwd, _dropout_bwd)


def dropout(x: jax.Array, key: jax.Array | None, *, rate: float, train: bool = True,
            scale_at: ScaleAt = "train") -> jax.Array:
    """Dropout with an explicit key and the hand-derived backward rule.

    Training (``train=True``): ``mask = jax.random.bernoulli(key, keep, x.shape)`` with
    ``keep = 1 − rate`` (True = kept), and

      * ``scale_at="train"`` (inverted dropout, the default): ``y = x·mask/keep``, so the
        expected value of ``y`` is ``x`` and evaluation needs no scaling;
      * ``scale_at="test"`` (the book's ``Dropout`` layer): ``y = x·mask``.

    Evaluation (``train=False``, no randomness): ``y = x`` (inverted) or ``y = x·keep`` (the
    book's).

    Backward: ``y`` is ``x`` times a constant per entry, so ``dx = g·mask/keep`` (inverted) or
    ``dx = g·mask`` (the book's) in training, and ``g`` or ``g·keep`` in evaluation. The
    manual op and :func:`dropout_reference` draw the mask by the same call, so for the same
    key they drop the same entries and agree in values and gradients. ``rate=0`` is the
    identity in both modes.

    Args:
      x: floating array, any shape.
      key: one PRNG key, typed (``jax.random.key(seed)``, shape ``()``) or raw ``uint32``
        (``jax.random.PRNGKey(seed)``, shape ``(2,)``); to drop independently per example
        under ``vmap``, map over a batch of keys. May be ``None`` where no mask is drawn
        (``train=False`` or ``rate=0``); a key given there is still checked, and unused.
      rate: Python float in ``[0, 1)``, the probability that an entry is dropped.
      train: Python bool; ``False`` selects evaluation mode.
      scale_at: ``"train"`` (inverted dropout) or ``"test"`` (the book's variant).

    Returns:
      ``y``, same shape and dtype as ``x``.

    >>> import jax, jax.numpy as jnp
    >>> y = dropout(jnp.ones(1000), jax.random.key(0), rate=0.5)
    >>> sorted(set(y.tolist()))
    [0.0, 2.0]
    >>> dropout(jnp.ones(2), jax.random.key(0), rate=0.5, train=False, scale_at="test").tolist()
    [0.5, 0.5]
    """
    x, key, rate, train, scale_at = _check_dropout_args(x, key, rate, train, scale_at)
    mask, factor = _dropout_plan(key, x.shape, rate, train, scale_at)
    if mask is None:
        mask = jnp.ones((), bool)  # scalar, broadcast: every entry kept, scaled by factor
    return _dropout(x, mask, factor)


def dropout_reference(x: jax.Array, key: jax.Array | None, *, rate: float, train: bool = True,
                      scale_at: ScaleAt = "train") -> jax.Array:
    """The same masking in plain ``jax.numpy`` (same mask for the same key); ``jax.grad`` does
    the rest."""
    x, key, rate, train, scale_at = _check_dropout_args(x, key, rate, train, scale_at)
    mask, factor = _dropout_plan(key, x.shape, rate, train, scale_at)
    if mask is None:
        return x * factor
    return _masked_scale(x, mask, factor)


# --- batch norm: shapes and checks ---------------------------------------------------------


def _stat_axes(x: jax.Array) -> tuple[int, ...]:
    """Axes normalised over: ``(0,)`` for ``(N, D)``, ``(0, 2, 3)`` for ``(N, C, H, W)``."""
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _as_feature_shape(x: jax.Array, v: jax.Array) -> jax.Array:
    """A ``(D,)`` / ``(C,)`` vector reshaped to broadcast against ``x``."""
    return v.reshape((1, -1) if x.ndim == 2 else (1, -1, 1, 1))


def _compute_dtype(*arrays: jax.Array) -> jnp.dtype:
    """float32 for half precision, else the promoted dtype of the arrays."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _check_bn_x(op: str, x: object) -> jax.Array:
    x = as_float_array(op, "x", x)
    if x.ndim not in (2, 4):
        raise ValueError(
            f"{op}: x must be 2-D (N, D) or 4-D (N, C, H, W); got shape {tuple(x.shape)}"
        )
    return x


def _check_feature_vector(op: str, name: str, v: object, x: jax.Array) -> jax.Array:
    v = as_float_array(op, name, v)
    axis = "D" if x.ndim == 2 else "C"
    if v.shape != (x.shape[1],):
        raise ValueError(
            f"{op}: {name} must have shape ({axis},) = ({x.shape[1]},) for x of shape "
            f"{tuple(x.shape)}; got {tuple(v.shape)}"
        )
    return v


def _check_eps(op: str, eps: object) -> float:
    eps = _static_float(op, "eps", eps)
    if not (eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"{op}: eps must be a finite number >= 0; got {eps}")
    return eps


def _check_bn_args(x: object, gamma: object, beta: object, eps: object):
    op = "batch_norm"
    x = _check_bn_x(op, x)
    gamma = _check_feature_vector(op, "gamma", gamma, x)
    beta = _check_feature_vector(op, "beta", beta, x)
    eps = _check_eps(op, eps)
    count = math.prod(x.shape[a] for a in _stat_axes(x))
    if count < 2:
        over = "N" if x.ndim == 2 else "N·H·W"
        raise ValueError(
            f"{op}: training mode normalises each feature over {over} values and needs at "
            f"least 2; got {over} = {count} for x of shape {tuple(x.shape)} (with one value "
            f"the output is beta whatever x is, and the gradient to x is 0; use "
            f"batch_norm_inference with running statistics for single examples)"
        )
    return x, gamma, beta, eps


# --- batch norm (training mode) ------------------------------------------------------------


def _bn_forward(x: jax.Array, gamma: jax.Array, beta: jax.Array, eps: float):
    """``(y, xc, std)`` in the compute dtype; ``y`` is cast to the output dtype."""
    out_dtype = jnp.result_type(x, gamma, beta)
    cdt = _compute_dtype(x, gamma, beta)
    axes = _stat_axes(x)
    xf = x.astype(cdt)
    mu = jnp.mean(xf, axis=axes, keepdims=True)
    xc = xf - mu
    var = jnp.mean(xc * xc, axis=axes, keepdims=True)
    std = jnp.sqrt(var + eps)
    xn = xc / std
    y = _as_feature_shape(x, gamma.astype(cdt)) * xn + _as_feature_shape(x, beta.astype(cdt))
    return y.astype(out_dtype), xc, std


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _batch_norm(x, gamma, beta, eps: float):
    return _bn_forward(x, gamma, beta, eps)[0]


def _batch_norm_fwd(x, gamma, beta, eps):
    y, xc, std = _bn_forward(x, gamma, beta, eps)
    return y, (x, gamma, beta, xc, std)


def _batch_norm_bwd(eps, res, dout):
    x, gamma, beta, xc, std = res
    axes = _stat_axes(x)
    m = xc.size // std.size  # values per feature: N, or N·H·W

    def total(a):
        return jnp.sum(a, axis=axes, keepdims=True)

    dout = dout.astype(xc.dtype)
    xn = xc / std
    dbeta = total(dout)
    dgamma = total(xn * dout)
    dxn = _as_feature_shape(x, gamma.astype(xc.dtype)) * dout
    dxc = dxn / std
    dstd = -total(dxn * xc) / (std * std)
    dvar = 0.5 * dstd / std
    dxc = dxc + (2.0 / m) * xc * dvar
    dmu = total(dxc)
    dx = dxc - dmu / m
    return (dx.astype(x.dtype), dgamma.reshape(gamma.shape).astype(gamma.dtype),
            dbeta.reshape(beta.shape).astype(beta.dtype))


_batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


def batch_norm(x: jax.Array, gamma: jax.Array, beta: jax.Array, *,
               eps: float = 1e-5) -> jax.Array:
    """Batch normalisation in training mode (batch statistics) with the book's backward rule.

    Shapes: ``x`` ``(N, D)`` is normalised per feature over axis 0 (``M = N`` values), with
    ``gamma``, ``beta`` ``(D,)``; ``x`` ``(N, C, H, W)`` per channel over ``(N, H, W)``
    (``M = N·H·W`` values), with ``gamma``, ``beta`` ``(C,)``. Sums ``Σ`` below run over those
    ``M`` values, per feature.

    Forward (biased variance, as the book):

      ``μ = Σ x / M``,  ``xc = x − μ``,  ``var = Σ xc² / M``,  ``std = √(var + eps)``,
      ``xn = xc / std``,  ``y = γ·xn + β``.

    Backward (the book's derivation, one node of the graph at a time, ``dout = g``):

      ``dβ = Σ dout``,  ``dγ = Σ xn·dout``,
      ``dxn = γ·dout``,
      ``dxc = dxn / std``                      (through ``xn = xc·(1/std)``, the ``xc`` branch),
      ``dstd = −Σ (dxn·xc) / std²``            (the ``1/std`` branch),
      ``dvar = 0.5·dstd / std``                 (``std = √(var + eps)``),
      ``dxc += (2/M)·xc·dvar``                  (``var = Σ xc²/M``: the second path to ``xc``),
      ``dμ = Σ dxc``,
      ``dx = dxc − dμ / M``                     (``xc = x − μ``, ``μ = Σ x / M``).

    ``M ≥ 2`` is required: with one value per feature, ``xc = 0`` and the output is ``β``
    whatever ``x`` is (a gradient check there passes trivially), so it is a ``ValueError``.

    Args:
      x: ``(N, D)`` or ``(N, C, H, W)`` floating array.
      gamma: scale, ``(D,)`` or ``(C,)``.
      beta: shift, ``(D,)`` or ``(C,)``.
      eps: Python float ``≥ 0`` added to the variance.

    Returns:
      ``y``, the shape of ``x``, dtype the promotion of ``x``, ``gamma``, ``beta``.

    >>> import jax.numpy as jnp
    >>> y = batch_norm(jnp.array([[1.0], [3.0]]), jnp.ones(1), jnp.zeros(1), eps=0.0)
    >>> y.tolist()
    [[-1.0], [1.0]]
    """
    x, gamma, beta, eps = _check_bn_args(x, gamma, beta, eps)
    return _batch_norm(x, gamma, beta, eps)


def batch_norm_reference(x: jax.Array, gamma: jax.Array, beta: jax.Array, *,
                         eps: float = 1e-5) -> jax.Array:
    """The same forward in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    x, gamma, beta, eps = _check_bn_args(x, gamma, beta, eps)
    return _bn_forward(x, gamma, beta, eps)[0]


# --- batch norm statistics (for the running averages) -------------------------------------


def batch_norm_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The batch mean and biased variance :func:`batch_norm` normalises with, per feature.

    ``mean = Σ x / M`` and ``var = Σ (x − mean)² / M`` over axis 0 of ``(N, D)`` or axes
    ``(0, 2, 3)`` of ``(N, C, H, W)``; both ``(D,)`` / ``(C,)``, dtype of ``x`` (computed in
    float32 for half precision). A batch-norm layer folds them into its running statistics,
    the book's way (momentum 0.9)::

        running_mean = 0.9·running_mean + 0.1·mean
        running_var  = 0.9·running_var  + 0.1·var

    and uses those in eval mode with :func:`batch_norm_inference`. Plain ``jnp`` (they are
    state, not differentiated; wrap in ``jax.lax.stop_gradient`` if they reach a loss).

    >>> import jax.numpy as jnp
    >>> [v.tolist() for v in batch_norm_statistics(jnp.array([[1.0], [3.0]]))]
    [[2.0], [1.0]]
    """
    x = _check_bn_x("batch_norm_statistics", x)
    axes = _stat_axes(x)
    xf = x.astype(_compute_dtype(x))
    mean = jnp.mean(xf, axis=axes)
    xc = xf - _as_feature_shape(x, mean)
    var = jnp.mean(xc * xc, axis=axes)
    return mean.astype(x.dtype), var.astype(x.dtype)


# --- batch norm (eval mode: given statistics) ----------------------------------------------


def _check_bn_inference_args(x, gamma, beta, mean, var, eps):
    op = "batch_norm_inference"
    x = _check_bn_x(op, x)
    gamma, beta, mean, var = (_check_feature_vector(op, name, v, x) for name, v in
                              [("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)])
    return x, gamma, beta, mean, var, _check_eps(op, eps)


def _bn_inference_forward(x, gamma, beta, mean, var, eps):
    """``(y, xc, inv_std, γ)``: the compute-dtype intermediates, shaped to broadcast."""
    out_dtype = jnp.result_type(x, gamma, beta, mean, var)
    cdt = _compute_dtype(x, gamma, beta, mean, var)

    def f(v):
        return _as_feature_shape(x, v.astype(cdt))

    xc = x.astype(cdt) - f(mean)
    inv_std = 1.0 / jnp.sqrt(f(var) + eps)
    y = f(gamma) * (xc * inv_std) + f(beta)
    return y.astype(out_dtype), xc, inv_std, f(gamma)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _batch_norm_inference(x, gamma, beta, mean, var, eps: float):
    return _bn_inference_forward(x, gamma, beta, mean, var, eps)[0]


def _batch_norm_inference_fwd(x, gamma, beta, mean, var, eps):
    y, xc, inv_std, g_ = _bn_inference_forward(x, gamma, beta, mean, var, eps)
    return y, (x, gamma, beta, mean, var, xc, inv_std, g_)


def _batch_norm_inference_bwd(eps, res, g):
    x, gamma, beta, mean, var, xc, inv_std, gam = res
    axes = _stat_axes(x)

    def total(a, like):
        return jnp.sum(a, axis=axes).reshape(like.shape).astype(like.dtype)

    g = g.astype(xc.dtype)
    dxc = g * gam * inv_std                      # ∂y/∂x = γ/√(var + eps)
    return (dxc.astype(x.dtype),
            total(g * xc * inv_std, gamma),      # ∂y/∂γ = xn
            total(g, beta),                      # ∂y/∂β = 1
            total(-dxc, mean),                   # ∂y/∂mean = −γ/√(var + eps)
            total(-0.5 * dxc * xc * inv_std * inv_std, var))  # ∂y/∂var = −½γ·xc·(var+eps)^−³ᐟ²


_batch_norm_inference.defvjp(_batch_norm_inference_fwd, _batch_norm_inference_bwd)


def batch_norm_inference(x: jax.Array, gamma: jax.Array, beta: jax.Array, mean: jax.Array,
                         var: jax.Array, *, eps: float = 1e-5) -> jax.Array:
    """Batch normalisation in eval mode: given (running) statistics, hand-derived rule.

    Forward: ``y = γ·(x − mean)/√(var + eps) + β``, per feature, the same shapes and axes as
    :func:`batch_norm` (``mean`` and ``var`` are ``(D,)`` / ``(C,)``, e.g. the layer's running
    averages of :func:`batch_norm_statistics`). An affine map of ``x`` per feature, so any
    batch size works, ``N = 1`` included.

    Backward, with ``s = 1/√(var + eps)`` and ``xn = (x − mean)·s``, sums over the normalised
    axes: ``dx = g·γ·s``, ``dγ = Σ g·xn``, ``dβ = Σ g``, ``dmean = −Σ g·γ·s``,
    ``dvar = −½ Σ g·γ·(x − mean)·s³``.

    Args:
      x: ``(N, D)`` or ``(N, C, H, W)`` floating array.
      gamma, beta, mean, var: ``(D,)`` or ``(C,)`` floating arrays.
      eps: Python float ``≥ 0`` added to ``var``.

    >>> import jax.numpy as jnp
    >>> one = jnp.ones(1)
    >>> batch_norm_inference(jnp.array([[3.0]]), one, one, one, 4 * one, eps=0.0).tolist()
    [[2.0]]
    """
    args = _check_bn_inference_args(x, gamma, beta, mean, var, eps)
    return _batch_norm_inference(*args)


def batch_norm_inference_reference(x: jax.Array, gamma: jax.Array, beta: jax.Array,
                                   mean: jax.Array, var: jax.Array, *,
                                   eps: float = 1e-5) -> jax.Array:
    """The same formula in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    args = _check_bn_inference_args(x, gamma, beta, mean, var, eps)
    return _bn_inference_forward(*args)[0]
