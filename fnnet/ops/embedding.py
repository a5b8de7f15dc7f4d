"""Word vectors (the sequel's chapters 3–4): embedding, embedding_dot, sigmoid cross-entropy.

* :func:`embedding` — look rows of a table up by integer index (the Embedding layer);
* :func:`embedding_dot` — the dot product of a hidden vector with one looked-up row per
  example (negative sampling's EmbeddingDot layer);
* :func:`sigmoid_cross_entropy` — binary cross-entropy from logits, mean over every entry
  (the SigmoidWithLoss layer).

Indices must lie in ``[0, V)`` for a table of ``V`` rows (no wrap-around of negative
indices, unlike NumPy). Outside ``jit`` (values known) an index out of range raises
``ValueError``; under ``jit`` it cannot raise, so its looked-up row is NaN — loud, never a
silently wrong row. Labels of :func:`sigmoid_cross_entropy` outside ``{0, 1}`` behave the same
way. Integer arguments are not differentiated: their cotangent is ``None``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array, as_int_array, check_ndim, concrete_values

# --- shared checks and helpers -------------------------------------------------------------


def _check_table(op: str, W: object) -> jax.Array:
    W = as_float_array(op, "W", W)
    check_ndim(op, "W", W, 2, "(vocabulary size V, vector size D)")
    if W.shape[0] < 1:
        raise ValueError(f"{op}: W needs at least one row (V >= 1); got shape {tuple(W.shape)}")
    return W


def _check_indices(op: str, idx: object, V: int) -> jax.Array:
    """``idx`` as an integer array; with known values, each in ``[0, V)`` or ``ValueError``."""
    idx = as_int_array(op, "idx", idx)
    values = concrete_values(idx)
    if values is not None and values.size and (values.min() < 0 or values.max() >= V):
        raise ValueError(f"{op}: idx must lie in [0, V) = [0, {V}) for W with V = {V} rows; "
                         f"got values in [{values.min()}, {values.max()}]")
    return idx


def _valid(idx: jax.Array, V: int) -> jax.Array:
    return (idx >= 0) & (idx < V)


def _lookup(W: jax.Array, idx: jax.Array) -> jax.Array:
    """``W[idx]`` of shape ``idx.shape + (D,)``; NaN rows where ``idx`` is outside ``[0, V)``."""
    V = W.shape[0]
    rows = W[jnp.clip(idx, 0, V - 1)]
    return jnp.where(_valid(idx, V)[..., None], rows, jnp.nan).astype(W.dtype)


def _scatter_add(W: jax.Array, idx: jax.Array, rows: jax.Array) -> jax.Array:
    """``dW`` with ``dW[v] = Σ_{positions p: idx[p] = v} rows[p]``: every repeat accumulates.

    ``.at[].add`` sums the updates of repeated indices; NumPy's ``dW[idx] = rows`` would keep
    only one of them. Out-of-range indices are sent to row ``V`` and dropped (``mode="drop"``:
    a negative index would otherwise wrap around onto the last rows).
    """
    V = W.shape[0]
    safe = jnp.where(_valid(idx, V), idx, V)
    return jnp.zeros(W.shape, rows.dtype).at[safe].add(rows, mode="drop").astype(W.dtype)


# --- embedding -----------------------------------------------------------------------------


@jax.custom_vjp
def _embedding(W: jax.Array, idx: jax.Array) -> jax.Array:
    return _lookup(W, idx)


def _embedding_fwd(W: jax.Array, idx: jax.Array):
    return _lookup(W, idx), (W, idx)


def _embedding_bwd(res, g: jax.Array):
    W, idx = res
    return _scatter_add(W, idx, g), None


_embedding.defvjp(_embedding_fwd, _embedding_bwd)


def embedding(W: jax.Array, idx: jax.Array) -> jax.Array:
    """Embedding lookup with the hand-derived backward rule (the sequel's Embedding layer).

    Forward:  ``y[p] = W[idx[p]]`` for every position ``p`` of ``idx``; ``y`` has shape
    ``idx.shape + (D,)``.

    Backward: ``∂y[p]ᵢ/∂W[v]ⱼ = [idx[p] = v]·δᵢⱼ``, so
    ``dW[v] = Σ_{p: idx[p] = v} g[p]`` — a scatter-**add**. A word that appears twice in the
    batch receives both cotangents; the book's first attempt ``dW[idx] = dout`` keeps only
    one of them (the book fixes it with ``np.add.at``). ``idx`` is not differentiable: its
    cotangent is ``None``.

    Args:
      W: ``(V, D)`` floating array, one row per word.
      idx: integer array of any shape (a scalar too), entries in ``[0, V)``.

    Returns:
      ``idx.shape + (D,)`` array, dtype of ``W``.

    >>> import jax, jax.numpy as jnp
    >>> W = jnp.zeros((3, 2))
    >>> jax.grad(lambda w: embedding(w, jnp.array([2, 0, 2])).sum())(W).tolist()
    [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]
    """
    W = _check_table("embedding", W)
    idx = _check_indices("embedding", idx, W.shape[0])
    return _embedding(W, idx)


def embedding_reference(W: jax.Array, idx: jax.Array) -> jax.Array:
    """``W[idx]`` in plain ``jax.numpy`` (NaN rows out of range); differentiated by ``jax.grad``."""
    W = _check_table("embedding", W)
    idx = _check_indices("embedding", idx, W.shape[0])
    return _lookup(W, idx)


# --- embedding_dot -------------------------------------------------------------------------


def _check_embedding_dot_args(h: object, W: object, idx: object):
    op = "embedding_dot"
    h = as_float_array(op, "h", h)
    check_ndim(op, "h", h, 2, "(batch N, vector size H)")
    W = _check_table(op, W)
    if W.shape[1] != h.shape[1]:
        raise ValueError(f"{op}: W.shape[1] must equal h.shape[1] (the vector size H); "
                         f"got h.shape={tuple(h.shape)}, W.shape={tuple(W.shape)}")
    idx = _check_indices(op, idx, W.shape[0])
    if idx.shape != (h.shape[0],):
        raise ValueError(f"{op}: idx must have shape (N,) = ({h.shape[0]},), one index per row "
                         f"of h; got {tuple(idx.shape)}")
    return h, W, idx


def _dot_rows(h: jax.Array, rows: jax.Array) -> jax.Array:
    return jnp.sum(h * rows, axis=-1)


@jax.custom_vjp
def _embedding_dot(h: jax.Array, W: jax.Array, idx: jax.Array) -> jax.Array:
    return _dot_rows(h, _lookup(W, idx))


def _embedding_dot_fwd(h: jax.Array, W: jax.Array, idx: jax.Array):
    rows = _lookup(W, idx)
    return _dot_rows(h, rows), (h, W, idx, rows)


def _embedding_dot_bwd(res, g: jax.Array):
    h, W, idx, rows = res
    g = g[:, None]
    dh = (g * rows).astype(h.dtype)
    dW = _scatter_add(W, idx, g * h)
    return dh, dW, None


_embedding_dot.defvjp(_embedding_dot_fwd, _embedding_dot_bwd)


def embedding_dot(h: jax.Array, W: jax.Array, idx: jax.Array) -> jax.Array:
    """One embedding row per example, dotted with ``h`` (the sequel's EmbeddingDot layer).

    Forward:  ``w = W[idx]`` (``(N, H)``) and ``yₙ = Σⱼ hₙⱼ·wₙⱼ``.

    Backward: the lookup, then a Mul and a Sum node: ``∂yₙ/∂hₙⱼ = wₙⱼ`` and
    ``∂yₙ/∂wₙⱼ = hₙⱼ``, so ``dh = g[:, None]·W[idx]``, ``dw = g[:, None]·h`` and ``dW`` is
    ``dw`` scatter-**added** at ``idx`` (repeated indices accumulate, as in :func:`embedding`).
    ``idx`` gets ``None``.

    Args:
      h: ``(N, H)`` floating array.
      W: ``(V, H)`` floating array (the output-side word vectors).
      idx: ``(N,)`` integer array, entries in ``[0, V)``.

    Returns:
      ``(N,)`` array of scores, dtype the promotion of ``h`` and ``W``.
    """
    h, W, idx = _check_embedding_dot_args(h, W, idx)
    return _embedding_dot(h, W, idx)


def embedding_dot_reference(h: jax.Array, W: jax.Array, idx: jax.Array) -> jax.Array:
    """``sum(h * W[idx], axis=-1)`` in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    h, W, idx = _check_embedding_dot_args(h, W, idx)
    return _dot_rows(h, _lookup(W, idx))


# --- sigmoid cross-entropy (SigmoidWithLoss) -----------------------------------------------


def _check_sigmoid_ce_args(x: object, t: object) -> tuple[jax.Array, jax.Array]:
    op = "sigmoid_cross_entropy"
    x = as_float_array(op, "x", x)
    if x.size == 0:
        raise ValueError(f"{op}: x must not be empty (the loss is a mean); got shape "
                         f"{tuple(x.shape)}")
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(f"{op}: t must hold integer 0/1 labels (e.g. int32); got dtype "
                        f"{t.dtype}")
    if t.shape != x.shape:
        raise ValueError(f"{op}: t must have the shape of x, {tuple(x.shape)}; got "
                         f"{tuple(t.shape)}")
    values = concrete_values(t)
    if values is not None and ((values != 0) & (values != 1)).any():
        raise ValueError(f"{op}: t must hold labels 0 or 1; got values in "
                         f"[{values.min()}, {values.max()}]")
    return x, t


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for half precision, else the dtype itself."""
    return jnp.promote_types(dtype, jnp.float32)


def _labels_or_nan(t: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``t`` as floats; NaN where a label is not 0 or 1 (only reachable under ``jit``)."""
    return jnp.where((t == 0) | (t == 1), t, jnp.nan).astype(dtype)


@jax.custom_vjp
def _sigmoid_ce(x: jax.Array, t: jax.Array) -> jax.Array:
    return _sigmoid_ce_fwd(x, t)[0]


def _sigmoid_ce_fwd(x: jax.Array, t: jax.Array):
    xc = x.astype(_compute_dtype(x.dtype))
    tc = _labels_or_nan(t, xc.dtype)
    # −t·log σ(x) − (1 − t)·log(1 − σ(x)) = max(x, 0) − t·x + log(1 + e^(−|x|)): no overflow.
    losses = jnp.maximum(xc, 0) - tc * xc + jnp.log1p(jnp.exp(-jnp.abs(xc)))
    return jnp.mean(losses).astype(x.dtype), (xc, tc)


def _sigmoid_ce_bwd(res, g: jax.Array):
    xc, tc = res
    dx = (g.astype(xc.dtype) / xc.size) * (jax.nn.sigmoid(xc) - tc)
    return dx.astype(g.dtype), None  # g has the dtype of the loss, which is x's


_sigmoid_ce.defvjp(_sigmoid_ce_fwd, _sigmoid_ce_bwd)


def sigmoid_cross_entropy(x: jax.Array, t: jax.Array) -> jax.Array:
    """Sigmoid followed by binary cross-entropy, mean over every entry (SigmoidWithLoss).

    Forward:  with ``y = σ(x)``, ``L = −(1/M) Σ [t·log y + (1 − t)·log(1 − y)]`` over all
    ``M = x.size`` entries, computed as ``max(x, 0) − t·x + log(1 + e^(−|x|))``: finite and
    exact for logits of any size (``|x| = 1e4`` included), where ``log σ(x)`` would overflow.

    Backward: ``∂/∂x [log(1 + eˣ) − t·x] = σ(x) − t``, so ``dx = g·(σ(x) − t)/M``. The labels
    are not differentiable: their cotangent is ``None``.

    Args:
      x: floating logits, any non-empty shape (``(N,)`` in the book).
      t: integer labels 0 or 1, the shape of ``x``.

    Returns:
      The scalar mean loss, dtype of ``x`` (half precision is computed in float32).

    >>> import jax.numpy as jnp
    >>> round(float(sigmoid_cross_entropy(jnp.zeros(4), jnp.array([0, 1, 1, 0]))), 4)
    0.6931
    """
    x, t = _check_sigmoid_ce_args(x, t)
    return _sigmoid_ce(x, t)


def sigmoid_cross_entropy_reference(x: jax.Array, t: jax.Array) -> jax.Array:
    """``mean(log(1 + eˣ) − t·x)`` with ``jnp.logaddexp``; differentiated by ``jax.grad``."""
    x, t = _check_sigmoid_ce_args(x, t)
    xc = x.astype(_compute_dtype(x.dtype))
    return jnp.mean(jnp.logaddexp(0, xc) - _labels_or_nan(t, xc.dtype) * xc).astype(x.dtype)
