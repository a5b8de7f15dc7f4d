"""The sequel's recurrent language models: ``SimpleRnnlm`` (chapter 5), ``Rnnlm`` and
``BetterRnnlm`` (chapter 6), built from :mod:`fnnet.layers`.

Each is a :class:`fnnet.layers.Model` over word ids: ``x (N, T)`` ids in ``[0, V)``, labels
``t (N, T)`` the next word of each position (``-1``: ignored), logits ``(N, T, V)``. The loss
is the book's TimeSoftmaxWithLoss over the output TimeAffine, computed by the fused
:func:`fnnet.ops.time_layers.time_affine_softmax_cross_entropy` (its hand rule never holds
the ``(N·T, V)`` logits; ``grads="autodiff"`` differentiates the two references composed).

The recurrent layers are stateful (the book's ``stateful=True``): the model's state holds
each layer's last ``h`` (and ``c``), ``{}`` meaning zeros, and ``loss_and_state`` returns the
state after the chunk so that truncated BPTT carries it to the next one
(:mod:`fnnet.train_lm`). ``loss_and_state(..., train=False)`` is the evaluation-mode loss
with the state carried — what the perplexity of a whole split needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnnet._checks import check_fraction, check_int
from fnnet.init import Initializer, draws_as_one, resolve
from fnnet.layers import (
    CELLS,
    Layer,
    Model,
    Params,
    State,
    dropout_layer,
    embedding_layer,
    ops_for,
    recurrent_layer,
    serial,
)


def language_model(
    layers: Sequence[tuple[str, Layer]],
    vocabulary_size: int,
    *,
    time_size: int = 35,
    tie_to: str | None = None,
    output_init: str | float | Initializer = "xavier",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Model:
    """A :class:`Model` predicting the next word: ``layers`` (ids ``(T,)`` → features
    ``(T, H)``), then the output TimeAffine ``(T, H) → (T, V)`` named ``"affine"`` and the
    softmax cross-entropy at every position (mean over the labels that are not ``-1``).

    Args:
      layers: ``(name, layer)`` pairs, the first taking word ids (an embedding).
      vocabulary_size: ``V``, the classes and the range of the input ids.
      time_size: the ``T`` of ``input_shape`` (the model itself takes any ``T``).
      tie_to: weight tying (the book's BetterRnnlm): the name of an embedding layer of
        ``layers`` whose ``W (V, D)`` is the output affine's weight, transposed — one
        parameter, used twice, whose gradient is the sum of both uses. Needs ``H = D``.
        The output affine then has only its bias ``b``.
      output_init: the output weight's initialiser (the book's ``randn(H, V)/√H``).
      grads: ``"manual"`` or ``"autodiff"``; dtype: parameter dtype.

    ``loss_and_state(params, state, x, t, *, key=None, train=True)`` also takes
    ``train=False`` (dropout off), for evaluation with the state carried.
    """
    V = check_int("vocabulary_size", vocabulary_size, minimum=2)
    time_size = check_int("time_size", time_size)
    ops = ops_for(grads)
    body = serial(*layers)
    names = [name for name, _ in layers]
    if "affine" in names:
        raise ValueError("language_model: the name 'affine' is the output layer's")
    if tie_to is not None and tie_to not in names:
        raise ValueError(f"language_model: tie_to={tie_to!r} is not one of the layers {names}")
    initializer = resolve(output_init)
    input_shape = (time_size,)

    def init_all(key: jax.Array) -> Params:
        body_key, head_key = jax.random.split(key)
        shape, params, _ = body.init(body_key, input_shape)
        H = shape[-1]
        if tie_to is None:
            params["affine"] = {"W": initializer(head_key, (H, V), dtype)}
        else:
            tied = params[tie_to]["W"]
            if tied.shape != (V, H):
                raise ValueError(f"language_model: weight tying needs the embedding {tie_to!r} "
                                 f"to be (V, H) = ({V}, {H}), the output affine transposed; "
                                 f"got {tied.shape} (make wordvec_size = hidden_size)")
            params["affine"] = {}
        params["affine"]["b"] = jnp.zeros((V,), dtype)
        return params

    init = draws_as_one(init_all)

    def output_weight(params: Params) -> tuple[jax.Array, jax.Array]:
        W = params[tie_to]["W"].T if tie_to is not None else params["affine"]["W"]
        return W, params["affine"]["b"]

    def features(params: Params, state: State | None, x: jax.Array, key: jax.Array | None,
                 train: bool) -> tuple[jax.Array, State]:
        body_params = {k: v for k, v in params.items() if k != "affine"}
        return body.apply(body_params, {} if state is None else state, x, key=key, train=train)

    def init_state() -> State:
        return {}

    def apply(params: Params, x: jax.Array, *, state: State | None = None,
              key: jax.Array | None = None, train: bool = False) -> jax.Array:
        hs, _ = features(params, state, x, key, train)
        return ops.time_affine(hs, *output_weight(params))

    def loss_and_state(params: Params, state: State, x: jax.Array, t: jax.Array, *,
                       key: jax.Array | None = None, train: bool = True
                       ) -> tuple[jax.Array, State]:
        hs, new_state = features(params, state, x, key, train)
        return ops.time_affine_softmax_cross_entropy(hs, *output_weight(params), t), new_state

    def loss(params: Params, x: jax.Array, t: jax.Array, *, state: State | None = None,
             key: jax.Array | None = None, train: bool = True) -> jax.Array:
        return loss_and_state(params, {} if state is None else state, x, t, key=key,
                              train=train)[0]

    def accuracy(params: Params, x: jax.Array, t: jax.Array, *,
                 state: State | None = None) -> jax.Array:
        hits = jnp.argmax(apply(params, x, state=state), axis=-1) == t
        counted = t != -1
        return jnp.sum(hits & counted) / jnp.maximum(jnp.sum(counted), 1)

    return Model(init, init_state, apply, loss, loss_and_state, accuracy, input_shape,
                 (time_size, V), V)


# --- the book's three models ---------------------------------------------------------------


def simple_rnnlm(vocabulary_size: int, wordvec_size: int = 100, hidden_size: int = 100, *,
                 time_size: int = 5, embedding_init: str | float | Initializer = 0.01,
                 grads: str = "manual", dtype: jnp.dtype = jnp.float32) -> Model:
    """The book's ``SimpleRnnlm`` (chapter 5): TimeEmbedding → TimeRNN (stateful) →
    TimeAffine → TimeSoftmaxWithLoss.

    Params: ``embedding/W (V, D)`` ~ N(0, 0.01²); ``rnn/Wx (D, H)``, ``rnn/Wh (H, H)`` ~
    N(0, 1/fan_in), ``rnn/b = 0``; ``affine/W (H, V)`` ~ N(0, 1/H), ``affine/b = 0``.
    ``embedding_init``: the embedding's initialiser (the book's std 0.01; the gradient check
    uses 1, where the recurrent layers' gradients are not tiny).

    >>> import jax
    >>> net = simple_rnnlm(418, 100, 100)
    >>> params = net.init(jax.random.key(0))
    >>> params["rnn"]["Wh"].shape, net.output_shape
    ((100, 100), (5, 418))
    """
    return rnnlm(vocabulary_size, wordvec_size, hidden_size, cell="rnn", time_size=time_size,
                 embedding_init=embedding_init, grads=grads, dtype=dtype)


def rnnlm(vocabulary_size: int, wordvec_size: int = 100, hidden_size: int = 100, *,
          cell: str = "lstm", time_size: int = 35,
          embedding_init: str | float | Initializer = 0.01, grads: str = "manual",
          dtype: jnp.dtype = jnp.float32) -> Model:
    """The book's ``Rnnlm`` (chapter 6): TimeEmbedding → TimeLSTM (stateful) → TimeAffine →
    TimeSoftmaxWithLoss; ``cell="gru"`` (or ``"rnn"``) swaps the recurrent layer.

    Params: ``embedding/W (V, D)``; ``lstm/Wx (D, 4H)``, ``lstm/Wh (H, 4H)``, ``lstm/b``
    (blocks f, g, i, o); ``affine/W (H, V)``, ``affine/b`` (the layer is named after the
    cell). Initialised as the book does (see :func:`simple_rnnlm`, also for
    ``embedding_init``).
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}; got {cell!r}")
    D, H = check_int("wordvec_size", wordvec_size), check_int("hidden_size", hidden_size)
    layers = [("embedding", embedding_layer(vocabulary_size, D, weight_init=embedding_init,
                                             grads=grads, dtype=dtype)),
              (cell, recurrent_layer(cell, H, stateful=True, grads=grads, dtype=dtype))]
    return language_model(layers, vocabulary_size, time_size=time_size, grads=grads,
                          dtype=dtype)


def better_rnnlm(vocabulary_size: int, wordvec_size: int = 650, hidden_size: int = 650, *,
                 dropout: float = 0.5, tie_weights: bool = True, cell: str = "lstm",
                 time_size: int = 35, embedding_init: str | float | Initializer = 0.01,
                 grads: str = "manual", dtype: jnp.dtype = jnp.float32) -> Model:
    """The book's ``BetterRnnlm`` (chapter 6): TimeEmbedding → TimeDropout → TimeLSTM →
    TimeDropout → TimeLSTM → TimeDropout → TimeAffine, the affine's weight tied to the
    embedding (``affine W = embedding Wᵀ``: one parameter, both gradients summed).

    The dropouts are the book's TimeDropout: inverted dropout of every entry with
    probability ``dropout`` in training, the identity in evaluation (their masks come from
    the key of the training step). Layers: ``embedding, dropout1, lstm1, dropout2, lstm2,
    dropout3``, then ``affine`` (only its bias ``b`` when tied). Weight tying needs
    ``wordvec_size == hidden_size`` (the book's 650 and 650).
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}; got {cell!r}")
    D, H = check_int("wordvec_size", wordvec_size), check_int("hidden_size", hidden_size)
    rate = check_fraction("dropout", dropout)
    if tie_weights and D != H:
        raise ValueError(f"better_rnnlm: weight tying needs wordvec_size = hidden_size; got "
                         f"{D} and {H} (or pass tie_weights=False)")
    layers = [("embedding", embedding_layer(vocabulary_size, D, weight_init=embedding_init,
                                             grads=grads, dtype=dtype))]
    for i in (1, 2):
        layers += [(f"dropout{i}", dropout_layer(rate, grads=grads)),
                   (f"{cell}{i}", recurrent_layer(cell, H, stateful=True, grads=grads,
                                                  dtype=dtype))]
    layers.append(("dropout3", dropout_layer(rate, grads=grads)))
    return language_model(layers, vocabulary_size, time_size=time_size,
                          tie_to="embedding" if tie_weights else None, grads=grads,
                          dtype=dtype)


# --- the book's runs -----------------------------------------------------------------------


class BookRun(NamedTuple):
    """The settings of the book's training script for a model (``None``: not used)."""

    wordvec_size: int
    hidden_size: int
    batch_size: int
    time_size: int
    lr: float
    max_grad: float | None
    epochs: int
    dropout: float | None = None
    lr_decay: float | None = None
    corpus_size: int | None = None
    streams: str = "continue"
    script: str = ""


BOOK_RUNS: dict[str, BookRun] = {
    "simple-rnnlm": BookRun(100, 100, 10, 5, 0.1, None, 100, corpus_size=1000,
                            script="ch05/train_custom_loop.py"),
    "rnnlm": BookRun(100, 100, 20, 35, 20.0, 0.25, 4, script="ch06/train_rnnlm.py"),
    "better-rnnlm": BookRun(650, 650, 20, 35, 20.0, 0.25, 40, dropout=0.5, lr_decay=4.0,
                            streams="restart", script="ch06/train_better_rnnlm.py"),
}
"""Each language model's run in the book (the defaults of ``fnnet lm``): SGD throughout;
``corpus_size``: ch5 trains on the first 1 000 words; ``lr_decay``: the learning rate ÷ 4
whenever the held-out perplexity does not improve; ``streams``: ``"continue"`` where the
script trains all its epochs in one ``fit`` (the streams run on, the state carried),
``"restart"`` where it calls ``fit(max_epoch=1)`` per epoch and resets the state
(:func:`fnnet.train_lm.sequence_batches`)."""
