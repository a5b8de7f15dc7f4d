"""The books' networks, built from :mod:`fnnet.layers`, and the registry of their names.

* :mod:`fnnet.nets.mlp` — :func:`two_layer_net`, :func:`multi_layer_net`;
* :mod:`fnnet.nets.conv` — :func:`simple_conv_net`, :func:`deep_conv_net`;
* :mod:`fnnet.nets.word2vec` — :func:`cbow`, :func:`skip_gram` (negative sampling with a
  :class:`UnigramSampler`), models over word ids (:data:`WORD2VEC_NETS`);
* :mod:`fnnet.nets.seq2seq` — the sequel's encoder–decoders ``seq2seq``, ``peeky_seq2seq``
  and ``attention_seq2seq`` (the module keeps the name: ``fnnet.nets.seq2seq.seq2seq``);
  they take character ids, not the classifiers' examples, so they are not in :data:`NETS`.

:data:`NETS` holds the classifiers by the names the command line takes (``--net``);
:func:`build_net` builds one for an example shape and a number of classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fnnet.layers import Model, Shape
from fnnet.nets.conv import deep_conv_net, simple_conv_net
from fnnet.nets.mlp import multi_layer_net, two_layer_net
from fnnet.nets.word2vec import (
    WORD2VEC_NETS,
    UnigramSampler,
    cbow,
    skip_gram,
    unigram_sampler,
)

__all__ = ["BOOK_INIT", "CONV_NETS", "NETS", "WORD2VEC_NETS", "UnigramSampler", "build_net",
           "cbow", "deep_conv_net", "multi_layer_net", "simple_conv_net", "skip_gram",
           "two_layer_net", "unigram_sampler"]


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
