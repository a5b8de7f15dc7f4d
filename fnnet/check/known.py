"""The book's layer classes fnnet knows: which op of :data:`fnnet.ops.table.OPS` each one is,
how its forward's arguments and parameters map onto that op, the textbook mistakes its
forward is known for, and how to build one for ``fnnet check-layer``.

The op is looked up by name in ``OPS`` when a check runs: a class whose op fnnet does not
have (yet) is still checked against central differences, only not against fnnet.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BOOK_EPSILON", "KNOWN_LAYERS", "KnownLayer", "bind_by_name", "clipped_loss",
           "match_known"]

Values = Mapping[str, Any]


@dataclass(frozen=True)
class KnownLayer:
    """One of the book's layer classes.

    Attributes:
      op: its op's name in :data:`fnnet.ops.table.OPS`.
      inputs: the roles of ``forward``'s arguments (``"x"``, ``"t"``, ``"idx"``, ``"h_prev"``).
      params: the parameter names, in the order of the sequel's ``params`` list.
      call: ``call(op, values)``: the op applied to the values by role and parameter name.
      formula: the forward in words, for the report.
      kind: ``"plain"``, ``"softmax"`` (a class axis, no labels) or ``"loss"`` (scalar loss
        of logits ``x`` and labels ``t``).
      logits: ``x`` is logits: large ones (±1e3) are tried.
      mistakes: ``(words, forward)`` pairs: a wrong forward (NumPy, of the values) that a
        reader's class is known to compute; matching one names it.
      label_probability: for a loss, the probability ``p`` it gives each example's label
        (NumPy, of the values): the book's loss is ``−mean log(p + 1e-7)`` (its
        ``cross_entropy_error``); a class whose forward is that clipped form gets a warning at
        large logits instead of a failure, and a tolerance widened by the clip's own error
        ``1e-7/min p`` against central differences (see :func:`clipped_loss`).
      make: ``make(rng) -> (constructor args, forward inputs)`` for ``fnnet check-layer``.
    """

    op: str
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    call: Callable[[Callable, Values], Any]
    formula: str
    kind: str = "plain"
    logits: bool = False
    mistakes: tuple[tuple[str, Callable[[Values], Any]], ...] = ()
    label_probability: Callable[[Values], np.ndarray] | None = None
    make: Callable[[np.random.Generator], tuple[tuple, tuple]] | None = None


def bind_by_name(op: Callable, values: Values, aliases: Mapping[str, str] | None = None) -> Any:
    """``op`` called with the values its parameters are named after (``aliases`` maps an op
    parameter name to a role, e.g. ``{"h": "h_prev"}``); ``TypeError`` naming what is
    missing when a required parameter has no value."""
    aliases = dict(aliases or {})
    kwargs, missing = {}, []
    for name, p in inspect.signature(op).parameters.items():
        role = aliases.get(name, name)
        if role in values:
            kwargs[name] = values[role]
        elif p.default is p.empty:
            missing.append(name)
    if missing:
        raise TypeError(f"fnnet's op takes {tuple(inspect.signature(op).parameters)}; no value "
                        f"for {missing}")
    return op(**kwargs)


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return scale * rng.standard_normal(shape)


def _away_from_zero(rng: np.random.Generator, *shape: int) -> np.ndarray:
    values = rng.standard_normal(shape)
    return np.sign(values) * (0.2 + np.abs(values))


def _exp(x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.exp(x)


def _softmax_whole_batch(x: np.ndarray) -> np.ndarray:
    e = _exp(x - np.max(x))
    return e / np.sum(e)


def _sigmoid_typo(values: Values) -> np.ndarray:
    with np.errstate(all="ignore"):
        return 1 / (1 + np.log(-values["x"]))


def _conv_make(rng):
    return (_normal(rng, 2, 1, 3, 3, scale=0.5), _normal(rng, 2)), (_normal(rng, 2, 1, 5, 5),)


def _pool_make(rng):
    x = (rng.permutation(32) / 32.0 - 0.5).reshape(2, 1, 4, 4)  # distinct: no ties
    return (2, 2, 2), (x,)


def _labels(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return rng.integers(0, c, size=n)


KNOWN_LAYERS: dict[str, KnownLayer] = {
    "Sigmoid": KnownLayer(
        "sigmoid", ("x",), (), lambda op, v: op(v["x"]), "1/(1 + exp(−x))", logits=True,
        mistakes=(("1/(1 + log(−x)): the published typo; sigmoid is 1/(1 + exp(−x))",
                   _sigmoid_typo),
                  ("1/(1 + exp(x)): the sign of x lost", lambda v: 1 / (1 + _exp(v["x"])))),
        make=lambda rng: ((), (_normal(rng, 3, 4),))),
    "Relu": KnownLayer(
        "relu", ("x",), (), lambda op, v: op(v["x"]), "max(x, 0)",
        make=lambda rng: ((), (_away_from_zero(rng, 3, 4),))),
    "Tanh": KnownLayer(
        "tanh", ("x",), (), lambda op, v: op(v["x"]), "tanh(x)",
        make=lambda rng: ((), (_normal(rng, 3, 4),))),
    "Affine": KnownLayer(
        "affine", ("x",), ("W", "b"),
        lambda op, v: op(v["x"].reshape(v["x"].shape[0], -1), v["W"], v["b"]), "x·W + b",
        make=lambda rng: ((_normal(rng, 4, 5), _normal(rng, 5)), (_normal(rng, 3, 4),))),
    "MatMul": KnownLayer(
        "matmul", ("x",), ("W",), lambda op, v: op(v["x"], v["W"]), "x·W",
        make=lambda rng: ((_normal(rng, 4, 5),), (_normal(rng, 3, 4),))),
    "Softmax": KnownLayer(
        "softmax", ("x",), (), lambda op, v: op(v["x"]), "exp(x − max x) / Σ_row exp(x − max x)",
        kind="softmax", logits=True,
        mistakes=(("normalised over the whole batch, not per row (np.sum(np.exp(x)) without "
                   "axis=-1, keepdims=True)", lambda v: _softmax_whole_batch(v["x"])),),
        make=lambda rng: ((), (_normal(rng, 4, 10, scale=2.0),))),
    "SoftmaxWithLoss": KnownLayer(
        "softmax_cross_entropy", ("x", "t"), (), lambda op, v: op(v["x"], v["t"]),
        "−(1/N) Σ t·log softmax(x) (the batch mean)", kind="loss", logits=True,
        label_probability=lambda v: _softmax_label_probability(v["x"], v["t"]),
        make=lambda rng: ((), (_normal(rng, 4, 10), _labels(rng, 4, 10)))),
    "SigmoidWithLoss": KnownLayer(
        "sigmoid_cross_entropy", ("x", "t"), (), lambda op, v: op(v["x"], v["t"]),
        "mean of −t·log σ(x) − (1 − t)·log(1 − σ(x))", kind="loss", logits=True,
        label_probability=lambda v: _sigmoid_label_probability(v["x"], v["t"]),
        make=lambda rng: ((), (_normal(rng, 6, scale=2.0), _labels(rng, 6, 2)))),
    "Embedding": KnownLayer(
        "embedding", ("idx",), ("W",), lambda op, v: op(v["W"], v["idx"]), "W[idx]",
        make=lambda rng: ((_normal(rng, 7, 3),), (np.array([1, 4, 1, 0, 6, 4]),))),
    "RNN": KnownLayer(
        "rnn", ("x", "h_prev"), ("Wx", "Wh", "b"),
        lambda op, v: bind_by_name(op, v, {"h": "h_prev"}), "tanh(h_prev·Wh + x·Wx + b)",
        make=lambda rng: ((_normal(rng, 3, 4, scale=0.5), _normal(rng, 4, 4, scale=0.5),
                           _normal(rng, 4)), (_normal(rng, 2, 3), _normal(rng, 2, 4)))),
    "LSTM": KnownLayer(
        "lstm", ("x", "h_prev", "c_prev"), ("Wx", "Wh", "b"),
        lambda op, v: bind_by_name(op, v, {"h": "h_prev", "c": "c_prev"}),
        "gates f, g, i, o of x·Wx + h_prev·Wh + b; c = f·c_prev + g·i, h = o·tanh(c)",
        make=lambda rng: ((_normal(rng, 3, 16, scale=0.5), _normal(rng, 4, 16, scale=0.5),
                           _normal(rng, 16)),
                          (_normal(rng, 2, 3), _normal(rng, 2, 4), _normal(rng, 2, 4)))),
    "GRU": KnownLayer(
        "gru", ("x", "h_prev"), ("Wx", "Wh", "b"),
        lambda op, v: bind_by_name(op, v, {"h": "h_prev"}),
        "gates z, r and h̃ of x·Wx + h_prev·Wh + b (r·h_prev for h̃); h = (1 − z)·h_prev + z·h̃",
        make=lambda rng: ((_normal(rng, 3, 12, scale=0.5), _normal(rng, 4, 12, scale=0.5),
                           _normal(rng, 12)), (_normal(rng, 2, 3), _normal(rng, 2, 4)))),
    "EmbeddingDot": KnownLayer(
        "embedding_dot", ("h", "idx"), ("W",), lambda op, v: op(v["h"], v["W"], v["idx"]),
        "Σ h·W[idx] per example",
        make=lambda rng: ((_normal(rng, 7, 3),), (_normal(rng, 4, 3), np.array([2, 5, 2, 0])))),
    "Convolution": KnownLayer(
        "conv2d", ("x",), ("W", "b"),
        lambda op, v: op(v["x"], v["W"], v["b"], stride=v["stride"], pad=v["pad"]),
        "the cross-correlation of x with W, plus b", make=_conv_make),
    "Pooling": KnownLayer(
        "max_pool2d", ("x",), (),
        lambda op, v: op(v["x"], pool_h=v["pool_h"], pool_w=v["pool_w"], stride=v["stride"],
                         pad=v["pad"]),
        "the max over each window", make=_pool_make),
}
"""The book's layer classes by name (both books' spellings of the class names)."""

_ALIASES = {"ReLU": "Relu", "TanH": "Tanh"}


BOOK_EPSILON = 1e-7
"""The ``1e-7`` inside the book's ``cross_entropy_error``: ``−mean log(p + 1e-7)``."""


def clipped_loss(known: KnownLayer, values: Values) -> tuple[float, float] | None:
    """The book's clipped loss ``−mean log(p + 1e-7)`` at ``values`` and the relative error
    ``1e-7/min p`` its gradient has against the exact loss's (``None`` if not a loss)."""
    if known.label_probability is None:
        return None
    p = np.asarray(known.label_probability(values), np.float64)
    return float(-np.mean(np.log(p + BOOK_EPSILON))), BOOK_EPSILON / max(float(p.min()), 1e-300)


def _softmax_label_probability(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    t = np.asarray(t)
    labels = t.argmax(axis=-1) if t.ndim == y.ndim else t
    return y[np.arange(len(y)), labels]


def _sigmoid_label_probability(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        y = 1 / (1 + np.exp(-np.asarray(x, np.float64)))
    return np.where(np.asarray(t) == 1, y, 1 - y)


def match_known(class_name: str) -> str | None:
    """The name in :data:`KNOWN_LAYERS` a class name stands for, or ``None``: the name
    itself (or a spelling such as ``ReLU``), else the longest known name it starts with
    (``SigmoidLayer`` → ``Sigmoid``, ``AffineFast`` → ``Affine``).

    >>> match_known("ReLU"), match_known("SoftmaxWithLossV2"), match_known("TimeRNN")
    ('Relu', 'SoftmaxWithLoss', None)
    """
    name = _ALIASES.get(class_name, class_name)
    if name in KNOWN_LAYERS:
        return name
    spellings = {**{k: k for k in KNOWN_LAYERS}, **_ALIASES}
    starts = [k for k in spellings if class_name.startswith(k)]
    return spellings[max(starts, key=len)] if starts else None
