"""The sequel's non-recurrent time layers: time_affine and time_softmax_cross_entropy.

Both act on every time step of a batch-major sequence ``(N, T, ·)`` at once, as the book's
TimeAffine and TimeSoftmaxWithLoss do by folding ``N·T`` into one batch axis.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array, as_int_array, check_ndim, concrete_values, static_int
from fnnet.ops import linear

# --- time_affine ---------------------------------------------------------------------------


def _check_time_affine_args(xs: object, W: object, b: object):
    xs = as_float_array("time_affine", "xs", xs)
    check_ndim("time_affine", "xs", xs, 3, "(batch N, time T, input size D)")
    W = as_float_array("time_affine", "W", W)
    check_ndim("time_affine", "W", W, 2, "(input size D, output size M)")
    b = as_float_array("time_affine", "b", b)
    if xs.shape[2] != W.shape[0]:
        raise ValueError(f"time_affine: xs.shape[2] must equal W.shape[0] (the input size D); "
                         f"got xs.shape={tuple(xs.shape)}, W.shape={tuple(W.shape)}")
    if b.shape != (W.shape[1],):
        raise ValueError(f"time_affine: b must have shape (W.shape[1],) = ({W.shape[1]},); "
                         f"got {tuple(b.shape)}")
    return xs, W, b


def time_affine(xs: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """The same affine map at every time step, with the hand-derived rule (TimeAffine).

    Forward:  ``ys[:, t] = xs[:, t]·W + b``; as the book does, the ``N·T`` rows are one
    batch: with ``X = xs`` reshaped to ``(N·T, D)``, ``Y = X·W + b``.

    Backward: the rule of :func:`fnnet.ops.linear.affine` on those rows (it is that
    ``custom_vjp``): ``dxs = g·Wᵀ``, ``dW = Xᵀ·G``, ``db = Σ_{n,t} g`` — the parameters are
    shared by every step, so their gradients sum over time as well as over the batch.

    Args:
      xs: ``(N, T, D)``; W: ``(D, M)``; b: ``(M,)``.

    Returns:
      ``(N, T, M)``.
    """
    return linear.affine(*_check_time_affine_args(xs, W, b))


def time_affine_reference(xs: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """``xs @ W + b`` in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    xs, W, b = _check_time_affine_args(xs, W, b)
    return xs @ W + b


# --- time_softmax_cross_entropy ------------------------------------------------------------


def _check_time_sce_args(xs: object, ts: object, ignore_label: object):
    op = "time_softmax_cross_entropy"
    xs = as_float_array(op, "xs", xs)
    check_ndim(op, "xs", xs, 3, "(batch N, time T, classes V)")
    if xs.shape[2] < 2:
        raise ValueError(f"{op}: xs needs V >= 2 classes; got shape {tuple(xs.shape)}")
    ts = as_int_array(op, "ts", ts)
    if ts.shape != xs.shape[:2]:
        raise ValueError(f"{op}: ts must hold one class index per position, shape (N, T) = "
                         f"{tuple(xs.shape[:2])}; got {tuple(ts.shape)}")
    ignore_label = static_int(op, "ignore_label", ignore_label)
    values = concrete_values(ts)
    if values is not None:
        kept = values[values != ignore_label]
        V = xs.shape[2]
        if kept.size and (kept.min() < 0 or kept.max() >= V):
            raise ValueError(f"{op}: ts must lie in [0, V) = [0, {V}) or equal ignore_label = "
                             f"{ignore_label}; got other values in [{kept.min()}, {kept.max()}]")
    return xs, ts, ignore_label


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def _weights(ts: jax.Array, V: int, ignore_label: int, dtype: jnp.dtype) -> jax.Array:
    """Per position ``1/count`` if its label counts, ``0`` if ignored, NaN if out of
    ``[0, V)`` (only reachable under ``jit``); ``count`` = positions not ignored, at least 1."""
    kept = ts != ignore_label
    count = jnp.maximum(jnp.sum(kept), 1).astype(dtype)
    valid = (ts >= 0) & (ts < V)
    return jnp.where(kept, jnp.where(valid, 1 / count, jnp.nan), 0).astype(dtype)


def _picked(logp: jax.Array, ts: jax.Array) -> jax.Array:
    V = logp.shape[2]
    return jnp.take_along_axis(logp, jnp.clip(ts, 0, V - 1)[..., None], axis=2)[..., 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _time_sce(ignore_label: int, xs: jax.Array, ts: jax.Array) -> jax.Array:
    return _time_sce_fwd(ignore_label, xs, ts)[0]


def _time_sce_fwd(ignore_label, xs, ts):
    logp = jax.nn.log_softmax(xs.astype(_compute_dtype(xs.dtype)), axis=-1)
    w = _weights(ts, xs.shape[2], ignore_label, logp.dtype)
    # Ignored positions are selected out (w = 0), so a −inf log-probability there adds no NaN.
    loss = -jnp.sum(jnp.where(w == 0, 0, w * _picked(logp, ts)))
    return loss.astype(xs.dtype), (logp, ts, w)


def _time_sce_bwd(ignore_label, res, g):
    logp, ts, w = res
    N, T, V = logp.shape
    scale = g.astype(logp.dtype) * w  # (N, T): g/|K| where counted, 0 where ignored
    # scale·(softmax − onehot): the −scale goes in by a scatter at the labels. A one-hot
    # compare over (N, T, V) instead is an extra (N, T, V) pass that XLA:CPU materialises:
    # at V = 10 000 it made this rule ~1.5× slower than autodiff's (which scatters too).
    dxs = scale[..., None] * jnp.exp(logp)
    dxs = dxs.at[jnp.arange(N)[:, None], jnp.arange(T), jnp.clip(ts, 0, V - 1)].add(-scale)
    return dxs.astype(g.dtype), None


_time_sce.defvjp(_time_sce_fwd, _time_sce_bwd)


def time_softmax_cross_entropy(xs: jax.Array, ts: jax.Array, *,
                               ignore_label: int = -1) -> jax.Array:
    """Softmax cross-entropy at every position, mean over the labelled ones
    (TimeSoftmaxWithLoss).

    Forward:  with ``K = {(n, t): ts[n, t] ≠ ignore_label}`` the positions that count,
    ``L = −(1/|K|) Σ_{(n,t)∈K} log softmax(xs[n, t])[ts[n, t]]`` (``log softmax`` as
    ``x − logsumexp x``: stable). Ignored positions (padding) neither add to the sum nor to
    the count. If every position is ignored, ``L = 0`` and its gradient is 0 (``|K|`` is
    taken as 1): no NaN, where the book's ``loss /= mask.sum()`` divides by zero.

    Backward: the softmax-CE rule per counted position, over the same ``|K|``:
    ``dxs[n, t] = g·(softmax(xs[n, t]) − onehot(ts[n, t]))/|K|`` for ``(n, t) ∈ K`` and 0 at
    ignored positions. ``ts`` gets ``None``.

    Args:
      xs: ``(N, T, V)`` floating logits, ``V >= 2``.
      ts: ``(N, T)`` integer labels in ``[0, V)``, or ``ignore_label``.
      ignore_label: the label of positions to leave out (keyword-only, a static int).

    Returns:
      The scalar loss, dtype of ``xs`` (half precision is computed in float32).

    >>> import jax.numpy as jnp
    >>> ts = jnp.array([[0, -1, 1]])
    >>> round(float(time_softmax_cross_entropy(jnp.zeros((1, 3, 4)), ts)), 4)  # log 4
    1.3863
    """
    xs, ts, ignore_label = _check_time_sce_args(xs, ts, ignore_label)
    return _time_sce(ignore_label, xs, ts)


def time_softmax_cross_entropy_reference(xs: jax.Array, ts: jax.Array, *,
                                         ignore_label: int = -1) -> jax.Array:
    """The same masked mean in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    xs, ts, ignore_label = _check_time_sce_args(xs, ts, ignore_label)
    logp = jax.nn.log_softmax(xs.astype(_compute_dtype(xs.dtype)), axis=-1)
    kept = ts != ignore_label
    count = jnp.maximum(jnp.sum(kept), 1)
    out_of_range = kept & ((ts < 0) | (ts >= xs.shape[2]))
    # A product, not a where: jax.grad then also turns those positions' gradients into NaN.
    picked = _picked(logp, ts) * jnp.where(out_of_range, jnp.nan, 1).astype(logp.dtype)
    return (-jnp.sum(jnp.where(kept, picked, 0)) / count).astype(xs.dtype)
