"""Recurrent cells (the sequel's chapters 5–6): rnn, lstm and gru, one time step each.

Every cell exists twice, as elsewhere in :mod:`fnnet.ops`: ``<cell>`` is a ``jax.custom_vjp``
with the hand rule, ``<cell>_reference`` plain ``jax.numpy`` differentiated by ``jax.grad``.
The layouts are the book's, batch-major:

* ``x (N, D)``, ``h_prev (N, H)``, ``c_prev (N, H)``;
* ``Wx (D, k·H)``, ``Wh (H, k·H)``, ``b (k·H,)`` with the gate blocks side by side along the
  last axis: ``k = 1`` for :func:`rnn`, ``k = 4`` (blocks **f, g, i, o**) for :func:`lstm`,
  ``k = 3`` (blocks **z, r, h̃**) for :func:`gru`.

The step math lives in small functions (``*_step`` / ``*_step_bwd``) shared with the time
layers of :mod:`fnnet.ops.bptt`, whose backward pass is the same step rule run in a reverse
scan. Arguments of mixed floating dtypes are promoted to one dtype before the rule runs (the
cast's own cotangent brings each gradient back to its argument's dtype).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array, check_ndim

GATES = {"rnn": "", "lstm": "f, g, i, o", "gru": "z, r, h̃"}
BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}

# --- checks --------------------------------------------------------------------------------


def check_recurrent_args(op: str, cell: str, x: object, h: object, Wx: object, Wh: object,
                         b: object, c: object = None, *, time: bool = False) -> tuple:
    """Check and promote the arguments of a cell (``time=False``: ``x (N, D)``, names
    ``x``/``h_prev``/``c_prev``) or a time layer (``time=True``: ``xs (N, T, D)``, names
    ``xs``/``h0``/``c0``). Returns ``(x, h, Wx, Wh, b)`` or ``(x, h, c, Wx, Wh, b)`` when ``c``
    is given, all in their common floating dtype."""
    x_name, h_name, c_name = ("xs", "h0", "c0") if time else ("x", "h_prev", "c_prev")
    x = as_float_array(op, x_name, x)
    h = as_float_array(op, h_name, h)
    Wx = as_float_array(op, "Wx", Wx)
    Wh = as_float_array(op, "Wh", Wh)
    b = as_float_array(op, "b", b)
    if time:
        check_ndim(op, x_name, x, 3, "(batch N, time T, input size D)")
        if x.shape[1] < 1:
            raise ValueError(f"{op}: xs needs at least one time step (T >= 1); got shape "
                             f"{tuple(x.shape)}")
    else:
        check_ndim(op, x_name, x, 2, "(batch N, input size D)")
    check_ndim(op, h_name, h, 2, "(batch N, hidden size H)")
    n, d, hidden = x.shape[0], x.shape[-1], h.shape[1]
    if h.shape[0] != n:
        raise ValueError(f"{op}: {h_name} must have shape (N, H) with N = {x_name}.shape[0] = "
                         f"{n}; got {tuple(h.shape)}")
    k = BLOCKS[cell]
    blocks = f"{k}H" if k > 1 else "H"
    gates = f" (gate blocks {GATES[cell]})" if k > 1 else ""
    for name, array, expected, form in [("Wx", Wx, (d, k * hidden), f"(D, {blocks})"),
                                        ("Wh", Wh, (hidden, k * hidden), f"(H, {blocks})"),
                                        ("b", b, (k * hidden,), f"({blocks},)")]:
        if array.shape != expected:
            raise ValueError(f"{op}: {name} must have shape {form} = {expected}{gates} for "
                             f"D = {d}, H = {hidden}; got {tuple(array.shape)}")
    arrays = (x, h, Wx, Wh, b)
    if c is not None:
        c = as_float_array(op, c_name, c)
        if c.shape != h.shape:
            raise ValueError(f"{op}: {c_name} must have the shape of {h_name}, "
                             f"{tuple(h.shape)}; got {tuple(c.shape)}")
        arrays = (x, h, c, Wx, Wh, b)
    dtype = jnp.result_type(*arrays)
    return tuple(a.astype(dtype) for a in arrays)


def cast_all(grads: tuple, dtype: jnp.dtype) -> tuple:
    """The cotangents cast to the primals' dtype (one dtype: the checks promoted them all)."""
    return tuple(d.astype(dtype) for d in grads)


# --- step math shared with the time layers --------------------------------------------------


def input_grads(x: jax.Array, h_prev: jax.Array, Wx: jax.Array, Wh: jax.Array,
                da: jax.Array) -> tuple[jax.Array, ...]:
    """For ``a = x·Wx + h_prev·Wh + b``: ``(dx, dh_prev, dWx, dWh, db)`` from ``da``."""
    return (da @ Wx.T, da @ Wh.T, x.T @ da, h_prev.T @ da, jnp.sum(da, axis=0))


def rnn_step_bwd(dh: jax.Array, h: jax.Array) -> jax.Array:
    """``da = dh·(1 − h²)``: tanh's derivative at ``h = tanh(a)``."""
    return dh * (1 - h * h)


def lstm_step(a: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, ...]:
    """From ``a (N, 4H)`` (blocks f, g, i, o) and ``c_prev``: ``(h, c, gates, tanh_c)`` with
    ``gates = [σ(a_f), tanh(a_g), σ(a_i), σ(a_o)]`` side by side (what the backward needs)."""
    H = c_prev.shape[-1]
    gates = jnp.concatenate([jax.nn.sigmoid(a[:, :H]), jnp.tanh(a[:, H:2 * H]),
                             jax.nn.sigmoid(a[:, 2 * H:])], axis=1)
    f, g, i, o = jnp.split(gates, 4, axis=1)
    c = f * c_prev + g * i
    tanh_c = jnp.tanh(c)
    return o * tanh_c, c, gates, tanh_c


def lstm_step_bwd(dh: jax.Array, dc: jax.Array, gates: jax.Array, tanh_c: jax.Array,
                  c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(da, dc_prev)`` from the cotangents ``dh``, ``dc`` of one LSTM step's outputs.

    ``c`` reaches the loss directly (``dc``) and through ``h = o·tanh(c)``, so
    ``ds = dc + dh·o·(1 − tanh²c)``; then ``dc_prev = ds·f``, ``df = ds·c_prev``,
    ``dg = ds·i``, ``di = ds·g``, ``do = dh·tanh c``, and each block goes back through its
    nonlinearity: ``σ' = σ(1 − σ)``, ``tanh' = 1 − tanh²``.
    """
    f, g, i, o = jnp.split(gates, 4, axis=1)
    ds = dc + dh * o * (1 - tanh_c * tanh_c)
    da = jnp.concatenate([ds * c_prev * f * (1 - f), ds * i * (1 - g * g),
                          ds * g * i * (1 - i), dh * tanh_c * o * (1 - o)], axis=1)
    return da, ds * f


def gru_step(px: jax.Array, h_prev: jax.Array, Wh: jax.Array) -> tuple[jax.Array, ...]:
    """One GRU step from ``px = x·Wx + b (N, 3H)``: ``(h, gates)``, ``gates = [z, r, h̃]``."""
    H = h_prev.shape[-1]
    zr = jax.nn.sigmoid(px[:, :2 * H] + h_prev @ Wh[:, :2 * H])
    z, r = zr[:, :H], zr[:, H:]
    h_hat = jnp.tanh(px[:, 2 * H:] + (r * h_prev) @ Wh[:, 2 * H:])
    h = (1 - z) * h_prev + z * h_hat
    return h, jnp.concatenate([zr, h_hat], axis=1)


def gru_step_bwd(dh: jax.Array, h_prev: jax.Array, gates: jax.Array,
                 Wh: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(da, dh_prev)`` of one GRU step, ``da = [da_z, da_r, da_h̃] (N, 3H)`` the cotangent of
    the pre-activations (so ``dWx = xᵀ·da``, ``db = Σ da``, ``dx = da·Wxᵀ``).

    From ``h = (1 − z)·h_prev + z·h̃``: ``dh̃ = dh·z``, ``dz = dh·(h̃ − h_prev)`` and a direct
    ``dh·(1 − z)`` into ``h_prev``. Then ``da_h̃ = dh̃·(1 − h̃²)``; its matmul with
    ``(r·h_prev)`` gives ``d(r·h_prev) = da_h̃·Wh_h̃ᵀ``, hence ``dr = d(r·h_prev)·h_prev`` and
    ``r·d(r·h_prev)`` into ``h_prev``; ``da_z = dz·z(1 − z)``, ``da_r = dr·r(1 − r)``, and
    ``[da_z, da_r]·Wh_zrᵀ`` into ``h_prev`` too.
    """
    H = h_prev.shape[-1]
    z, r, h_hat = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    da_h = dh * z * (1 - h_hat * h_hat)
    d_rh = da_h @ Wh[:, 2 * H:].T
    da_zr = jnp.concatenate([dh * (h_hat - h_prev) * z * (1 - z),
                             d_rh * h_prev * r * (1 - r)], axis=1)
    dh_prev = dh * (1 - z) + d_rh * r + da_zr @ Wh[:, :2 * H].T
    return jnp.concatenate([da_zr, da_h], axis=1), dh_prev


def gru_hidden_weight_grad(h_prev: jax.Array, gates: jax.Array, da: jax.Array,
                           contract: str = "nh,nk->hk") -> jax.Array:
    """``dWh = [h_prevᵀ·[da_z, da_r], (r·h_prev)ᵀ·da_h̃]`` (``contract`` sums the batch —
    and, for the time layer, time — axes)."""
    H = h_prev.shape[-1]
    r = gates[..., H:2 * H]
    return jnp.concatenate([jnp.einsum(contract, h_prev, da[..., :2 * H]),
                            jnp.einsum(contract, r * h_prev, da[..., 2 * H:])], axis=1)


# --- rnn -----------------------------------------------------------------------------------


@jax.custom_vjp
def _rnn(x, h_prev, Wx, Wh, b):
    return _rnn_fwd(x, h_prev, Wx, Wh, b)[0]


def _rnn_fwd(x, h_prev, Wx, Wh, b):
    h = jnp.tanh(h_prev @ Wh + x @ Wx + b)
    return h, (x, h_prev, Wx, Wh, h)


def _rnn_bwd(res, dh):
    x, h_prev, Wx, Wh, h = res
    grads = input_grads(x, h_prev, Wx, Wh, rnn_step_bwd(dh, h))
    return cast_all(grads, x.dtype)


_rnn.defvjp(_rnn_fwd, _rnn_bwd)


def rnn(x: jax.Array, h_prev: jax.Array, Wx: jax.Array, Wh: jax.Array,
        b: jax.Array) -> jax.Array:
    """One step of the plain RNN with the hand-derived backward rule (the book's RNN layer).

    Forward:  ``a = h_prev·Wh + x·Wx + b``, ``h = tanh(a)``.

    Backward: ``da = dh·(1 − h²)``; then ``a`` is two matmuls and a bias, so
    ``dx = da·Wxᵀ``, ``dh_prev = da·Whᵀ``, ``dWx = xᵀ·da``, ``dWh = h_prevᵀ·da``,
    ``db = Σₙ da``.

    Args:
      x: ``(N, D)``; h_prev: ``(N, H)``; Wx: ``(D, H)``; Wh: ``(H, H)``; b: ``(H,)``.

    Returns:
      ``h``, ``(N, H)``.
    """
    return _rnn(*check_recurrent_args("rnn", "rnn", x, h_prev, Wx, Wh, b))


def rnn_cell(x, h_prev, Wx, Wh, b):
    """The plain-``jnp`` RNN step (no checks): what the references scan."""
    return jnp.tanh(h_prev @ Wh + x @ Wx + b)


def rnn_reference(x: jax.Array, h_prev: jax.Array, Wx: jax.Array, Wh: jax.Array,
                  b: jax.Array) -> jax.Array:
    """``tanh(h_prev·Wh + x·Wx + b)`` in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    return rnn_cell(*check_recurrent_args("rnn", "rnn", x, h_prev, Wx, Wh, b))


# --- lstm ----------------------------------------------------------------------------------


@jax.custom_vjp
def _lstm(x, h_prev, c_prev, Wx, Wh, b):
    return _lstm_fwd(x, h_prev, c_prev, Wx, Wh, b)[0]


def _lstm_fwd(x, h_prev, c_prev, Wx, Wh, b):
    h, c, gates, tanh_c = lstm_step(x @ Wx + h_prev @ Wh + b, c_prev)
    return (h, c), (x, h_prev, c_prev, Wx, Wh, gates, tanh_c)


def _lstm_bwd(res, cotangents):
    x, h_prev, c_prev, Wx, Wh, gates, tanh_c = res
    dh, dc = cotangents
    da, dc_prev = lstm_step_bwd(dh, dc, gates, tanh_c, c_prev)
    dx, dh_prev, dWx, dWh, db = input_grads(x, h_prev, Wx, Wh, da)
    grads = (dx, dh_prev, dc_prev, dWx, dWh, db)
    return cast_all(grads, x.dtype)


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm(x: jax.Array, h_prev: jax.Array, c_prev: jax.Array, Wx: jax.Array, Wh: jax.Array,
         b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One LSTM step with the hand-derived backward rule (the book's LSTM layer and layout).

    Forward:  ``A = x·Wx + h_prev·Wh + b`` ``(N, 4H)``, split into the blocks **f, g, i, o**
    in that order; ``f = σ(A_f)``, ``g = tanh(A_g)``, ``i = σ(A_i)``, ``o = σ(A_o)``;
    ``c = f·c_prev + g·i``, ``h = o·tanh(c)``.

    Backward (cotangents ``dh`` and ``dc`` on both outputs — ``c`` is an output of its own, the
    next step's ``c_prev``): ``ds = dc + dh·o·(1 − tanh²c)``, ``dc_prev = ds·f``;
    ``dA_f = ds·c_prev·f(1 − f)``, ``dA_g = ds·i·(1 − g²)``, ``dA_i = ds·g·i(1 − i)``,
    ``dA_o = dh·tanh(c)·o(1 − o)``; then, ``A`` being two matmuls and a bias,
    ``dx = dA·Wxᵀ``, ``dh_prev = dA·Whᵀ``, ``dWx = xᵀ·dA``, ``dWh = h_prevᵀ·dA``,
    ``db = Σₙ dA``.

    Args:
      x: ``(N, D)``; h_prev, c_prev: ``(N, H)``; Wx: ``(D, 4H)``; Wh: ``(H, 4H)``;
      b: ``(4H,)``.

    Returns:
      ``(h, c)``, each ``(N, H)``.
    """
    return _lstm(*check_recurrent_args("lstm", "lstm", x, h_prev, Wx, Wh, b, c_prev))


def lstm_cell(x, h_prev, c_prev, Wx, Wh, b):
    """The plain-``jnp`` LSTM step (no checks): what the references scan."""
    A = x @ Wx + h_prev @ Wh + b
    a_f, a_g, a_i, a_o = jnp.split(A, 4, axis=1)
    c = jax.nn.sigmoid(a_f) * c_prev + jnp.tanh(a_g) * jax.nn.sigmoid(a_i)
    return jax.nn.sigmoid(a_o) * jnp.tanh(c), c


def lstm_reference(x: jax.Array, h_prev: jax.Array, c_prev: jax.Array, Wx: jax.Array,
                   Wh: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The same LSTM step in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    return lstm_cell(*check_recurrent_args("lstm", "lstm", x, h_prev, Wx, Wh, b, c_prev))


# --- gru -----------------------------------------------------------------------------------


@jax.custom_vjp
def _gru(x, h_prev, Wx, Wh, b):
    return _gru_fwd(x, h_prev, Wx, Wh, b)[0]


def _gru_fwd(x, h_prev, Wx, Wh, b):
    h, gates = gru_step(x @ Wx + b, h_prev, Wh)
    return h, (x, h_prev, Wx, Wh, gates)


def _gru_bwd(res, dh):
    x, h_prev, Wx, Wh, gates = res
    da, dh_prev = gru_step_bwd(dh, h_prev, gates, Wh)
    grads = (da @ Wx.T, dh_prev, x.T @ da, gru_hidden_weight_grad(h_prev, gates, da),
             jnp.sum(da, axis=0))
    return cast_all(grads, x.dtype)


_gru.defvjp(_gru_fwd, _gru_bwd)


def gru(x: jax.Array, h_prev: jax.Array, Wx: jax.Array, Wh: jax.Array,
        b: jax.Array) -> jax.Array:
    """One GRU step with the hand-derived backward rule (the book's GRU layer and layout).

    Forward:  ``Wx (D, 3H)``, ``Wh (H, 3H)``, ``b (3H,)`` in the blocks **z, r, h̃**;
    ``z = σ(x·Wx_z + h_prev·Wh_z + b_z)``, ``r = σ(x·Wx_r + h_prev·Wh_r + b_r)``,
    ``h̃ = tanh(x·Wx_h̃ + (r·h_prev)·Wh_h̃ + b_h̃)``, ``h = (1 − z)·h_prev + z·h̃``.

    Backward: ``dh̃ = dh·z``, ``dz = dh·(h̃ − h_prev)``; ``da_h̃ = dh̃·(1 − h̃²)``;
    ``d(r·h_prev) = da_h̃·Wh_h̃ᵀ``, ``dr = d(r·h_prev)·h_prev``; ``da_z = dz·z(1 − z)``,
    ``da_r = dr·r(1 − r)``. With ``da = [da_z, da_r, da_h̃]``: ``dx = da·Wxᵀ``,
    ``dWx = xᵀ·da``, ``db = Σₙ da``, ``dWh = [h_prevᵀ·[da_z, da_r], (r·h_prev)ᵀ·da_h̃]``, and
    ``h_prev`` collects its three paths:
    ``dh_prev = dh·(1 − z) + r·d(r·h_prev) + [da_z, da_r]·Wh_zrᵀ``.

    Args:
      x: ``(N, D)``; h_prev: ``(N, H)``; Wx: ``(D, 3H)``; Wh: ``(H, 3H)``; b: ``(3H,)``.

    Returns:
      ``h``, ``(N, H)``.
    """
    return _gru(*check_recurrent_args("gru", "gru", x, h_prev, Wx, Wh, b))


def gru_cell(x, h_prev, Wx, Wh, b):
    """The plain-``jnp`` GRU step (no checks): what the references scan."""
    H = h_prev.shape[-1]
    Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H:2 * H], Wx[:, 2 * H:]
    Whz, Whr, Whh = Wh[:, :H], Wh[:, H:2 * H], Wh[:, 2 * H:]
    bz, br, bh = b[:H], b[H:2 * H], b[2 * H:]
    z = jax.nn.sigmoid(x @ Wxz + h_prev @ Whz + bz)
    r = jax.nn.sigmoid(x @ Wxr + h_prev @ Whr + br)
    h_hat = jnp.tanh(x @ Wxh + (r * h_prev) @ Whh + bh)
    return (1 - z) * h_prev + z * h_hat


def gru_reference(x: jax.Array, h_prev: jax.Array, Wx: jax.Array, Wh: jax.Array,
                  b: jax.Array) -> jax.Array:
    """The same GRU step in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    return gru_cell(*check_recurrent_args("gru", "gru", x, h_prev, Wx, Wh, b))
