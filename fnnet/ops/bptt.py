"""Time layers with backpropagation through time by hand: time_rnn, time_lstm, time_gru.

Each runs its cell (:mod:`fnnet.ops.recurrent`) over ``T`` steps and is **one**
``jax.custom_vjp``: the forward pass is a ``lax.scan`` of the step, the backward pass the
book's reverse loop written as a reverse ``lax.scan`` — not ``jax.grad`` through the forward
scan. The references are a ``lax.scan`` of the plain cell, differentiated by ``jax.grad``.

Shapes are batch-major as in the book: ``xs (N, T, D)``, ``hs (N, T, H)``; ``h0``, ``c0``,
``h_last``, ``c_last`` are ``(N, H)``. Every output takes a cotangent — ``hs``, and the final
state ``h_last`` (``c_last``) too, which truncated BPTT across batches and a seq2seq
encoder need — and gradients flow into the initial state ``h0`` (``c0``).

Where the hand rule saves work over autodiff of a scan: every step's pre-activation is
``a_t = x_t·Wx + h_{t−1}·Wh + b``, and only ``h_{t−1}·Wh`` depends on the previous step. So

* forward: the input projection ``xs·Wx + b`` is one ``(N·T, D) × (D, k·H)`` matmul before
  the loop; the loop does ``h·Wh`` and the gate math, and keeps each step's states and gate
  activations for the backward pass (the LSTM's ``tanh c_t`` is recomputed in one pass);
* backward: the reverse loop carries ``dh`` (and ``dc``) and does ``da_t·Whᵀ`` and the gate
  math only; ``dWx = Σ_t x_tᵀ·da_t``, ``dWh = Σ_t h_{t−1}ᵀ·da_t``, ``db = Σ_{t,n} da_t`` and
  ``dxs = da·Wxᵀ`` are then single large contractions over ``N·T`` after the loop, where
  autodiff of a scan does them step by step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from fnnet.ops import recurrent as cells
from fnnet.ops.recurrent import check_recurrent_args

# --- shared pieces -------------------------------------------------------------------------


def _project(xs: jax.Array, Wx: jax.Array, b: jax.Array) -> jax.Array:
    """``xs·Wx + b`` for every step at once, time-major: ``(T, N, k·H)``.

    As one 2-D matmul of the time-major rows: XLA:CPU ran the same product written as
    ``einsum("ntd,dk->tnk")`` (its output in another layout) ~4× slower at seq2seq's shapes.
    """
    T, N, D = xs.shape[1], xs.shape[0], xs.shape[2]
    return (_time_major(xs).reshape(T * N, D) @ Wx).reshape(T, N, -1) + b


def _time_major(a: jax.Array) -> jax.Array:
    return jnp.swapaxes(a, 0, 1)


def _previous(h0: jax.Array, hs_tm: jax.Array) -> jax.Array:
    """``h_{t−1}`` for every step, time-major: ``[h0, h_1, …, h_{T−1}]``."""
    return jnp.concatenate([h0[None], hs_tm[:-1]], axis=0)


def _input_side_grads(xs: jax.Array, Wx: jax.Array, da: jax.Array):
    """``(dxs, dWx, db)`` from the time-major ``da (T, N, k·H)``: contractions over N·T
    (``dxs`` as a 2-D matmul, then back to batch-major: see :func:`_project`)."""
    T, N, K = da.shape
    dxs = _time_major((da.reshape(T * N, K) @ Wx.T).reshape(T, N, -1))
    dWx = jnp.einsum("ntd,tnk->dk", xs, da)
    return dxs, dWx, jnp.sum(da, axis=(0, 1))


def _scan_time(step, carry, xs: jax.Array, *params):
    """``lax.scan`` of ``step(carry, x_t, *params) -> (carry, h_t)`` over the time axis of
    the batch-major ``xs``: ``(hs (N, T, H), final carry)`` — the references' loop."""
    carry, hs_tm = lax.scan(lambda c, x: step(c, x, *params), carry, _time_major(xs))
    return _time_major(hs_tm), carry


# --- time_rnn ------------------------------------------------------------------------------


@jax.custom_vjp
def _time_rnn(xs, h0, Wx, Wh, b):
    return _time_rnn_fwd(xs, h0, Wx, Wh, b)[0]


def _time_rnn_fwd(xs, h0, Wx, Wh, b):
    def step(h_prev, px_t):
        h = jnp.tanh(px_t + h_prev @ Wh)
        return h, h

    h_last, hs_tm = lax.scan(step, h0, _project(xs, Wx, b))
    return (_time_major(hs_tm), h_last), (xs, h0, Wx, Wh, hs_tm)


def _time_rnn_bwd(res, cotangents):
    xs, h0, Wx, Wh, hs_tm = res
    dhs, dh_last = cotangents

    def step(dh_next, inputs):
        dh_t, h_t = inputs
        da = cells.rnn_step_bwd(dh_t + dh_next, h_t)
        return da @ Wh.T, da

    dh0, da = lax.scan(step, dh_last, (_time_major(dhs), hs_tm), reverse=True)
    dxs, dWx, db = _input_side_grads(xs, Wx, da)
    dWh = jnp.einsum("tnh,tnk->hk", _previous(h0, hs_tm), da)
    return cells.cast_all((dxs, dh0, dWx, dWh, db), xs.dtype)


_time_rnn.defvjp(_time_rnn_fwd, _time_rnn_bwd)


def time_rnn(xs: jax.Array, h0: jax.Array, Wx: jax.Array, Wh: jax.Array,
             b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The RNN over ``T`` steps with backpropagation through time by hand (TimeRNN).

    Forward:  ``h_t = tanh(h_{t−1}·Wh + x_t·Wx + b)`` for ``t = 1 … T`` from ``h_0 = h0``.

    Backward (BPTT): ``h_t`` feeds the loss directly (``dhs[:, t]``) and the next step, so
    walking back from ``t = T`` with ``δ_T = dh_last``:
    ``da_t = (dhs[:, t] + δ_t)·(1 − h_t²)``, ``δ_{t−1} = da_t·Whᵀ``; ``dh0 = δ_0``. The
    parameters are shared by every step, so their gradients are sums over ``t``:
    ``dWx = Σ_t x_tᵀ·da_t``, ``dWh = Σ_t h_{t−1}ᵀ·da_t``, ``db = Σ_{t,n} da_t``, and
    ``dx_t = da_t·Wxᵀ`` (these after the loop, as single contractions).

    Args:
      xs: ``(N, T, D)``, ``T >= 1``; h0: ``(N, H)``; Wx: ``(D, H)``; Wh: ``(H, H)``;
      b: ``(H,)``.

    Returns:
      ``(hs, h_last)``: ``hs (N, T, H)`` and ``h_last = hs[:, -1]`` ``(N, H)``.
    """
    return _time_rnn(*check_recurrent_args("time_rnn", "rnn", xs, h0, Wx, Wh, b, time=True))


def time_rnn_reference(xs: jax.Array, h0: jax.Array, Wx: jax.Array, Wh: jax.Array,
                       b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A ``lax.scan`` of the plain RNN cell; differentiated by ``jax.grad``."""
    xs, h0, Wx, Wh, b = check_recurrent_args("time_rnn", "rnn", xs, h0, Wx, Wh, b, time=True)

    def step(h, x, Wx, Wh, b):
        h = cells.rnn_cell(x, h, Wx, Wh, b)
        return h, h

    return _scan_time(step, h0, xs, Wx, Wh, b)


# --- time_lstm -----------------------------------------------------------------------------


@jax.custom_vjp
def _time_lstm(xs, h0, c0, Wx, Wh, b):
    return _time_lstm_fwd(xs, h0, c0, Wx, Wh, b)[0]


def _time_lstm_fwd(xs, h0, c0, Wx, Wh, b):
    def step(state, px_t):
        h_prev, c_prev = state
        h, c, gates, _ = cells.lstm_step(px_t + h_prev @ Wh, c_prev)
        return (h, c), (h, c, gates)

    (h_last, c_last), (hs_tm, cs_tm, gates) = lax.scan(
        step, (h0, c0), _project(xs, Wx, b))
    res = (xs, h0, c0, Wx, Wh, hs_tm, cs_tm, gates)
    return (_time_major(hs_tm), h_last, c_last), res


def _time_lstm_bwd(res, cotangents):
    xs, h0, c0, Wx, Wh, hs_tm, cs_tm, gates = res
    tanh_cs = jnp.tanh(cs_tm)
    dhs, dh_last, dc_last = cotangents

    def step(carry, inputs):
        dh_next, dc_next = carry
        dh_t, gates_t, tanh_c_t, c_prev_t = inputs
        da, dc_prev = cells.lstm_step_bwd(dh_t + dh_next, dc_next, gates_t, tanh_c_t, c_prev_t)
        return (da @ Wh.T, dc_prev), da

    (dh0, dc0), da = lax.scan(step, (dh_last, dc_last),
                              (_time_major(dhs), gates, tanh_cs, _previous(c0, cs_tm)),
                              reverse=True)
    dxs, dWx, db = _input_side_grads(xs, Wx, da)
    dWh = jnp.einsum("tnh,tnk->hk", _previous(h0, hs_tm), da)
    return cells.cast_all((dxs, dh0, dc0, dWx, dWh, db), xs.dtype)


_time_lstm.defvjp(_time_lstm_fwd, _time_lstm_bwd)


def time_lstm(xs: jax.Array, h0: jax.Array, c0: jax.Array, Wx: jax.Array, Wh: jax.Array,
              b: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The LSTM over ``T`` steps with backpropagation through time by hand (TimeLSTM).

    Forward:  :func:`fnnet.ops.recurrent.lstm` at every step (blocks f, g, i, o), from
    ``(h_0, c_0) = (h0, c0)``: ``A_t = x_t·Wx + h_{t−1}·Wh + b``,
    ``c_t = f_t·c_{t−1} + g_t·i_t``, ``h_t = o_t·tanh(c_t)``.

    Backward (BPTT): two cotangents travel back, ``δh`` and ``δc``, starting from
    ``(dh_last, dc_last)``. At step ``t``, with ``dh = dhs[:, t] + δh_t``: the cell's rule
    gives ``ds = δc_t + dh·o_t·(1 − tanh²c_t)``, ``δc_{t−1} = ds·f_t``, the block cotangents
    ``dA_t = [ds·c_{t−1}·f(1 − f), ds·i·(1 − g²), ds·g·i(1 − i), dh·tanh(c_t)·o(1 − o)]``,
    and ``δh_{t−1} = dA_t·Whᵀ``; ``(dh0, dc0) = (δh_0, δc_0)``. Then, summed over every step,
    ``dWx = Σ_t x_tᵀ·dA_t``, ``dWh = Σ_t h_{t−1}ᵀ·dA_t``, ``db = Σ_{t,n} dA_t``,
    ``dx_t = dA_t·Wxᵀ``.

    Args:
      xs: ``(N, T, D)``, ``T >= 1``; h0, c0: ``(N, H)``; Wx: ``(D, 4H)``; Wh: ``(H, 4H)``;
      b: ``(4H,)``.

    Returns:
      ``(hs, h_last, c_last)``: ``hs (N, T, H)``, the final ``h`` and ``c`` ``(N, H)``.
    """
    return _time_lstm(*check_recurrent_args("time_lstm", "lstm", xs, h0, Wx, Wh, b, c0,
                                            time=True))


def time_lstm_reference(xs: jax.Array, h0: jax.Array, c0: jax.Array, Wx: jax.Array,
                        Wh: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A ``lax.scan`` of the plain LSTM cell; differentiated by ``jax.grad``."""
    xs, h0, c0, Wx, Wh, b = check_recurrent_args("time_lstm", "lstm", xs, h0, Wx, Wh, b, c0,
                                                 time=True)

    def step(state, x, Wx, Wh, b):
        h, c = cells.lstm_cell(x, *state, Wx, Wh, b)
        return (h, c), h

    hs, (h_last, c_last) = _scan_time(step, (h0, c0), xs, Wx, Wh, b)
    return hs, h_last, c_last


# --- time_gru ------------------------------------------------------------------------------


@jax.custom_vjp
def _time_gru(xs, h0, Wx, Wh, b):
    return _time_gru_fwd(xs, h0, Wx, Wh, b)[0]


def _time_gru_fwd(xs, h0, Wx, Wh, b):
    def step(h_prev, px_t):
        h, gates = cells.gru_step(px_t, h_prev, Wh)
        return h, (h, gates)

    h_last, (hs_tm, gates) = lax.scan(step, h0, _project(xs, Wx, b))
    return (_time_major(hs_tm), h_last), (xs, h0, Wx, Wh, hs_tm, gates)


def _time_gru_bwd(res, cotangents):
    xs, h0, Wx, Wh, hs_tm, gates = res
    dhs, dh_last = cotangents
    h_prevs = _previous(h0, hs_tm)

    def step(dh_next, inputs):
        dh_t, h_prev_t, gates_t = inputs
        da, dh_prev = cells.gru_step_bwd(dh_t + dh_next, h_prev_t, gates_t, Wh)
        return dh_prev, da

    dh0, da = lax.scan(step, dh_last, (_time_major(dhs), h_prevs, gates), reverse=True)
    dxs, dWx, db = _input_side_grads(xs, Wx, da)
    dWh = cells.gru_hidden_weight_grad(h_prevs, gates, da, "tnh,tnk->hk")
    return cells.cast_all((dxs, dh0, dWx, dWh, db), xs.dtype)


_time_gru.defvjp(_time_gru_fwd, _time_gru_bwd)


def time_gru(xs: jax.Array, h0: jax.Array, Wx: jax.Array, Wh: jax.Array,
             b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The GRU over ``T`` steps with backpropagation through time by hand (TimeGRU).

    Forward:  :func:`fnnet.ops.recurrent.gru` at every step (blocks z, r, h̃) from
    ``h_0 = h0``.

    Backward (BPTT): ``δ_T = dh_last``; at step ``t`` the cell's rule turns
    ``dh = dhs[:, t] + δ_t`` into the pre-activation cotangents ``da_t = [da_z, da_r, da_h̃]``
    and ``δ_{t−1} = dh·(1 − z_t) + r_t·(da_h̃·Wh_h̃ᵀ) + [da_z, da_r]·Wh_zrᵀ`` (two matmuls per
    step: ``da_r`` needs ``da_h̃·Wh_h̃ᵀ`` first); ``dh0 = δ_0``. After the loop, over every
    step: ``dWx = Σ_t x_tᵀ·da_t``, ``db = Σ_{t,n} da_t``, ``dx_t = da_t·Wxᵀ``,
    ``dWh = [Σ_t h_{t−1}ᵀ·[da_z, da_r], Σ_t (r_t·h_{t−1})ᵀ·da_h̃]``.

    Args:
      xs: ``(N, T, D)``, ``T >= 1``; h0: ``(N, H)``; Wx: ``(D, 3H)``; Wh: ``(H, 3H)``;
      b: ``(3H,)``.

    Returns:
      ``(hs, h_last)``: ``hs (N, T, H)`` and ``h_last = hs[:, -1]`` ``(N, H)``.
    """
    return _time_gru(*check_recurrent_args("time_gru", "gru", xs, h0, Wx, Wh, b, time=True))


def time_gru_reference(xs: jax.Array, h0: jax.Array, Wx: jax.Array, Wh: jax.Array,
                       b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A ``lax.scan`` of the plain GRU cell; differentiated by ``jax.grad``."""
    xs, h0, Wx, Wh, b = check_recurrent_args("time_gru", "gru", xs, h0, Wx, Wh, b, time=True)

    def step(h, x, Wx, Wh, b):
        h = cells.gru_cell(x, h, Wx, Wh, b)
        return h, h

    return _scan_time(step, h0, xs, Wx, Wh, b)
