"""The sequel's encoder–decoder nets (its chapters 7–8), composed from the hand-rule ops.

Three decoders over one encoder, with the book's layouts and initial values:

* ``seq2seq`` (``Seq2seq``): the encoder — Embedding → TimeLSTM from zeros — reads the
  question; its last ``h`` starts the decoder — Embedding → TimeLSTM (``c`` from zeros) →
  TimeAffine. The decoder's gradient reaches the encoder only through that ``h``: the
  cotangent on :func:`fnnet.ops.bptt.time_lstm`'s ``h_last`` output.
* ``peeky`` (``PeekySeq2seq``): the same, with the encoder's ``h`` repeated over the decoder's
  steps (the Repeat node, :func:`fnnet.ops.graph.repeat`, whose rule sums its cotangent over
  time) and concatenated in front of the decoder's input ``[h, embedding]`` and of the
  affine's input ``[h, lstm output]`` at every step.
* ``attention`` (``AttentionSeq2seq``, chapter 8): the encoder's states ``hs`` all feed the
  decoder: its LSTM starts from ``hs[:, −1]``, :func:`fnnet.ops.attention.time_attention`
  gives a context ``c_t`` for every decoder state, and the affine reads ``[c_t, h_t]``. The
  encoder gets cotangents on both ``hs`` and ``h_last``.

Training is teacher forcing: the decoder reads ``[start, t_1, …, t_{T−1}]`` and is scored by
:func:`fnnet.ops.time_layers.time_softmax_cross_entropy` against ``t``. Generation is greedy:
the decoder starts from the start symbol and feeds its argmax back, ``T`` steps as **one**
``lax.scan`` (one compiled loop, no Python per character), with the one-step ops
(:func:`~fnnet.ops.recurrent.lstm`, :func:`~fnnet.ops.attention.attention_weight`,
:func:`~fnnet.ops.attention.weight_sum`, :func:`~fnnet.ops.linear.affine`). So, as a
:class:`fnnet.layers.Model`: ``apply(params, x)`` is the generated answer's logits
``(N, T, V)``; ``loss`` the teacher-forced cross-entropy; ``accuracy`` the book's exact match —
the fraction of questions whose generated answer equals ``t`` at every position.

Params::

    {"encoder": {"embed": {"W": (V, D)}, "lstm": {"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)}},
     "decoder": {"embed": {"W": (V, D)}, "lstm": {"Wx": (D', 4H), "Wh", "b"},
                 "affine": {"W": (H', V), "b": (V,)}}}

with ``D' = D`` and ``H' = H`` for seq2seq, ``D' = H + D`` and ``H' = 2H`` for peeky,
``D' = D`` and ``H' = 2H`` for attention. The book's initial values: embeddings
``N(0, 0.01²)``, the LSTM and affine weights ``N(0, 1/fan_in)`` (its ``randn/√fan_in``: the
"xavier" of :mod:`fnnet.init`), biases 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnnet._checks import check_int
from fnnet.init import draws_as_one, normal, xavier
from fnnet.layers import Model, Params, State, ops_for

SEQ2SEQ_NETS = ("seq2seq", "peeky", "attention")
"""The decoders by the names ``fnnet seq2seq --net`` takes."""
DEFAULT_HIDDEN = {"addition": 128, "date": 256}
"""The book's hidden sizes: 128 for addition (chapter 7), 256 for dates (chapter 8)."""


class Seq2seqConfig(NamedTuple):
    """What fixes a seq2seq net: the decoder ``net`` (one of :data:`SEQ2SEQ_NETS`), the
    vocabulary size ``V``, the question and answer lengths (the answer without its start
    symbol), the start symbol's id, ``D``, ``H``, the gradients and the parameter dtype."""

    net: str
    vocab_size: int
    question_length: int
    answer_length: int
    start_id: int
    wordvec_size: int = 16
    hidden_size: int = 128
    grads: str = "manual"
    dtype: Any = jnp.float32


def check_config(config: Seq2seqConfig) -> Seq2seqConfig:
    """``config`` with its sizes checked (a ``ValueError`` names the bad one)."""
    if config.net not in SEQ2SEQ_NETS:
        raise ValueError(f"net must be one of {SEQ2SEQ_NETS}; got {config.net!r}")
    ops_for(config.grads)
    vocab_size = check_int("vocab_size", config.vocab_size, minimum=2)
    start_id = check_int("start_id", config.start_id, minimum=0)
    if start_id >= vocab_size:
        raise ValueError(f"start_id must be in [0, vocab_size) = [0, {vocab_size}); got "
                         f"{start_id}")
    return config._replace(
        vocab_size=vocab_size, start_id=start_id,
        question_length=check_int("question_length", config.question_length),
        answer_length=check_int("answer_length", config.answer_length),
        wordvec_size=check_int("wordvec_size", config.wordvec_size),
        hidden_size=check_int("hidden_size", config.hidden_size),
        dtype=jnp.dtype(config.dtype))


# --- parameters ----------------------------------------------------------------------------


def _lstm_params(key: jax.Array, inputs: int, hidden: int, dtype: Any) -> Params:
    kx, kh = jax.random.split(key)
    return {"Wx": xavier(kx, (inputs, 4 * hidden), dtype),
            "Wh": xavier(kh, (hidden, 4 * hidden), dtype),
            "b": jnp.zeros((4 * hidden,), dtype)}


def init_params(config: Seq2seqConfig, key: jax.Array) -> Params:
    """The book's initial parameters of ``config``'s net (see the module docstring)."""
    V, D, H, dtype = config.vocab_size, config.wordvec_size, config.hidden_size, config.dtype
    decoder_inputs = H + D if config.net == "peeky" else D
    affine_inputs = H if config.net == "seq2seq" else 2 * H
    keys = jax.random.split(key, 5)
    embed = normal(0.01)
    return {
        "encoder": {"embed": {"W": embed(keys[0], (V, D), dtype)},
                    "lstm": _lstm_params(keys[1], D, H, dtype)},
        "decoder": {"embed": {"W": embed(keys[2], (V, D), dtype)},
                    "lstm": _lstm_params(keys[3], decoder_inputs, H, dtype),
                    "affine": {"W": xavier(keys[4], (affine_inputs, V), dtype),
                               "b": jnp.zeros((V,), dtype)}},
    }


# --- the forward passes --------------------------------------------------------------------


def _lstm_weights(p: Params) -> tuple[jax.Array, jax.Array, jax.Array]:
    return p["Wx"], p["Wh"], p["b"]


def encode(config: Seq2seqConfig, params: Params,
           x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The encoder over questions ``x (N, T_q)``: ``(hs (N, T_q, H), h_last (N, H))``."""
    ops = ops_for(config.grads)
    p = params["encoder"]
    xs = ops.embedding(p["embed"]["W"], x)
    zeros = jnp.zeros((x.shape[0], config.hidden_size), xs.dtype)
    hs, h_last, _ = ops.time_lstm(xs, zeros, zeros, *_lstm_weights(p["lstm"]))
    return hs, h_last


def decoder_inputs(config: Seq2seqConfig, t: jax.Array) -> jax.Array:
    """Teacher forcing's decoder input: ``[start, t_1, …, t_{T−1}]`` per row, ``(N, T)``."""
    start = jnp.full((t.shape[0], 1), config.start_id, t.dtype)
    return jnp.concatenate([start, t[:, :-1]], axis=1)


def forced_logits(config: Seq2seqConfig, params: Params, x: jax.Array,
                  t: jax.Array) -> jax.Array:
    """The decoder's logits ``(N, T, V)`` under teacher forcing: it reads
    :func:`decoder_inputs` of the answers ``t (N, T)``, from the encoding of ``x``."""
    ops = ops_for(config.grads)
    hs_enc, h = encode(config, params, x)
    p = params["decoder"]
    ys = ops.embedding(p["embed"]["W"], decoder_inputs(config, t))
    T = ys.shape[1]
    zeros = jnp.zeros_like(h)
    if config.net == "peeky":
        h_every_step = ops.repeat(h, T, axis=1)  # the Repeat node: its cotangent summed over T
        ys = jnp.concatenate([h_every_step, ys], axis=2)
    hs, _, _ = ops.time_lstm(ys, h, zeros, *_lstm_weights(p["lstm"]))
    if config.net == "peeky":
        features = jnp.concatenate([h_every_step, hs], axis=2)
    elif config.net == "attention":
        features = jnp.concatenate([ops.time_attention(hs_enc, hs), hs], axis=2)
    else:
        features = hs
    return ops.time_affine(features, p["affine"]["W"], p["affine"]["b"])


def generate(config: Seq2seqConfig, params: Params,
             x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Greedy generation from questions ``x (N, T_q)``: ``(ids, logits, weights)``.

    One ``lax.scan`` over the ``T = answer_length`` steps: each embeds the previous id (the
    start symbol first), runs one LSTM step (peeky: ``[h_enc, embedding]`` in), scores it
    (peeky: ``[h_enc, h_t]``; attention: ``[c_t, h_t]`` with
    ``a_t = attention_weight(hs, h_t)``, ``c_t = weight_sum(hs, a_t)``) and feeds the argmax
    back. ``ids (N, T)`` int32, ``logits (N, T, V)``; ``weights (N, T, T_q)`` are the
    attention weights of every step (zeros for the nets without attention).
    """
    ops = ops_for(config.grads)
    hs_enc, h_enc = encode(config, params, x)
    p = params["decoder"]
    N, T_q = x.shape
    Wx, Wh, b = _lstm_weights(p["lstm"])

    def step(carry, _):
        h, c, previous = carry
        y = ops.embedding(p["embed"]["W"], previous)
        if config.net == "peeky":
            y = jnp.concatenate([h_enc, y], axis=1)
        h, c = ops.lstm(y, h, c, Wx, Wh, b)
        weights = jnp.zeros((N, T_q), h.dtype)
        if config.net == "peeky":
            features = jnp.concatenate([h_enc, h], axis=1)
        elif config.net == "attention":
            weights = ops.attention_weight(hs_enc, h)
            features = jnp.concatenate([ops.weight_sum(hs_enc, weights), h], axis=1)
        else:
            features = h
        logits = ops.affine(features, p["affine"]["W"], p["affine"]["b"])
        chosen = jnp.argmax(logits, axis=1).astype(jnp.int32)
        return (h, c, chosen), (chosen, logits, weights)

    start = jnp.full((N,), config.start_id, jnp.int32)
    _, (ids, logits, weights) = lax.scan(step, (h_enc, jnp.zeros_like(h_enc), start), None,
                                         length=config.answer_length)
    return (jnp.swapaxes(ids, 0, 1), jnp.swapaxes(logits, 0, 1),
            jnp.swapaxes(weights, 0, 1))


def exact_match(ids: jax.Array, t: jax.Array) -> jax.Array:
    """Per row, whether the generated ``ids (N, T)`` equal ``t (N, T)`` at every position
    (the book's ``eval_seq2seq``: the whole answer, padding included)."""
    return jnp.all(ids == t, axis=1)


# --- the Model -----------------------------------------------------------------------------


def build(config: Seq2seqConfig) -> Model:
    """``config``'s net as a :class:`fnnet.layers.Model` (see the module docstring): inputs
    are question ids ``(T_q,)`` in ``[0, V)``, labels the answer ids ``(T,)``."""
    config = check_config(config)
    ops = ops_for(config.grads)
    init = draws_as_one(lambda key: init_params(config, key))

    def init_state() -> State:
        return {}

    def apply(params: Params, x: jax.Array, *, state: State | None = None,
              key: jax.Array | None = None, train: bool = False) -> jax.Array:
        del state, key, train
        return generate(config, params, x)[1]

    def loss(params: Params, x: jax.Array, t: jax.Array, *, state: State | None = None,
             key: jax.Array | None = None, train: bool = True) -> jax.Array:
        del state, key, train
        return ops.time_softmax_cross_entropy(forced_logits(config, params, x, t), t)

    def loss_and_state(params: Params, state: State, x: jax.Array, t: jax.Array, *,
                       key: jax.Array | None = None) -> tuple[jax.Array, State]:
        return loss(params, x, t), state

    def accuracy(params: Params, x: jax.Array, t: jax.Array, *,
                 state: State | None = None) -> jax.Array:
        del state
        return jnp.mean(exact_match(generate(config, params, x)[0], t))

    return Model(init, init_state, apply, loss, loss_and_state, accuracy,
                 (config.question_length,), (config.answer_length, config.vocab_size),
                 config.vocab_size)


def _builder(net: str) -> Callable[..., Model]:
    def make(vocab_size: int, question_length: int, answer_length: int, *, start_id: int,
             wordvec_size: int = 16, hidden_size: int = 128, grads: str = "manual",
             dtype: Any = jnp.float32) -> Model:
        return build(Seq2seqConfig(net, vocab_size, question_length, answer_length, start_id,
                                   wordvec_size, hidden_size, grads, dtype))

    return make


seq2seq = _builder("seq2seq")
seq2seq.__name__ = seq2seq.__qualname__ = "seq2seq"
seq2seq.__doc__ = """The book's ``Seq2seq`` (chapter 7) as a :class:`fnnet.layers.Model`:
an LSTM encoder whose last ``h`` starts an LSTM decoder (see the module docstring).

``vocab_size`` V, ``question_length`` T_q, ``answer_length`` T (the characters the decoder
writes, its start symbol ``start_id`` not counted); ``wordvec_size`` D (the book's 16),
``hidden_size`` H (128); ``grads``: ``"manual"`` (hand rules) or ``"autodiff"``.

>>> import jax
>>> net = seq2seq(13, 7, 4, start_id=12)
>>> params = net.init(jax.random.key(0))
>>> params["decoder"]["affine"]["W"].shape, net.output_shape
((128, 13), (4, 13))
"""
peeky_seq2seq = _builder("peeky")
peeky_seq2seq.__name__ = peeky_seq2seq.__qualname__ = "peeky_seq2seq"
peeky_seq2seq.__doc__ = """The book's ``PeekySeq2seq`` (chapter 7) as a
:class:`fnnet.layers.Model`: the encoder's ``h`` also enters the decoder's LSTM and affine at
every step (see the module docstring; arguments as :func:`seq2seq`)."""
attention_seq2seq = _builder("attention")
attention_seq2seq.__name__ = attention_seq2seq.__qualname__ = "attention_seq2seq"
attention_seq2seq.__doc__ = """The book's ``AttentionSeq2seq`` (chapter 8) as a
:class:`fnnet.layers.Model`: the decoder attends over all the encoder's states and its affine
reads ``[context, h]`` (see the module docstring; arguments as :func:`seq2seq`)."""


def config_for(net: str, data: Any, *, wordvec_size: int = 16, hidden_size: int | None = None,
               grads: str = "manual", dtype: Any = jnp.float32) -> Seq2seqConfig:
    """The :class:`Seq2seqConfig` of ``net`` for a :class:`fnnet.data.Seq2seqData` (its
    vocabulary, lengths and start symbol; ``hidden_size`` default: :data:`DEFAULT_HIDDEN`)."""
    hidden = DEFAULT_HIDDEN.get(data.name, 128) if hidden_size is None else hidden_size
    return check_config(Seq2seqConfig(net, len(data.vocab), data.question_length,
                                      data.answer_length, data.start_id, wordvec_size, hidden,
                                      grads, dtype))


# --- a sample batch for gradient checks ----------------------------------------------------

SAMPLE_DATASETS = {"seq2seq": "addition", "peeky": "addition", "attention": "date"}
"""The data set each net's sample batch comes from (the book's pairing)."""


def sample_batch(net: str, *, batch_size: int = 3, seed: int = 0, dtype: Any = jnp.float64,
                 hidden_size: int | None = None, wordvec_size: int = 16
                 ) -> tuple[Callable[..., Model], np.ndarray, np.ndarray]:
    """A deterministic batch for a gradient check of ``net``: ``(build, x, t)``.

    ``build(grads=...) -> Model`` makes the net (the book's sizes: D = 16, H = 128 for
    addition, 256 for dates, unless given; params of ``dtype``); ``x``, ``t`` are
    ``batch_size`` problems of :data:`SAMPLE_DATASETS` — reversed questions, as the book
    trains them — at the rows ``np.random.default_rng(seed).permutation`` picks from the
    first 1 000 pairs of :func:`fnnet.data.load_seq2seq`. ``T_q ≠ T`` in both sets (7 vs
    4, 29 vs 10). This is what ``fnnet gradcheck --net seq2seq|peeky|attention`` checks:
    ``fnnet.gradcheck.compare_model_grads(build, x, t)``.
    """
    from fnnet.data.seq2seq import load_seq2seq

    if net not in SEQ2SEQ_NETS:
        raise ValueError(f"net must be one of {SEQ2SEQ_NETS}; got {net!r}")
    batch_size = check_int("batch_size", batch_size)
    data = load_seq2seq(SAMPLE_DATASETS[net], reverse=True, size=1_000)
    if batch_size > len(data.x_train):
        raise ValueError(f"batch_size must be <= {len(data.x_train)}; got {batch_size}")
    rows = np.random.default_rng(seed).permutation(len(data.x_train))[:batch_size]
    base = config_for(net, data, wordvec_size=wordvec_size, hidden_size=hidden_size,
                      dtype=dtype)

    def build_net(*, grads: str = "manual") -> Model:
        return build(base._replace(grads=grads))

    return build_net, data.x_train[rows], data.t_train[rows]
