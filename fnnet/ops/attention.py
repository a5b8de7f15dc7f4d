"""Attention (the sequel's chapter 8): attention_weight, weight_sum, time_attention.

The book builds attention from its computational-graph nodes (Repeat, Mul, Sum, Softmax —
:mod:`fnnet.ops.graph`); each op below is one ``custom_vjp`` whose backward pass is that
composition's rule written out, node by node, in its docstring. Shapes are batch-major:
``hs (N, T, H)`` the encoder's hidden states, ``h (N, H)`` one decoder state, ``a (N, T)``
the weights over the ``T`` encoder steps.

Arguments of mixed floating dtypes are promoted to one dtype before the rule runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnnet._checks import as_float_array, check_ndim

# --- checks and shared math ----------------------------------------------------------------


def _check_states(op: str, name: str, hs: object) -> jax.Array:
    hs = as_float_array(op, name, hs)
    check_ndim(op, name, hs, 3, "(batch N, time T, hidden size H)")
    if hs.shape[1] < 1:
        raise ValueError(f"{op}: {name} needs at least one time step (T >= 1); got shape "
                         f"{tuple(hs.shape)}")
    return hs


def _check_hs_and(op: str, hs: object, other_name: str, other: object, expected: str,
                  ndim: int, meaning: str) -> tuple[jax.Array, jax.Array]:
    """``hs (N, T, H)`` and a second array of shape ``(N, H)`` (``expected="NH"``) or
    ``(N, T)`` (``"NT"``), both promoted to their common dtype."""
    hs = _check_states(op, "hs", hs)
    other = as_float_array(op, other_name, other)
    check_ndim(op, other_name, other, ndim, meaning)
    n, t, h = hs.shape
    want = {"NH": (n, h), "NT": (n, t)}[expected]
    if other.shape != want:
        form = ", ".join(expected)
        raise ValueError(f"{op}: {other_name} must have shape ({form}) = {want} for hs of shape "
                         f"{tuple(hs.shape)}; got {tuple(other.shape)}")
    dtype = jnp.result_type(hs, other)
    return hs.astype(dtype), other.astype(dtype)


def _softmax_bwd(a: jax.Array, da: jax.Array) -> jax.Array:
    """The Softmax node's rule over the last axis: ``ds = a·(da − Σ da·a)``."""
    return a * (da - jnp.sum(da * a, axis=-1, keepdims=True))


# --- attention_weight ----------------------------------------------------------------------


def _scores(hs: jax.Array, h: jax.Array) -> jax.Array:
    return jnp.einsum("nth,nh->nt", hs, h)


@jax.custom_vjp
def _attention_weight(hs: jax.Array, h: jax.Array) -> jax.Array:
    return jax.nn.softmax(_scores(hs, h), axis=-1)


def _attention_weight_fwd(hs: jax.Array, h: jax.Array):
    a = jax.nn.softmax(_scores(hs, h), axis=-1)
    return a, (hs, h, a)


def _attention_weight_bwd(res, da: jax.Array):
    hs, h, a = res
    ds = _softmax_bwd(a, da)
    dhs = ds[:, :, None] * h[:, None, :]
    dh = jnp.einsum("nt,nth->nh", ds, hs)
    return dhs.astype(hs.dtype), dh.astype(h.dtype)


_attention_weight.defvjp(_attention_weight_fwd, _attention_weight_bwd)


def attention_weight(hs: jax.Array, h: jax.Array) -> jax.Array:
    """How much each encoder state matches ``h``: a softmax over time of dot products, with
    the hand-derived rule (the book's AttentionWeight layer).

    Forward, as the book's graph:  ``hr = Repeat(h, T, axis=1)`` ``(N, T, H)``,
    ``t = hs·hr`` (Mul), ``s = Sum(t, axis=2)`` ``(N, T)``, ``a = Softmax(s)`` over ``T``;
    i.e. ``sₙₜ = Σⱼ hsₙₜⱼ·hₙⱼ`` and ``aₙ = softmax(sₙ)``.

    Backward, node by node from ``da``:

    * Softmax: ``ds = a·(da − Σₜ da·a)``;
    * Sum over H: ``dt = Repeat(ds, H, axis=2)`` — every ``tₙₜⱼ`` gets ``dsₙₜ``;
    * Mul: ``dhs = dt·hr``, ``dhr = dt·hs``;
    * Repeat over T: ``dh = Σₜ dhr``.

    Written out: ``dhsₙₜⱼ = dsₙₜ·hₙⱼ`` and ``dhₙⱼ = Σₜ dsₙₜ·hsₙₜⱼ``.

    Args:
      hs: ``(N, T, H)``; h: ``(N, H)``.

    Returns:
      ``a``, ``(N, T)``, each row summing to 1.
    """
    hs, h = _check_hs_and("attention_weight", hs, "h", h, "NH", 2, "(batch N, hidden size H)")
    return _attention_weight(hs, h)


def _attention_weight_ref(hs: jax.Array, h: jax.Array) -> jax.Array:
    hr = jnp.repeat(h[:, None, :], hs.shape[1], axis=1)
    return jax.nn.softmax(jnp.sum(hs * hr, axis=2), axis=-1)


def attention_weight_reference(hs: jax.Array, h: jax.Array) -> jax.Array:
    """The book's Repeat → Mul → Sum → Softmax in plain ``jax.numpy``; ``jax.grad`` does the
    rest."""
    hs, h = _check_hs_and("attention_weight", hs, "h", h, "NH", 2, "(batch N, hidden size H)")
    return _attention_weight_ref(hs, h)


# --- weight_sum ----------------------------------------------------------------------------


@jax.custom_vjp
def _weight_sum(hs: jax.Array, a: jax.Array) -> jax.Array:
    return jnp.einsum("nth,nt->nh", hs, a)


def _weight_sum_fwd(hs: jax.Array, a: jax.Array):
    return jnp.einsum("nth,nt->nh", hs, a), (hs, a)


def _weight_sum_bwd(res, dc: jax.Array):
    hs, a = res
    dhs = a[:, :, None] * dc[:, None, :]
    da = jnp.einsum("nth,nh->nt", hs, dc)
    return dhs.astype(hs.dtype), da.astype(a.dtype)


_weight_sum.defvjp(_weight_sum_fwd, _weight_sum_bwd)


def weight_sum(hs: jax.Array, a: jax.Array) -> jax.Array:
    """The weighted sum of the encoder states, the context vector, with the hand-derived rule
    (the book's WeightSum layer).

    Forward, as the book's graph:  ``ar = Repeat(a, H, axis=2)`` ``(N, T, H)``,
    ``t = hs·ar`` (Mul), ``c = Sum(t, axis=1)`` ``(N, H)``; i.e. ``cₙⱼ = Σₜ aₙₜ·hsₙₜⱼ``.

    Backward, node by node from ``dc``:

    * Sum over T: ``dt = Repeat(dc, T, axis=1)``;
    * Mul: ``dhs = dt·ar``, ``dar = dt·hs``;
    * Repeat over H: ``da = Σⱼ dar``.

    Written out: ``dhsₙₜⱼ = aₙₜ·dcₙⱼ`` and ``daₙₜ = Σⱼ hsₙₜⱼ·dcₙⱼ``.

    Args:
      hs: ``(N, T, H)``; a: ``(N, T)`` (attention weights; any values are accepted).

    Returns:
      ``c``, ``(N, H)``.
    """
    hs, a = _check_hs_and("weight_sum", hs, "a", a, "NT", 2, "(batch N, time T)")
    return _weight_sum(hs, a)


def _weight_sum_ref(hs: jax.Array, a: jax.Array) -> jax.Array:
    ar = jnp.repeat(a[:, :, None], hs.shape[2], axis=2)
    return jnp.sum(hs * ar, axis=1)


def weight_sum_reference(hs: jax.Array, a: jax.Array) -> jax.Array:
    """The book's Repeat → Mul → Sum in plain ``jax.numpy``; differentiated by ``jax.grad``."""
    hs, a = _check_hs_and("weight_sum", hs, "a", a, "NT", 2, "(batch N, time T)")
    return _weight_sum_ref(hs, a)


# --- time_attention ------------------------------------------------------------------------


def _check_time_attention_args(hs_enc: object, hs_dec: object):
    op = "time_attention"
    hs_enc = _check_states(op, "hs_enc", hs_enc)
    hs_dec = _check_states(op, "hs_dec", hs_dec)
    (n, _, h), (n_dec, _, h_dec) = hs_enc.shape, hs_dec.shape
    if (n_dec, h_dec) != (n, h):
        raise ValueError(f"{op}: hs_dec must have shape (N, T_dec, H) with N = {n} and H = {h} "
                         f"as hs_enc {tuple(hs_enc.shape)}; got {tuple(hs_dec.shape)}")
    dtype = jnp.result_type(hs_enc, hs_dec)
    return hs_enc.astype(dtype), hs_dec.astype(dtype)


def _all_weights(hs_enc: jax.Array, hs_dec: jax.Array) -> jax.Array:
    """``A (N, T_dec, T_enc)``: one row of attention weights per decoder step."""
    return jax.nn.softmax(jnp.einsum("nsh,nth->nts", hs_enc, hs_dec), axis=-1)


@jax.custom_vjp
def _time_attention(hs_enc: jax.Array, hs_dec: jax.Array) -> jax.Array:
    return jnp.einsum("nts,nsh->nth", _all_weights(hs_enc, hs_dec), hs_enc)


def _time_attention_fwd(hs_enc: jax.Array, hs_dec: jax.Array):
    A = _all_weights(hs_enc, hs_dec)
    return jnp.einsum("nts,nsh->nth", A, hs_enc), (hs_enc, hs_dec, A)


def _time_attention_bwd(res, dC: jax.Array):
    hs_enc, hs_dec, A = res
    dA = jnp.einsum("nth,nsh->nts", dC, hs_enc)  # weight_sum's da, every step at once
    dS = _softmax_bwd(A, dA)
    dhs_enc = jnp.einsum("nts,nth->nsh", A, dC) + jnp.einsum("nts,nth->nsh", dS, hs_dec)
    dhs_dec = jnp.einsum("nts,nsh->nth", dS, hs_enc)
    return dhs_enc.astype(hs_enc.dtype), dhs_dec.astype(hs_dec.dtype)


_time_attention.defvjp(_time_attention_fwd, _time_attention_bwd)


def time_attention(hs_enc: jax.Array, hs_dec: jax.Array) -> jax.Array:
    """The context vector for every decoder step, with the hand-derived rule (the book's
    TimeAttention layer).

    Forward:  for each decoder step ``t`` (the book's loop, one Attention layer per step),
    ``a_t = attention_weight(hs_enc, hs_dec[:, t])`` and ``c_t = weight_sum(hs_enc, a_t)``;
    all steps at once: ``Sₙₜₛ = Σⱼ hs_decₙₜⱼ·hs_encₙₛⱼ``, ``A = softmax over s of S``
    ``(N, T_dec, T_enc)``, ``Cₙₜⱼ = Σₛ Aₙₜₛ·hs_encₙₛⱼ``.

    Backward: each step's rules (:func:`weight_sum`, then :func:`attention_weight`), with
    the Repeat nodes' sums where ``hs_enc`` is used more than once:

    * weight_sum: ``dA_t = hs_enc·dc_t`` summed over H, and ``hs_enc`` gets ``A_t·dc_t``;
    * attention_weight: ``dS_t = A_t·(dA_t − Σₛ dA_t·A_t)``; ``hs_enc`` gets
      ``dS_t·hs_dec[:, t]`` and ``dhs_dec[:, t] = Σₛ dS_t·hs_enc``;
    * ``hs_enc`` feeds both layers of every step, so its cotangent is the sum of all
      ``2·T_dec`` of them:
      ``dhs_enc = Σₜ (A_t ⊗ dc_t + dS_t ⊗ hs_dec[:, t])`` — as contractions,
      ``dhs_enc = Aᵀ·dC + dSᵀ·hs_dec`` and ``dhs_dec = dS·hs_enc`` per batch row.

    Args:
      hs_enc: ``(N, T_enc, H)``, the encoder's states; hs_dec: ``(N, T_dec, H)``, the
        decoder's (``T_enc`` and ``T_dec`` may differ).

    Returns:
      The contexts, ``(N, T_dec, H)``.
    """
    return _time_attention(*_check_time_attention_args(hs_enc, hs_dec))


def time_attention_reference(hs_enc: jax.Array, hs_dec: jax.Array) -> jax.Array:
    """The book's loop — one attention_weight → weight_sum per decoder step, in plain
    ``jax.numpy`` (``vmap`` over the steps) — differentiated by ``jax.grad``."""
    hs_enc, hs_dec = _check_time_attention_args(hs_enc, hs_dec)

    def one_step(h):
        return _weight_sum_ref(hs_enc, _attention_weight_ref(hs_enc, h))

    return jax.vmap(one_step, in_axes=1, out_axes=1)(hs_dec)
