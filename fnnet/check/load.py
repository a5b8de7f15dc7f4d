"""Loading a user's layer class from ``FILE.py:CLASS`` and checking it: what the
``fnnet check-layer`` command runs (:func:`check_layer_main`).

The file is imported as a module of its own with its directory first on ``sys.path`` for
the duration of the import (:func:`fnnet._load.load_attribute`), so the book's layout
(``from common.functions import softmax`` next to the file) works. A class fnnet knows
(:data:`fnnet.check.known.KNOWN_LAYERS`) is built with the book's constructor arguments at
small random sizes; any other class must be constructible without arguments and takes an
input of ``shape``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fnnet._load import SpecError, load_attribute
from fnnet.check.known import KNOWN_LAYERS, match_known

__all__ = ["LayerSpecError", "build_layer", "check_layer_file", "check_layer_main",
           "load_layer_class"]


class LayerSpecError(SpecError):
    """A ``FILE.py:CLASS`` that names no usable layer class (a usage error: exit status 2)."""


def load_layer_class(spec: str) -> type:
    """The class named by ``FILE.py:CLASS``; :class:`LayerSpecError` when there is none.

    >>> load_layer_class("no/such/file.py:Affine")
    Traceback (most recent call last):
    ...
    fnnet.check.load.LayerSpecError: no such file: 'no/such/file.py'
    """
    try:
        cls = load_attribute(spec, "CLASS")
    except SpecError as e:
        raise LayerSpecError(str(e)) from e
    if not inspect.isclass(cls):
        raise LayerSpecError(f"{spec!r} is a {type(cls).__name__}, not a class")
    for method in ("forward", "backward"):
        if not callable(getattr(cls, method, None)):
            raise LayerSpecError(f"{cls.__name__} has no {method}() method (a layer class has "
                                 f"forward and backward, as in the book)")
    return cls


def _one_hot(t: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes)[t]


def build_layer(cls: type, *, name: str | None = None, seed: int = 0,
                shape: Sequence[int] | None = None, labels: str = "int"
                ) -> tuple[Any, tuple[Any, ...]]:
    """An instance of ``cls`` and inputs for its ``forward``.

    A class fnnet knows (by ``name``, default its own) gets the book's constructor arguments
    and inputs at small random sizes (``labels="onehot"``: one-hot labels for a loss);
    another is built as ``cls()`` and each required argument of its ``forward`` gets a
    standard-normal array of ``shape`` (default ``(3, 4)``), except one named like labels
    (``t``, ``labels``, ``target``): integer classes ``(N,)`` in ``[0, shape[-1])``.
    """
    if labels not in ("int", "onehot"):
        raise LayerSpecError(f"labels must be 'int' or 'onehot'; got {labels!r}")
    rng = np.random.default_rng(seed)
    known_name = match_known(name or cls.__name__)
    known = KNOWN_LAYERS[known_name] if known_name else None
    if known is not None and known.make is not None:
        ctor_args, inputs = known.make(rng)
        if known.kind == "loss" and labels == "onehot" and np.ndim(inputs[0]) == 2:
            inputs = (inputs[0], _one_hot(inputs[1], np.shape(inputs[0])[-1]))
        try:
            return cls(*ctor_args), tuple(inputs)
        except Exception as e:
            shapes = ", ".join(str(np.shape(a)) if isinstance(a, np.ndarray) else repr(a)
                               for a in ctor_args)
            raise LayerSpecError(f"{cls.__name__}({shapes}) — the book's {known_name} "
                                 f"constructor — raised {type(e).__name__}: {e}") from e
    try:
        layer = cls()
    except TypeError as e:
        params = tuple(inspect.signature(cls).parameters)
        raise LayerSpecError(
            f"{cls.__name__} is not one of the book's classes fnnet knows "
            f"({', '.join(KNOWN_LAYERS)}) and needs constructor arguments {params}: check it "
            f"from Python, fnnet.check_layer({cls.__name__}(...), x)") from e
    shape = tuple(shape or (3, 4))
    names = [p.name for p in inspect.signature(layer.forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    inputs: list[Any] = []
    for name in names or ["x"]:
        if inputs and name in _LABEL_NAMES:
            t = rng.integers(0, shape[-1], size=shape[0])
            inputs.append(_one_hot(t, shape[-1]) if labels == "onehot" else t)
        else:
            inputs.append(rng.standard_normal(shape))
    return layer, tuple(inputs)


_LABEL_NAMES = ("t", "label", "labels", "target", "targets", "y_true")
"""Names of a ``forward`` argument that takes labels (then integer class indices in
``[0, shape[-1])`` are passed, or one-hot rows)."""


def check_layer_file(spec: str, *, name: str | None = None,
                     shape: Sequence[int] | None = None, labels: str = "int", seed: int = 0,
                     trials: bool = True) -> Any:
    """Load, build and check the layer class of ``FILE.py:CLASS``
    (:func:`load_layer_class`, :func:`build_layer`, :func:`fnnet.check_layer`); the
    :class:`~fnnet.check.layer_report.LayerReport`. ``name``: check it as that book class."""
    from fnnet.check.layer import check_layer

    if name is not None and match_known(name) is None:
        raise LayerSpecError(f"the class to check as must be one of the book's classes fnnet "
                             f"knows ({', '.join(KNOWN_LAYERS)}); got {name!r}")
    cls = load_layer_class(spec)
    layer, inputs = build_layer(cls, name=name, seed=seed, shape=shape, labels=labels)
    return check_layer(layer, *inputs, name=name, seed=seed, trials=trials)


def check_layer_main(spec: str, *, name: str | None = None, shape: Sequence[int] | None = None,
                     labels: str = "int", seed: int = 0, trials: bool = True,
                     print_fn: Callable[[str], Any] = print) -> int:
    """:func:`check_layer_file` with the report printed: 0 when every check passes
    (warnings allowed), 1 otherwise. A spec that names no usable class raises
    :class:`LayerSpecError` (the CLI's usage error, exit 2)."""
    report = check_layer_file(spec, name=name, shape=shape, labels=labels, seed=seed,
                              trials=trials)
    print_fn(report.format_table())
    return 0 if report.ok else 1
