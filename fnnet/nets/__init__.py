"""The books' networks, built from :mod:`fnnet.layers`, and the registry of their names.

* :mod:`fnnet.nets.mlp` — :func:`two_layer_net`, :func:`multi_layer_net`;
* :mod:`fnnet.nets.conv` — :func:`simple_conv_net`, :func:`deep_conv_net`;
* :mod:`fnnet.nets.word2vec` — :func:`cbow`, :func:`skip_gram` (negative sampling with a
  :class:`UnigramSampler`), models over word ids (:data:`WORD2VEC_NETS`);
* :mod:`fnnet.nets.rnnlm` — the sequel's language models :func:`simple_rnnlm`,
  :func:`rnnlm`, :func:`better_rnnlm` (and :func:`language_model` to build others);
* :mod:`fnnet.nets.seq2seq` — the sequel's encoder–decoders ``seq2seq``, ``peeky_seq2seq``
  and ``attention_seq2seq`` (the module keeps the name: ``fnnet.nets.seq2seq.seq2seq``);
  they take character ids, not the classifiers' examples, so they are not in :data:`NETS`.

:data:`NETS` holds the classifiers by the names the command line takes (``--net``);
:func:`build_net` builds one for an example shape and a number of classes. :data:`LM_NETS`
holds the language models (``fnnet lm --net``). :data:`SAMPLED_NETS` holds the nets that
bring their own sample batch to ``fnnet gradcheck`` (nets over word ids: no data set needed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from fnnet.layers import Model, Shape
from fnnet.nets.conv import deep_conv_net, simple_conv_net
from fnnet.nets.mlp import multi_layer_net, two_layer_net
from fnnet.nets.rnnlm import BOOK_RUNS, better_rnnlm, language_model, rnnlm, simple_rnnlm
from fnnet.nets.word2vec import (
    WORD2VEC_NETS,
    UnigramSampler,
    cbow,
    sample_batch,
    skip_gram,
    toy_net,
    unigram_sampler,
)

__all__ = ["BOOK_INIT", "BOOK_RUNS", "CONV_NETS", "LM_NETS", "NETS", "SAMPLED_NETS",
           "WORD2VEC_NETS", "SampledNet", "UnigramSampler", "better_rnnlm", "build_net", "cbow",
           "deep_conv_net", "language_model", "multi_layer_net", "rnnlm", "sample_ids",
           "simple_conv_net", "simple_rnnlm", "skip_gram", "two_layer_net", "unigram_sampler"]


def _two_layer(input_shape: Shape, num_classes: int, *, hidden: Sequence[int] = (50,),
               **options: Any) -> Model:
    if len(hidden) != 1:
        raise ValueError(f"the two-layer net has exactly one hidden layer; got {len(hidden)} "
                         f"hidden sizes {list(hidden)} (use the mlp for more)")
    return multi_layer_net(_features(input_shape), hidden, num_classes, **options)


def _mlp(input_shape: Shape, num_classes: int, *, hidden: Sequence[int] = (50,),
         **options: Any) -> Model:
    return multi_layer_net(_features(input_shape), hidden, num_classes, **options)


def _features(input_shape: Shape) -> int:
    if len(input_shape) != 1:
        raise ValueError(f"an MLP takes flat examples (D,); got example shape {input_shape}")
    return input_shape[0]


def _conv_net(builder: Callable[..., Model]) -> Callable[..., Model]:
    def build(input_shape: Shape, num_classes: int, **options: Any) -> Model:
        if len(input_shape) != 3:
            raise ValueError(f"a conv net takes images (C, H, W); got example shape "
                             f"{input_shape} (Dataset.as_images() gives them)")
        return builder(input_shape, num_classes, **options)

    return build


NETS: dict[str, Callable[..., Model]] = {
    "two-layer": _two_layer, "mlp": _mlp,
    "simple-conv": _conv_net(simple_conv_net), "deep-conv": _conv_net(deep_conv_net)}
CONV_NETS = ("simple-conv", "deep-conv")
"""The nets by the names ``fnnet train --net`` and ``fnnet gradcheck --net`` take; each is
``build(input_shape, num_classes, **options) -> Model``."""

BOOK_INIT = {"two-layer": "normal", "mlp": "he", "simple-conv": "normal", "deep-conv": "he"}
"""Each net's default ``weight_init``, the book's: ``TwoLayerNet`` and ``SimpleConvNet`` draw
``N(0, 0.01²)`` (``weight_init_std=0.01``); ``MultiLayerNet``, ``MultiLayerNetExtend`` and
``DeepConvNet`` use He (``weight_init_std='relu'``), without which a deep ReLU net at std
0.01 stays at chance."""


def build_net(name: str, input_shape: Shape, num_classes: int, **options: Any) -> Model:
    """The net ``name`` of :data:`NETS` for examples of ``input_shape`` and ``num_classes``,
    with the book's ``weight_init`` for that net (:data:`BOOK_INIT`) unless one is given.

    >>> build_net("mlp", (64,), 10, hidden=[20, 20]).output_shape
    (10,)
    """
    if name not in NETS:
        raise ValueError(f"net must be one of {tuple(NETS)}; got {name!r}")
    options.setdefault("weight_init", BOOK_INIT[name])
    return NETS[name](tuple(input_shape), num_classes, **options)


LM_NETS: dict[str, Callable[..., Model]] = {
    "simple-rnnlm": simple_rnnlm, "rnnlm": rnnlm, "better-rnnlm": better_rnnlm}
"""The language models by the names ``fnnet lm --net`` takes; each is
``build(vocabulary_size, wordvec_size, hidden_size, **options) -> Model``; the book's run of
each is :data:`BOOK_RUNS`."""


# --- nets that bring their own sample batch (the gradient check) -------------------------------


def sample_ids(model: Model, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch for a model over integer ids: inputs ``(B, *input_shape)`` uniform in
    ``[0, input_range)`` and integer labels ``(B, *output_shape[:-1])`` uniform over the
    classes, from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, model.input_range, size=(batch_size, *model.input_shape))
    t = rng.integers(0, model.output_shape[-1], size=(batch_size, *model.output_shape[:-1]))
    return x.astype(np.int32), t.astype(np.int32)


class SampledNet(NamedTuple):
    """A net the gradient check can build and feed by itself.

    ``build(*, grads, dtype, **options) -> Model``; ``options``: the sizes checked by default
    (small, so the numerical check is quick, and an init where no leaf's gradient is tiny
    — a check of near-zero gradients passes trivially; the keys are the builder's keywords and what
    ``fnnet gradcheck`` flags may override); ``sample(model, batch_size, seed) -> (x, t)``
    the batch (default :func:`sample_ids`); ``summary``: one line for ``--help``.
    """

    build: Callable[..., Model]
    options: Mapping[str, Any]
    summary: str
    sample: Callable[[Model, int, int], tuple[np.ndarray, np.ndarray]] = sample_ids


def _lm_check(name: str, **sizes: Any) -> SampledNet:
    def build(**options: Any) -> Model:
        return LM_NETS[name](**options)

    return SampledNet(build, MappingProxyType(sizes),
                      f"the sequel's {BOOK_RUNS[name].script.split('/')[0]} {name} on random "
                      f"word ids")


def _word2vec_check(name: str) -> SampledNet:
    def sample(model: Model, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        del seed  # the book's toy corpus: a fixed batch
        shape = model.input_shape if name == "cbow" else model.output_shape[:-1]
        x, t = sample_batch(name, window_size=shape[0] // 2)
        return x[:batch_size], t[:batch_size]

    return SampledNet(functools.partial(toy_net, name),
                      MappingProxyType({"hidden_size": 3, "window_size": 1}),
                      f"the sequel's ch4 {name} with negative sampling on the toy corpus "
                      f"'You say goodbye and I say hello.'", sample)


def _seq2seq_check(name: str) -> SampledNet:
    def build(*, grads: str = "manual", dtype: Any, hidden_size: int,
              wordvec_size: int) -> Model:
        from fnnet.nets.seq2seq import sample_batch as seq2seq_batch

        return seq2seq_batch(name, batch_size=1, dtype=dtype, hidden_size=hidden_size,
                             wordvec_size=wordvec_size)[0](grads=grads)

    def sample(model: Model, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from fnnet.nets.seq2seq import sample_batch as seq2seq_batch

        _, x, t = seq2seq_batch(name, batch_size=batch_size, seed=seed)
        return x, t

    data = "the date set" if name == "attention" else "the addition set"
    return SampledNet(build, MappingProxyType({"hidden_size": 5, "wordvec_size": 4}),
                      f"the sequel's ch7-8 {name} net on reversed questions of {data}", sample)


SAMPLED_NETS: dict[str, SampledNet] = {
    "simple-rnnlm": _lm_check("simple-rnnlm", vocabulary_size=20, wordvec_size=4,
                              hidden_size=3, time_size=4, embedding_init=1.0),
    "rnnlm": _lm_check("rnnlm", vocabulary_size=20, wordvec_size=4, hidden_size=3,
                       time_size=4, embedding_init=1.0),
    "better-rnnlm": _lm_check("better-rnnlm", vocabulary_size=20, wordvec_size=4,
                              hidden_size=4, time_size=4, embedding_init=1.0,
                              dropout=0.5),
    "cbow": _word2vec_check("cbow"),
    "skip-gram": _word2vec_check("skip-gram"),
    "seq2seq": _seq2seq_check("seq2seq"),
    "peeky": _seq2seq_check("peeky"),
    "attention": _seq2seq_check("attention"),
}
"""Nets ``fnnet gradcheck --net`` checks on a batch of their own (:class:`SampledNet`), by
name: the language models, word2vec and the encoder-decoders."""
