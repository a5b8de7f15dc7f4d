"""The sequel's non-recurrent time layers: time_affine and time_softmax_cross_entropy, and
the two fused as a language model's output layer and loss.

All act on every time step of a batch-major sequence ``(N, T, ·)`` at once, as the book's
TimeAffine and TimeSoftmaxWithLoss do by folding ``N·T`` into one batch axis.
:func:`time_affine_softmax_cross_entropy` is the pair as one op whose hand rule works
through the ``(N·T, V)`` logits a block of rows at a time, recomputing them in the backward
pass instead of keeping them (the rule autodiff cannot choose).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array, as_int_array, check_ndim, concrete_values, static_int
from fnnet.ops import linear

# --- time_affine ---------------------------------------------------------------------------


def _check_time_affine_args(xs: object, W: object, b: object, op: str = "time_affine"):
    xs = as_float_array(op, "xs", xs)
    check_ndim(op, "xs", xs, 3, "(batch N, time T, input size D)")
    W = as_float_array(op, "W", W)
    check_ndim(op, "W", W, 2, "(input size D, output size M)")
    b = as_float_array(op, "b", b)
    if xs.shape[2] != W.shape[0]:
        raise ValueError(f"{op}: xs.shape[2] must equal W.shape[0] (the input size D); "
                         f"got xs.shape={tuple(xs.shape)}, W.shape={tuple(W.shape)}")
    if b.shape != (W.shape[1],):
        raise ValueError(f"{op}: b must have shape (W.shape[1],) = ({W.shape[1]},); "
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


def _check_labels(op: str, ts: object, shape: tuple[int, int], V: int,
                  ignore_label: object) -> tuple[jax.Array, int]:
    """``ts`` as ``(N, T)`` integer labels in ``[0, V)`` or ``ignore_label`` (values checked
    when they are known, i.e. outside ``jit``)."""
    ts = as_int_array(op, "ts", ts)
    if ts.shape != shape:
        raise ValueError(f"{op}: ts must hold one class index per position, shape (N, T) = "
                         f"{shape}; got {tuple(ts.shape)}")
    ignore_label = static_int(op, "ignore_label", ignore_label)
    values = concrete_values(ts)
    if values is not None:
        kept = values[values != ignore_label]
        if kept.size and (kept.min() < 0 or kept.max() >= V):
            raise ValueError(f"{op}: ts must lie in [0, V) = [0, {V}) or equal ignore_label = "
                             f"{ignore_label}; got other values in [{kept.min()}, {kept.max()}]")
    return ts, ignore_label


def _check_time_sce_args(xs: object, ts: object, ignore_label: object):
    op = "time_softmax_cross_entropy"
    xs = as_float_array(op, "xs", xs)
    check_ndim(op, "xs", xs, 3, "(batch N, time T, classes V)")
    if xs.shape[2] < 2:
        raise ValueError(f"{op}: xs needs V >= 2 classes; got shape {tuple(xs.shape)}")
    ts, ignore_label = _check_labels(op, ts, tuple(xs.shape[:2]), xs.shape[2], ignore_label)
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


# --- time_affine_softmax_cross_entropy: the two fused, in row blocks -------------------------

BLOCK_BYTES = 3 * 2**20
"""Bytes of logits per row block of :func:`time_affine_softmax_cross_entropy` on a CPU: a
block's ``(R, V)`` logits stay in the cache from the matmul that makes them to the two that
use them. At the sequel's ch6 shapes (700 rows, V = 10 000), forward + backward on this
project's shared 2-core CPU, against autodiff of the pair in the same run: at load ~7,
blocks of 1.5, 2, 2.5, 3 and 4 MiB were 1.44, 1.40, 1.46, 1.63 and 1.60× faster (3 MiB
105 ms against 169 ms); at load ~10, 0.75, 1.5, 3, 6, 12 MiB and one block of all 700 rows
1.85, 2.08, 1.57, 1.57, 1.20 and 1.00×. 3 MiB is ~78 rows there. Other backends use one
block (all rows): a GPU wants the large matmuls."""


def _block_rows(rows: int, V: int, itemsize: int) -> int:
    if jax.default_backend() != "cpu":
        return rows
    return max(1, min(rows, BLOCK_BYTES // (itemsize * V)))


def _check_fused_args(xs: object, W: object, b: object, ts: object, ignore_label: object):
    op = "time_affine_softmax_cross_entropy"
    xs, W, b = _check_time_affine_args(xs, W, b, op)
    if W.shape[1] < 2:
        raise ValueError(f"{op}: W needs V >= 2 columns (classes); got shape {tuple(W.shape)}")
    ts, ignore_label = _check_labels(op, ts, tuple(xs.shape[:2]), W.shape[1], ignore_label)
    return xs, W, b, ts, ignore_label


def _in_blocks(a: jax.Array, rows: int) -> jax.Array:
    """``(M, …)`` → ``(M/rows, rows, …)``, zero rows appended up to a multiple of ``rows``."""
    pad = -a.shape[0] % rows
    a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
    return a.reshape(-1, rows, *a.shape[1:])


def _fused_parts(xs, W, b, ts, ignore_label):
    """The rows ``X (M, D)``, the weights in the compute dtype, the clipped labels, the
    per-position weights ``w`` (``1/|K|``, 0 if ignored, NaN if out of range), the rows per
    block, and the picked logits ``Z[p, ts_p]``."""
    dtype = _compute_dtype(jnp.result_type(xs, W, b))
    N, T, D = xs.shape
    V = W.shape[1]
    x, Wc, bc = xs.reshape(N * T, D).astype(dtype), W.astype(dtype), b.astype(dtype)
    labels = jnp.clip(ts.reshape(-1), 0, V - 1)
    w = _weights(ts.reshape(-1), V, ignore_label, dtype)
    picked = jnp.sum(x * Wc.T[labels], axis=1) + bc[labels]
    return x, Wc, bc, labels, w, _block_rows(N * T, V, jnp.dtype(dtype).itemsize), picked


def _fused_loss(w, picked, lse, dtype):
    return (-jnp.sum(jnp.where(w == 0, 0, w * (picked - lse)))).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(ignore_label: int, xs, W, b, ts):
    """The loss alone (evaluation): ``ℓ`` block by block, nothing else kept."""
    x, W, b, _, w, rows, picked = _fused_parts(xs, W, b, ts, ignore_label)
    lse = jax.lax.map(lambda x_b: jax.nn.logsumexp(x_b @ W + b, axis=-1),
                      _in_blocks(x, rows)).reshape(-1)[:x.shape[0]]
    return _fused_loss(w, picked, lse, xs.dtype)


def _fused_fwd(ignore_label, xs, W, b, ts):
    """The loss and, in the same pass over each block of logits, its gradient for g = 1:
    the loss is a scalar, so the backward pass only scales it by g."""
    x, W, b, labels, w, rows, picked = _fused_parts(xs, W, b, ts, ignore_label)
    M = x.shape[0]

    def block(carry, inputs):
        dW, db = carry
        x_b, w_b = inputs
        z = x_b @ W + b
        lse_b = jax.nn.logsumexp(z, axis=-1)
        P = jnp.exp(z - lse_b[:, None]) * w_b[:, None]  # softmax/|K| (0 where ignored)
        return (dW + x_b.T @ P, db + jnp.sum(P, axis=0)), (lse_b, P @ W.T)

    (dW, db), (lse, dx) = jax.lax.scan(block, (jnp.zeros_like(W), jnp.zeros_like(b)),
                                       (_in_blocks(x, rows), _in_blocks(w, rows)))
    # The −onehot term, sparse: one column of W (one row of Wᵀ) per position.
    dx = dx.reshape(-1, x.shape[1])[:M] - w[:, None] * W.T[labels]
    dW = dW.at[:, labels].add(-(x * w[:, None]).T)
    db = db.at[labels].add(-w)
    loss = _fused_loss(w, picked, lse.reshape(-1)[:M], xs.dtype)
    return loss, (dx.reshape(xs.shape), dW, db)


def _fused_bwd(ignore_label, res, g):
    dxs, dW, db = res
    g = g.astype(dxs.dtype)
    # the primals share g's dtype (promoted together by the public function)
    return (g * dxs).astype(g.dtype), (g * dW).astype(g.dtype), (g * db).astype(g.dtype), None


_fused.defvjp(_fused_fwd, _fused_bwd)


def time_affine_softmax_cross_entropy(xs: jax.Array, W: jax.Array, b: jax.Array,
                                      ts: jax.Array, *, ignore_label: int = -1) -> jax.Array:
    """:func:`time_affine` followed by :func:`time_softmax_cross_entropy`, as one op whose
    rule never holds the ``(N·T, V)`` logits (a language model's output layer and loss).

    Forward:  with ``X = xs`` as ``(N·T, D)`` rows, ``Z = X·W + b`` and
    ``ℓ = logsumexp(Z)`` per row, ``L = −(1/|K|) Σ_{p∈K} (Z[p, ts_p] − ℓ_p)`` over the
    positions ``K`` whose label is not ``ignore_label`` (as :func:`time_softmax_cross_entropy`).
    ``Z`` is made in blocks of rows (:data:`BLOCK_BYTES` of logits each) and reduced to ``ℓ``
    at once; ``Z[p, ts_p] = X_p·W[:, ts_p] + b[ts_p]`` is a dot product per position.

    Backward: with ``s_p = g/|K|`` for ``p ∈ K`` (0 if ignored) and ``P = s·softmax(Z)``
    per row, ``dZ = P − s·onehot(ts)``, so ``dX = P·Wᵀ − s·W[:, ts]ᵀ``,
    ``dW = Xᵀ·P − Σ_p s_p·X_pᵀ e_{ts_p}`` (a scatter-add into the label columns),
    ``db = Σ_p P_p − Σ_p s_p e_{ts_p}``. Everything but ``g`` is known in the forward pass,
    and the gradient is linear in ``g`` (the loss is a scalar), so the forward pass of a
    differentiated call computes ``dX, dW, db`` for ``g = 1`` block by block, using each
    block's ``P`` while it is in the cache, and the backward pass multiplies them by ``g``.
    The ``−onehot`` part is never materialised; a call that is not differentiated computes
    ``ℓ`` alone. Autodiff of the two ops keeps the whole ``Z`` (or ``log softmax Z``) for the
    backward and passes over it several times; at the sequel's ch6 shapes (V = 10 000) that
    memory traffic, not the arithmetic, is most of the step on a CPU. ``ts`` gets ``None``.

    Args:
      xs: ``(N, T, D)``; W: ``(D, V)``; b: ``(V,)``, ``V >= 2``.
      ts: ``(N, T)`` integer labels in ``[0, V)``, or ``ignore_label``.
      ignore_label: the label of positions to leave out (keyword-only, a static int).

    Returns:
      The scalar loss, dtype of the promoted arguments (half precision computed in float32).

    >>> import jax.numpy as jnp
    >>> xs, W, b = jnp.zeros((1, 3, 2)), jnp.zeros((2, 4)), jnp.zeros(4)
    >>> ts = jnp.array([[0, -1, 1]])
    >>> round(float(time_affine_softmax_cross_entropy(xs, W, b, ts)), 4)  # log 4
    1.3863
    """
    xs, W, b, ts, ignore_label = _check_fused_args(xs, W, b, ts, ignore_label)
    dtype = jnp.result_type(xs, W, b)
    return _fused(ignore_label, xs.astype(dtype), W.astype(dtype), b.astype(dtype), ts)


def time_affine_softmax_cross_entropy_reference(xs: jax.Array, W: jax.Array, b: jax.Array,
                                                ts: jax.Array, *,
                                                ignore_label: int = -1) -> jax.Array:
    """The two references composed: ``time_softmax_cross_entropy_reference(
    time_affine_reference(xs, W, b), ts)``; differentiated by ``jax.grad``."""
    xs, W, b, ts, ignore_label = _check_fused_args(xs, W, b, ts, ignore_label)
    return time_softmax_cross_entropy_reference(time_affine_reference(xs, W, b), ts,
                                                ignore_label=ignore_label)
