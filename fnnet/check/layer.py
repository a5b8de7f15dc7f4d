"""``check_layer``: a book-style NumPy layer class checked the way such code breaks.

A layer in either book's style (``forward(x)`` or ``forward(x, t)``, ``backward(dout)`` or
``backward(dout=1)``, parameters as attributes ``W, b`` with gradients ``dW, db`` or as
``params``/``grads`` lists; see :mod:`fnnet.check.layer_access`) is checked by

* **gradient**: ``backward`` against float64 central differences of the layer's own
  ``forward``, for every floating input and every parameter, with a random ``dout`` on every
  array output (``dout = 1`` for a loss, as the book calls it);
* **forward** (a class fnnet knows, :mod:`fnnet.check.known`): ``forward`` against fnnet's
  op, and ``backward`` against the op's hand rule (the ``vs fnnet`` columns);
* the **trials** that break textbook code: a second batch size; a class count other than the
  one given (a one-hot fixed at 10 classes fails it); logits of ±1e3 (a softmax without the
  max subtracted overflows); ``dout`` scaled by 2.5 (a backward that assumes ``dout = 1``);
  and whether ``backward`` changed the caller's ``dout`` array (a warning: the book's own
  ``Relu`` does it, harmless in its loop, a bug once ``dout`` is reused).

Each problem is one :class:`~fnnet.check.layer_report.Problem` line: what was tried, what came
out, what was expected, and a diagnosis where the error has a recognisable shape
(:func:`fnnet.check.diagnose.diagnose`). Tolerance: ``max_rel <= rtol`` (default
:data:`LAYER_RTOL`) with :mod:`fnnet.gradcheck`'s floor ``1e-4·max(1, |L|)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fnnet.check.known import KNOWN_LAYERS, KnownLayer, match_known
from fnnet.check.layer_access import LayerAccess, forward_arity
from fnnet.check.layer_gradient import (
    DOUT_SCALE,
    LARGE_LOGIT,
    LAYER_RTOL,
    _Check,
    _describe,
    _douts,
    _error,
    _gradient_check,
)
from fnnet.check.layer_report import LayerReport
from fnnet.check.layer_trials import _trial_batch, _trial_classes, _trial_dout, _trial_large

__all__ = ["DOUT_SCALE", "LARGE_LOGIT", "LAYER_RTOL", "check_layer"]


# --- the entry point ---------------------------------------------------------------------------


def _roles(layer: Any, known: KnownLayer | None, count: int) -> tuple[str, ...]:
    if known is not None and len(known.inputs) == count:
        return known.inputs
    names = [n for n in LayerAccess(layer).forward_names][:count]
    return tuple(names) + tuple(f"input{i}" for i in range(len(names), count))


def check_layer(
    layer: Any,
    *inputs: Any,
    loss: bool | None = None,
    trials: bool = True,
    name: str | None = None,
    rtol: float = LAYER_RTOL,
    max_entries: int | None = 64,
    seed: int = 0,
) -> LayerReport:
    """Check a book-style NumPy layer: ``backward`` against central differences of its own
    ``forward``, against fnnet's op for a class fnnet knows, and under the trials that
    break textbook code (see the module docstring).

    Args:
      layer: an instance with ``forward``/``backward`` methods (DLFS-1 ``W, b, dW, db``
        attributes or DLFS-2 ``params``/``grads`` lists); its parameters are put back as
        they were when the check ends.
      *inputs: the arguments of ``forward``: ``x``, or ``x, t`` for a loss layer (integer
        labels ``(N,)`` or one-hot ``(N, C)``), ``x, h_prev`` for an RNN cell, ``idx`` for
        an Embedding.
      loss: whether ``forward`` returns a loss whose last input is the labels (default: when
        it returns a scalar).
      trials: also try a second batch size, another class count, large logits and a
        scaled ``dout``.
      name: the class name to look up in :data:`fnnet.check.known.KNOWN_LAYERS` (default
        ``type(layer).__name__``).
      rtol: the ``max_rel`` bound (:data:`LAYER_RTOL`).
      max_entries: the most entries per gradient checked numerically (``None``: all).
      seed: seeds ``dout``, the entry subsets and the trials' inputs.

    Returns:
      A :class:`~fnnet.check.layer_report.LayerReport`: ``.ok``, ``.problems``,
      ``.format_table()``, ``.to_dict()``.

    >>> import numpy as np
    >>> class Sigmoid:
    ...     def forward(self, x):
    ...         self.out = 1 / (1 + np.exp(-x))
    ...         return self.out
    ...     def backward(self, dout):
    ...         return dout * (1.0 - self.out) * self.out
    >>> check_layer(Sigmoid(), np.random.default_rng(0).standard_normal((3, 4))).ok
    True
    """
    if not inputs:
        raise TypeError("check_layer: pass the inputs of forward (e.g. check_layer(layer, x) or "
                        "check_layer(layer, x, t)); got none")
    access_probe = LayerAccess(layer)
    required, total = forward_arity(layer)
    class_name = name or type(layer).__name__
    if not required <= len(inputs) <= total:
        raise TypeError(f"check_layer: {class_name}.forward takes {required}"
                        f"{'' if required == total else f' to {total}'} inputs "
                        f"({', '.join(access_probe.forward_names)}); got {len(inputs)}")
    known_name = match_known(class_name)
    known = KNOWN_LAYERS[known_name] if known_name else None
    from fnnet.ops.table import OPS

    op = OPS[known.op].manual if known is not None and known.op in OPS else None
    access = LayerAccess(layer, known.params if known else ())
    roles = _roles(layer, known, len(inputs))
    check = _Check(access, class_name, known_name, known, op, roles, None, (), float(rtol),
                   max_entries, seed, np.random.default_rng(seed))
    if known_name is not None and known_name != class_name:
        check.notes.append(f"{class_name} is checked as the book's {known_name} (by its name; "
                           f"pass name= to choose another)")
    if known is not None and op is None:
        check.notes.append(f"fnnet has no op {known.op!r} (yet): {class_name} is checked "
                           f"against central differences only")
    # One forward/backward with the caller's arrays finds the outputs and the DLFS-1 grads.
    arrays = [np.asarray(v) for v in inputs]
    try:
        outs = access.forward(arrays)
        access.backward(_douts(check, outs))
    except Exception as e:
        check.fail("gradient", f"forward and backward at {_describe(check, arrays)}",
                   _error(e), "an output and its gradients")
        return LayerReport(class_name, check.op_name, (), ("forward and backward once",),
                           tuple(check.problems), tuple(check.notes), seed)
    access.discover()
    is_loss = (all(o.ndim == 0 for o in outs) and len(inputs) >= 2) if loss is None else loss
    if known is not None and known.kind == "loss":
        is_loss = True
    check.labels = len(inputs) - 1 if is_loss and len(inputs) >= 2 else None
    check.diff = tuple(i for i, a in enumerate(arrays)
                       if np.issubdtype(a.dtype, np.floating) and i != check.labels)
    with access.float64():
        check.trials.append(f"gradient: backward vs central differences of forward at "
                            f"{_describe(check, arrays)}"
                            + (f", and vs {check.op_name}" if check.op_name else ""))
        leaves = _gradient_check(check, "gradient", arrays, watch_dout=True)
        if trials:
            _trial_batch(check, arrays)
            _trial_classes(check, arrays)
            _trial_large(check, arrays)
            _trial_dout(check, arrays)
    return LayerReport(class_name, check.op_name, leaves, tuple(check.trials),
                       tuple(check.problems), tuple(check.notes), seed)
