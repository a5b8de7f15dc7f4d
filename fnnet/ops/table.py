"""The one table of ops: each op declared once, as a (hand rule, reference) pair.

:mod:`fnnet.manual` and :mod:`fnnet.autodiff` are built from :data:`OPS` (``manual`` and
``reference`` respectively, under the same name), and the agreement tests iterate over it: an
op added here without a test row fails the suite. To add an op with a hand rule: write the
``custom_vjp`` and its plain-``jnp`` reference in an ops module, add one row below, and one
row to the test table in ``tests/test_ops_agreement.py``.

Each manual op runs inside ``jax.named_scope(<its name>)``, so its equations carry the op's
name in jaxprs, HLO metadata and profiles; :mod:`fnnet.graph` draws each call of an op as one
node by it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax

from fnnet.ops import (
    activations,
    attention,
    bptt,
    conv,
    embedding,
    graph,
    linear,
    losses,
    norm,
    recurrent,
    time_layers,
)


class OpPair(NamedTuple):
    """An op's hand-derived ``custom_vjp`` (``manual``) and its ``jax.grad`` ``reference``."""

    manual: Callable
    reference: Callable


def _pair(manual: Callable, reference: Callable) -> OpPair:
    if inspect.signature(manual) != inspect.signature(reference):
        raise TypeError(f"{manual.__name__} and {reference.__name__} must have the same "
                        f"signature; got {inspect.signature(manual)} and "
                        f"{inspect.signature(reference)}")
    return OpPair(manual, reference)


def _named(name: str, manual: Callable) -> Callable:
    """``manual`` run inside ``jax.named_scope(name)`` (same signature, name and docstring)."""

    @functools.wraps(manual)
    def op(*args, **kwargs):
        with jax.named_scope(name):
            return manual(*args, **kwargs)

    return op


OPS: dict[str, OpPair] = {
    "sigmoid": _pair(activations.sigmoid, activations.sigmoid_reference),
    "relu": _pair(activations.relu, activations.relu_reference),
    "tanh": _pair(activations.tanh, activations.tanh_reference),
    "affine": _pair(linear.affine, linear.affine_reference),
    "matmul": _pair(linear.matmul, linear.matmul_reference),
    "softmax": _pair(losses.softmax, losses.softmax_reference),
    "softmax_cross_entropy": _pair(losses.softmax_cross_entropy,
                                   losses.softmax_cross_entropy_reference),
    "cross_entropy_error": _pair(losses.cross_entropy_error, losses.cross_entropy_error_reference),
    "mean_squared_error": _pair(losses.mean_squared_error, losses.mean_squared_error_reference),
    "add": _pair(graph.add, graph.add_reference),
    "mul": _pair(graph.mul, graph.mul_reference),
    "branch": _pair(graph.branch, graph.branch_reference),
    "repeat": _pair(graph.repeat, graph.repeat_reference),
    "sum": _pair(graph.sum_, graph.sum_reference),  # the Sum node (not the builtin)
    "conv2d": _pair(conv.conv2d, conv.conv2d_reference),
    "max_pool2d": _pair(conv.max_pool2d, conv.max_pool2d_reference),
    "dropout": _pair(norm.dropout, norm.dropout_reference),
    "batch_norm": _pair(norm.batch_norm, norm.batch_norm_reference),
    "batch_norm_inference": _pair(norm.batch_norm_inference, norm.batch_norm_inference_reference),
    # the sequel: word vectors, recurrent layers, attention
    "embedding": _pair(embedding.embedding, embedding.embedding_reference),
    "embedding_dot": _pair(embedding.embedding_dot, embedding.embedding_dot_reference),
    "sigmoid_cross_entropy": _pair(embedding.sigmoid_cross_entropy,
                                   embedding.sigmoid_cross_entropy_reference),
    "rnn": _pair(recurrent.rnn, recurrent.rnn_reference),
    "lstm": _pair(recurrent.lstm, recurrent.lstm_reference),
    "gru": _pair(recurrent.gru, recurrent.gru_reference),
    "time_rnn": _pair(bptt.time_rnn, bptt.time_rnn_reference),
    "time_lstm": _pair(bptt.time_lstm, bptt.time_lstm_reference),
    "time_gru": _pair(bptt.time_gru, bptt.time_gru_reference),
    "time_affine": _pair(time_layers.time_affine, time_layers.time_affine_reference),
    "time_softmax_cross_entropy": _pair(time_layers.time_softmax_cross_entropy,
                                        time_layers.time_softmax_cross_entropy_reference),
    "attention_weight": _pair(attention.attention_weight, attention.attention_weight_reference),
    "weight_sum": _pair(attention.weight_sum, attention.weight_sum_reference),
    "time_attention": _pair(attention.time_attention, attention.time_attention_reference),
}

OPS = {name: OpPair(_named(name, pair.manual), pair.reference) for name, pair in OPS.items()}
