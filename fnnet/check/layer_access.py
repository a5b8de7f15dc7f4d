"""Reaching into a book-style NumPy layer: its parameters and gradients, its forward and
backward calls, and central differences of its forward.

The two books store parameters two ways, and both are supported:

* "Deep Learning from Scratch" (DLFS-1): attributes ``W``, ``b``, … set in ``__init__`` and
  gradients ``dW``, ``db``, … set by ``backward`` — any floating array attribute ``N`` with
  an array attribute ``dN`` after a ``backward`` call;
* the sequel (DLFS-2): lists ``params`` and ``grads`` of equal length, the gradients often
  written in place (``self.grads[0][...] = dW``).

A check works on float64 copies of the parameters (put into the layer, and into every
attribute that held the same array object), perturbs only those copies, and puts the
caller's own arrays back when it ends (:meth:`LayerAccess.float64`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LayerAccess", "Slot", "central_differences", "quietly"]


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """NumPy's overflow and invalid-value warnings off: the checks look at the results."""
    with np.errstate(all="ignore"):
        yield


def _is_float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


@dataclass
class Slot:
    """One parameter of a layer: where it lives and where its gradient appears.

    ``kind`` is ``"list"`` (``layer.params[index]`` / ``layer.grads[index]``) or ``"attr"``
    (``layer.<name>`` / ``layer.d<name>``)."""

    name: str
    kind: str
    index: int = 0

    def get(self, layer: Any) -> np.ndarray:
        return layer.params[self.index] if self.kind == "list" else getattr(layer, self.name)

    def set(self, layer: Any, value: np.ndarray) -> None:
        if self.kind == "list":
            layer.params[self.index] = value
        else:
            setattr(layer, self.name, value)

    def grad(self, layer: Any) -> Any:
        if self.kind == "list":
            return layer.grads[self.index]
        return getattr(layer, "d" + self.name, None)

    def set_grad(self, layer: Any, value: np.ndarray) -> None:
        if self.kind == "list":
            layer.grads[self.index] = value
        else:
            setattr(layer, "d" + self.name, value)


def _arity(method: Callable) -> tuple[int, int]:
    """(required, total) positional parameters of a bound method."""
    params = [p for p in inspect.signature(method).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return sum(p.default is p.empty for p in params), len(params)


class LayerAccess:
    """Calls and parameters of one layer instance (see the module docstring).

    Args:
      layer: the instance; needs ``forward`` and ``backward`` methods.
      param_names: names for the entries of a DLFS-2 ``params`` list (default
        ``params[i]``).
    """

    def __init__(self, layer: Any, param_names: Sequence[str] = ()):
        for method in ("forward", "backward"):
            if not callable(getattr(layer, method, None)):
                raise TypeError(f"check_layer: layer must have a {method}() method (the book's "
                                f"layer classes do); {type(layer).__name__} has none")
        self.layer = layer
        self.param_names = tuple(param_names)
        self.forward_names = tuple(inspect.signature(layer.forward).parameters)
        self.slots: list[Slot] = []

    # --- calls ---------------------------------------------------------------------------

    def forward(self, inputs: Sequence[Any]) -> tuple[np.ndarray, ...]:
        """``layer.forward(*inputs)`` as a tuple of float64 arrays (a loss: one 0-d array)."""
        with quietly():
            out = self.layer.forward(*inputs)
        outs = out if isinstance(out, tuple | list) else (out,)
        return tuple(np.asarray(o, np.float64) for o in outs)

    def backward(self, douts: Sequence[Any]) -> tuple[Any, ...]:
        """``layer.backward(*douts)`` as a tuple (``()`` when it returns ``None``)."""
        with quietly():
            grads = self.layer.backward(*douts)
        if grads is None:
            return ()
        return tuple(grads) if isinstance(grads, tuple | list) else (grads,)

    # --- parameters ----------------------------------------------------------------------

    def discover(self) -> list[Slot]:
        """The parameter slots, read after one ``backward`` (DLFS-1 gradients appear then)."""
        layer = self.layer
        params, grads = getattr(layer, "params", None), getattr(layer, "grads", None)
        if isinstance(params, list) and isinstance(grads, list) and params \
                and len(params) == len(grads):
            names = self.param_names if len(self.param_names) == len(params) else \
                tuple(f"params[{i}]" for i in range(len(params)))
            self.slots = [Slot(name, "list", i) for i, name in enumerate(names)]
        else:
            found = []
            for name, value in vars(layer).items():
                grad = getattr(layer, "d" + name, None)
                if _is_float_array(value) and isinstance(grad, np.ndarray):
                    found.append(Slot(name, "attr"))  # a wrong shape is reported, not skipped
            self.slots = found
        return self.slots

    @contextlib.contextmanager
    def float64(self) -> Iterator[None]:
        """Float64 copies of the parameters (and zeroed float64 gradient arrays for the
        DLFS-2 in-place writes) for the duration; the caller's arrays back afterwards."""
        layer, saved, aliases = self.layer, [], []
        for slot in self.slots:
            original, grad = slot.get(layer), slot.grad(layer)
            copy = np.array(original, np.float64)
            for attr, value in list(vars(layer).items()):
                if value is original and not (slot.kind == "attr" and attr == slot.name):
                    aliases.append((attr, value))
                    setattr(layer, attr, copy)
            saved.append((slot, original, grad))
            slot.set(layer, copy)
            if slot.kind == "list" and isinstance(grad, np.ndarray):
                slot.set_grad(layer, np.zeros(np.shape(original), np.float64))
        try:
            yield
        finally:
            for slot, original, grad in saved:
                slot.set(layer, original)
                if slot.kind == "list" and grad is not None:
                    slot.set_grad(layer, grad)
            for attr, value in aliases:
                setattr(layer, attr, value)

    def param_grads(self) -> list[np.ndarray | None]:
        """Copies of the gradients the last ``backward`` left, one per slot."""
        grads = []
        for slot in self.slots:
            grad = slot.grad(self.layer)
            grads.append(None if grad is None else np.array(grad, np.float64))
        return grads


def central_differences(loss: Callable[[], float], array: np.ndarray, indices: np.ndarray
                        ) -> tuple[np.ndarray, ...]:
    """Central differences of ``loss()`` in the entries ``indices`` of ``array`` (a float64
    array the loss reads, perturbed in place and restored entry by entry).

    As :func:`fnnet.gradcheck.compare_grads` (NumPy here: the forward is the user's NumPy
    code): step ``h = ∛ε·max(1, |θ|)``, the difference divided by the step actually taken,
    and for kink detection the same with ``h/2`` plus the slope jump
    ``|S(h) − 4·S(h/2)|/h`` and its rounding bound (``S(h) = L(θ+h) + L(θ−h) − 2L(θ)``).
    Returns ``(full, half, jump, rounding)``, each of ``len(indices)``.
    """
    eps = float(np.finfo(np.float64).eps)
    center = float(loss())
    out = np.zeros((4, len(indices)))
    flat = array.reshape(-1)
    if not np.shares_memory(flat, array):
        raise ValueError("central_differences: array must be contiguous (perturbed in place)")
    for k, i in enumerate(indices):
        theta = float(flat[i])
        h = float(np.cbrt(eps)) * max(1.0, abs(theta))
        values = []
        for step in (theta + h, theta - h, theta + h / 2, theta - h / 2):
            flat[i] = step
            values.append(float(loss()))
        flat[i] = theta
        plus, minus, half_plus, half_minus = values
        actual = (theta + h) - (theta - h)
        second, second_half = plus + minus - 2 * center, half_plus + half_minus - 2 * center
        out[:, k] = ((plus - minus) / actual,
                     (half_plus - half_minus) / ((theta + h / 2) - (theta - h / 2)),
                     abs(second - 4 * second_half) / h,
                     16 * eps * max(abs(center), 1e-30) / h)
    return tuple(out)


def forward_arity(layer: Any) -> tuple[int, int]:
    """(required, total) positional parameters of ``layer.forward``."""
    return _arity(layer.forward)
