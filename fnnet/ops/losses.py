"""Softmax and the losses: softmax cross-entropy, the book's cross-entropy, mean squared error.

Conventions shared by every loss here:

* the batch axis is axis 0 and the loss is the **batch mean**, a scalar of the input's dtype;
* class labels are either integer class indices, shape ``(N,)`` (their cotangent is ``None``:
  they are not differentiable), or float one-hot / soft labels, shape ``(N, C)`` (their
  cotangent is returned);
* half-precision inputs (bfloat16, float16) are computed in float32 inside and cast back.

Integer labels outside ``[0, C)``: outside ``jit`` (values known) they raise ``ValueError``;
under ``jit`` they cannot raise, so their rows make the loss and its gradient NaN — loud,
never a silently wrong number.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array, check_ndim, check_same_shape, concrete_values

# The book's guard against log(0) in cross_entropy_error.
BOOK_EPSILON = 1e-7


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for half precision, else the dtype itself."""
    return jnp.promote_types(dtype, jnp.float32)


def _check_labels(op: str, scores_name: str, scores: jax.Array, labels: object) -> jax.Array:
    """Check labels against ``(N, C)`` scores: int ``(N,)`` in ``[0, C)`` or float ``(N, C)``."""
    labels = jnp.asarray(labels)
    n, c = scores.shape
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.shape != (n,):
            raise ValueError(
                f"{op}: integer labels must be class indices of shape (N,) = ({n},); got shape "
                f"{tuple(labels.shape)} (pass one-hot or soft labels as a float array of "
                f"shape (N, C) = ({n}, {c}))"
            )
        values = concrete_values(labels)
        if values is not None and values.size and (values.min() < 0 or values.max() >= c):
            raise ValueError(
                f"{op}: integer labels must lie in [0, C) = [0, {c}) for {scores_name} with "
                f"C = {c} classes; got values in [{values.min()}, {values.max()}]"
            )
    elif jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != (n, c):
            raise ValueError(
                f"{op}: float (one-hot or soft) labels must have the shape of {scores_name}, "
                f"(N, C) = ({n}, {c}); got {tuple(labels.shape)}"
            )
    else:
        raise TypeError(
            f"{op}: labels must be integer class indices (N,) or float one-hot/soft labels "
            f"(N, C); got dtype {labels.dtype}"
        )
    return labels


def _check_scores(op: str, name: str, scores: object) -> jax.Array:
    scores = as_float_array(op, name, scores)
    check_ndim(op, name, scores, 2, "(batch N, classes C)")
    if scores.shape[1] < 2:
        raise ValueError(f"{op}: {name} needs C >= 2 classes; got shape {tuple(scores.shape)}")
    return scores


def _is_int(labels: jax.Array) -> bool:
    return jnp.issubdtype(labels.dtype, jnp.integer)


def _pick(rows: jax.Array, labels: jax.Array) -> jax.Array:
    """``rows[n, labels[n]]`` for each n; NaN where a label is outside ``[0, C)``."""
    c = rows.shape[1]
    valid = (labels >= 0) & (labels < c)
    picked = jnp.take_along_axis(rows, jnp.clip(labels, 0, c - 1)[:, None], axis=1)[:, 0]
    # A product, not a where: jax.grad then also turns the invalid rows' gradients into NaN.
    return picked * jnp.where(valid, 1, jnp.nan).astype(rows.dtype)


def _one_hot(labels: jax.Array, c: int, dtype: jnp.dtype) -> jax.Array:
    """One-hot rows ``[labels[n] == k]`` of shape ``(N, C)``; all-zero rows outside ``[0, C)``."""
    return (labels[:, None] == jnp.arange(c)).astype(dtype)


def _one_hot_or_nan(labels: jax.Array, c: int, dtype: jnp.dtype) -> jax.Array:
    """One-hot rows of ``labels``; rows of NaN for labels outside ``[0, C)``.

    Not ``_row_scale(…) * _one_hot(…)``: XLA rewrites ``a * convert(pred)`` into
    ``select(pred, a, 0)``, which would turn those NaN rows back into zeros under ``jit``.
    """
    valid = (labels >= 0) & (labels < c)
    return jnp.where(valid[:, None], _one_hot(labels, c, dtype), jnp.nan)


def _row_scale(labels: jax.Array, c: int, scale: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``scale`` per row as a ``(N, 1)`` column; NaN for the rows whose label is outside ``[0, C)``.

    Multiplying a backward rule's ``(N, C)`` result by this column turns the invalid rows into
    NaN. It costs one select per row, where a ``where`` over the whole ``(N, C)`` one-hot cost
    one per entry and, on XLA:CPU, made the softmax-CE backward fusion ~2.5× slower (see
    experiments/PERFORMANCE.md, "The user's own loop").
    """
    valid = (labels >= 0) & (labels < c)
    return jnp.where(valid, scale, jnp.nan).astype(dtype)[:, None]


def _masked_log(logp: jax.Array, soft_labels: jax.Array) -> jax.Array:
    """``logp`` with the ``0·log 0`` entries (label 0 where ``logp = −inf``) set to 0."""
    return jnp.where((soft_labels == 0) & jnp.isneginf(logp), 0, logp)


def _mean_nll(logp: jax.Array, labels: jax.Array) -> jax.Array:
    """``−(1/N) Σₙ Σₖ tₙₖ·logpₙₖ`` for integer or float labels (the shared forward)."""
    if _is_int(labels):
        return -jnp.mean(_pick(logp, labels))
    t = labels.astype(logp.dtype)
    return -jnp.sum(t * _masked_log(logp, t)) / logp.shape[0]


def _check_softmax_arg(x: object) -> jax.Array:
    x = as_float_array("softmax", "x", x)
    if x.ndim < 1:
        raise ValueError("softmax: x must have a class axis (ndim >= 1); got a scalar")
    return x


# --- softmax -------------------------------------------------------------------------------


@jax.custom_vjp
def _softmax(x: jax.Array) -> jax.Array:
    return jax.nn.softmax(x, axis=-1)


def _softmax_fwd(x: jax.Array):
    y = jax.nn.softmax(x, axis=-1)
    return y, y


def _softmax_bwd(y: jax.Array, g: jax.Array):
    return ((y * (g - jnp.sum(g * y, axis=-1, keepdims=True))).astype(y.dtype),)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def softmax(x: jax.Array) -> jax.Array:
    """Softmax over the last axis with the hand-derived backward rule.

    Forward:  ``yᵢ = exp(xᵢ − max x) / Σⱼ exp(xⱼ − max x)`` (row max subtracted: no overflow).

    Backward: ``∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ − yⱼ)``, so ``dxⱼ = Σᵢ gᵢ yᵢ(δᵢⱼ − yⱼ) = yⱼ(gⱼ − Σᵢ gᵢyᵢ)``.

    Args:
      x: floating array ``(..., C)``; each row along the last axis is normalised.
    """
    x = _check_softmax_arg(x)
    return _softmax(x)


def softmax_reference(x: jax.Array) -> jax.Array:
    """``jax.nn.softmax(x, axis=-1)``, differentiated by ``jax.grad``."""
    x = _check_softmax_arg(x)
    return jax.nn.softmax(x, axis=-1)


# --- softmax cross-entropy (Softmax-with-Loss) ---------------------------------------------


@jax.custom_vjp
def _sce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return _sce_fwd(logits, labels)[0]


def _sce_fwd(logits: jax.Array, labels: jax.Array):
    logp = jax.nn.log_softmax(logits.astype(_compute_dtype(logits.dtype)), axis=-1)
    return _mean_nll(logp, labels).astype(logits.dtype), (logp, labels)


def _sce_bwd(res, g: jax.Array):
    logp, labels = res
    n, c = logp.shape
    y = jnp.exp(logp)
    if _is_int(labels):
        dx = _row_scale(labels, c, g / n, logp.dtype) * (y - _one_hot(labels, c, logp.dtype))
        return dx.astype(g.dtype), None
    t = labels.astype(logp.dtype)
    dx = (g / n) * (y * jnp.sum(t, axis=1, keepdims=True) - t)
    dt = -(g / n) * _masked_log(logp, t)
    return dx.astype(g.dtype), dt.astype(labels.dtype)


_sce.defvjp(_sce_fwd, _sce_bwd)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax followed by cross-entropy, batch mean (the book's Softmax-with-Loss layer).

    Forward:  ``L = −(1/N) Σₙ Σₖ tₙₖ · log softmax(x)ₙₖ``, with ``log softmax`` computed as
    ``x − logsumexp(x)`` (stable for logits of any size; ``0·log 0`` is taken as 0, so a
    ``−inf`` logit that is not a label is fine).

    Backward: ``∂L/∂xₙⱼ = (1/N)(yₙⱼ Σₖ tₙₖ − tₙⱼ)`` with ``y = softmax(x)`` — for one-hot or
    probability rows (``Σₖ tₙₖ = 1``) this is the book's ``dx = (y − t)/N``, times ``g``.
    Float labels also get their cotangent ``dt = −g·log softmax(x)/N``; integer labels get
    ``None``.

    Args:
      logits: ``(N, C)`` floating array, ``C ≥ 2``.
      labels: integer class indices ``(N,)`` in ``[0, C)``, or float one-hot / soft labels
        ``(N, C)``.

    Returns:
      The scalar batch-mean loss, dtype of ``logits``.

    >>> import jax.numpy as jnp
    >>> round(float(softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)
    1.3863
    """
    logits = _check_scores("softmax_cross_entropy", "logits", logits)
    labels = _check_labels("softmax_cross_entropy", "logits", logits, labels)
    return _sce(logits, labels)


def softmax_cross_entropy_reference(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The same loss in plain ``jax.numpy`` (``jax.nn.log_softmax``); ``jax.grad`` does the rest."""
    logits = _check_scores("softmax_cross_entropy", "logits", logits)
    labels = _check_labels("softmax_cross_entropy", "logits", logits, labels)
    logp = jax.nn.log_softmax(logits.astype(_compute_dtype(logits.dtype)), axis=-1)
    return _mean_nll(logp, labels).astype(logits.dtype)


# --- the book's cross_entropy_error (from probabilities) -----------------------------------


def _book_ce(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``−(1/N) Σ t·log(y + 1e-7)`` in the compute dtype."""
    log_y = jnp.log(probs.astype(_compute_dtype(probs.dtype)) + BOOK_EPSILON)
    if _is_int(labels):
        return -jnp.mean(_pick(log_y, labels))
    return -jnp.sum(labels.astype(log_y.dtype) * log_y) / probs.shape[0]


@jax.custom_vjp
def _cee(probs: jax.Array, labels: jax.Array) -> jax.Array:
    return _book_ce(probs, labels).astype(probs.dtype)


def _cee_fwd(probs: jax.Array, labels: jax.Array):
    return _cee(probs, labels), (probs, labels)


def _cee_bwd(res, g: jax.Array):
    probs, labels = res
    n, c = probs.shape
    y = probs.astype(_compute_dtype(probs.dtype)) + BOOK_EPSILON
    if _is_int(labels):
        dy = -(g / n) * _one_hot_or_nan(labels, c, y.dtype) / y
        return dy.astype(probs.dtype), None
    dy = -(g / n) * labels.astype(y.dtype) / y
    dt = -(g / n) * jnp.log(y)
    return dy.astype(probs.dtype), dt.astype(labels.dtype)


_cee.defvjp(_cee_fwd, _cee_bwd)


def cross_entropy_error(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """The book's cross-entropy from probabilities, kept for compatibility.

    Forward:  ``L = −(1/N) Σₙ Σₖ tₙₖ · log(yₙₖ + 1e-7)``.

    Backward: ``∂L/∂yₙₖ = −tₙₖ / (N·(yₙₖ + 1e-7))``; float labels get
    ``dt = −g·log(y + 1e-7)/N``.

    Prefer :func:`softmax_cross_entropy` on logits: the ``+ 1e-7`` caps ``−log y`` at about
    16.1, so once a true-class probability falls below ~1e-7 the loss saturates and the
    gradient reaching the logits through a softmax is no longer ``(y − t)/N``.

    Args:
      probs: ``(N, C)`` probabilities (e.g. a softmax output).
      labels: integer class indices ``(N,)`` or float one-hot / soft labels ``(N, C)``.
    """
    probs = _check_scores("cross_entropy_error", "probs", probs)
    labels = _check_labels("cross_entropy_error", "probs", probs, labels)
    return _cee(probs, labels)


def cross_entropy_error_reference(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """The book's formula in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    probs = _check_scores("cross_entropy_error", "probs", probs)
    labels = _check_labels("cross_entropy_error", "probs", probs, labels)
    return _book_ce(probs, labels).astype(probs.dtype)


# --- identity + mean squared error ---------------------------------------------------------


def _check_mse_args(y: object, t: object) -> tuple[jax.Array, jax.Array]:
    y = as_float_array("mean_squared_error", "y", y)
    t = as_float_array("mean_squared_error", "t", t)
    if y.ndim < 1:
        raise ValueError("mean_squared_error: y must have a batch axis (ndim >= 1); got a scalar")
    check_same_shape("mean_squared_error", "y", y, "t", t)
    return y, t


def _half_mean_sq(y: jax.Array, t: jax.Array) -> jax.Array:
    cdt = _compute_dtype(y.dtype)
    diff = y.astype(cdt) - t.astype(cdt)
    return (jnp.sum(diff * diff) / (2 * y.shape[0])).astype(y.dtype)


@jax.custom_vjp
def _mse(y: jax.Array, t: jax.Array) -> jax.Array:
    return _half_mean_sq(y, t)


def _mse_fwd(y: jax.Array, t: jax.Array):
    return _half_mean_sq(y, t), (y, t)


def _mse_bwd(res, g: jax.Array):
    y, t = res
    cdt = _compute_dtype(y.dtype)
    dy = (g.astype(cdt) / y.shape[0]) * (y.astype(cdt) - t.astype(cdt))
    return dy.astype(y.dtype), (-dy).astype(t.dtype)


_mse.defvjp(_mse_fwd, _mse_bwd)


def mean_squared_error(y: jax.Array, t: jax.Array) -> jax.Array:
    """Identity output with the mean squared error loss, batch mean.

    Forward:  ``L = (1/2N) Σ (y − t)²`` over every entry, ``N = y.shape[0]``.

    Backward: ``∂L/∂y = (y − t)/N``, so ``dy = g·(y − t)/N`` and ``dt = −dy``.

    Args:
      y: floating array ``(N, ...)``, the network's (identity) output.
      t: floating targets of exactly the same shape (no broadcasting).
    """
    y, t = _check_mse_args(y, t)
    return _mse(y, t)


def mean_squared_error_reference(y: jax.Array, t: jax.Array) -> jax.Array:
    """The same loss in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    y, t = _check_mse_args(y, t)
    return _half_mean_sq(y, t)
