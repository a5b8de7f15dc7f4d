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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnnet import precision as fnnet_precision
from fnnet.check.diagnose import diagnose, diagnose_shape
from fnnet.check.known import KNOWN_LAYERS, KnownLayer, clipped_loss, match_known
from fnnet.check.layer_access import LayerAccess, Slot, central_differences, forward_arity
from fnnet.check.layer_report import LayerReport, Problem
from fnnet.gradcheck import FLOORS, LeafReport, _compare, _smooth, _subset

__all__ = ["DOUT_SCALE", "LARGE_LOGIT", "LAYER_RTOL", "check_layer"]

LAYER_RTOL = 1e-4
"""Default ``max_rel`` bound of a layer's gradients (vs central differences and vs fnnet).
Looser than :data:`fnnet.gradcheck.RTOL_NUMERICAL`'s float64 ``1e-6``: the book's losses
take ``log(y + 1e-7)``, whose gradient differs from the ``(y − t)/N`` its backward returns by
``1e-7/y`` relative (``2e-5`` at ``y = 0.005``). Every bug the checks look for is off by far
more (a factor, a transpose, a missing term)."""

LARGE_LOGIT = 1e3
"""The size of the large logits tried (``±1e3``: ``exp(1e3)`` overflows float64)."""

DOUT_SCALE = 2.5
"""The factor ``dout`` is scaled by to catch a backward that assumes ``dout = 1``."""


# --- the context of one check ----------------------------------------------------------------


@dataclass
class _Check:
    access: LayerAccess
    name: str
    known_name: str | None
    known: KnownLayer | None
    op: Callable | None
    roles: tuple[str, ...]
    labels: int | None
    diff: tuple[int, ...]
    rtol: float
    max_entries: int | None
    seed: int
    rng: np.random.Generator
    problems: list[Problem] = field(default_factory=list)
    trials: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def op_name(self) -> str | None:
        return f"fnnet.manual.{self.known.op}" if self.known and self.op else None

    def failures(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "fail"]

    def fail(self, trial: str, tried: str, got: str, expected: str, hint: str | None = None):
        self.problems.append(Problem(trial, "fail", tried, got, expected, hint))

    def warn(self, trial: str, tried: str, got: str, expected: str, hint: str | None = None):
        self.problems.append(Problem(trial, "warn", tried, got, expected, hint))


def _error(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _describe(check: _Check, inputs: Sequence[Any]) -> str:
    """``x (3, 4), t (3,) labels in [0, 9]`` — the inputs in words."""
    parts = []
    for role, value in zip(check.roles, inputs, strict=True):
        a = np.asarray(value)
        text = f"{role} {_shape(a.shape)}"
        if a.size and np.issubdtype(a.dtype, np.integer):
            text += f" ints in [{a.min()}, {a.max()}]"
        elif a.size and np.max(np.abs(a)) >= LARGE_LOGIT:
            text += f" in [{a.min():.4g}, {a.max():.4g}]"
        parts.append(text)
    return ", ".join(parts)


def _leaf_name(check: _Check, kind: str, key: Any) -> str:
    if kind == "input":
        return "d" + check.roles[key]
    slot: Slot = key
    return slot.name.replace("params", "grads") if slot.kind == "list" and \
        slot.name.startswith("params[") else "d" + slot.name


def _sizes(check: _Check, inputs: Sequence[Any]) -> dict[str, int]:
    """Sizes a constant factor may be: the batch size first."""
    sizes = {}
    for role, value in zip(check.roles, inputs, strict=True):
        shape = np.shape(value)
        for axis, n in enumerate(shape):
            what = f"N ({role}.shape[0])" if axis == 0 and not sizes else f"{role}.shape[{axis}]"
            if n > 1 and n not in sizes.values():
                sizes[what] = int(n)
    return sizes


def _values_words(got: np.ndarray, expected: np.ndarray) -> str:
    """How ``got`` differs from ``expected``, in a few words with numbers."""
    if got.shape != expected.shape:
        return f"shape {_shape(got.shape)}"
    if got.size == 1:
        return f"{float(got.reshape(-1)[0]):.6g}"
    bad = ~np.isfinite(got)
    words = f"NaN/inf at {int(bad.sum())} of {got.size} entries" if bad.any() else ""
    fine = ~bad & np.isfinite(expected)
    if fine.any():
        diff = np.where(fine, np.abs(got - expected), -1.0)
        i = int(np.argmax(diff))
        if diff.reshape(-1)[i] > 0:
            scale = max(abs(float(expected.reshape(-1)[i])), 1e-300)
            words += ("; " if words else "") + (
                f"{float(got.reshape(-1)[i]):.6g} where {float(expected.reshape(-1)[i]):.6g} "
                f"(rel error {diff.reshape(-1)[i] / scale:.2e})")
    return words or "equal values"


# --- fnnet's op, in float64 --------------------------------------------------------------------


def _op_values(check: _Check, inputs: Sequence[Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """The op's possible arguments: arrays (inputs by role, parameters by name) and the
    layer's integer attributes (``stride``, ``pad``, ``pool_h``: static)."""
    layer = check.access.layer
    statics = {k: v for k, v in vars(layer).items() if isinstance(v, int)
               and not isinstance(v, bool)}
    arrays = {role: np.asarray(v) for role, v in zip(check.roles, inputs, strict=True)}
    arrays.update({slot.name: np.asarray(slot.get(layer)) for slot in check.access.slots})
    return arrays, statics


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _fnnet_vjp(known_name: str, names: tuple[str, ...], statics: tuple, arrays: dict,
               cot: Any):
    """The known layer's fnnet op at ``arrays`` and its VJP with respect to ``names``
    (compiled once per layer kind and shapes)."""
    from fnnet.ops.table import OPS

    known = KNOWN_LAYERS[known_name]
    op = OPS[known.op].manual

    def run(*d):
        return known.call(op, {**dict(statics), **arrays, **dict(zip(names, d, strict=True))})

    out, pull = jax.vjp(run, *(arrays[n] for n in names))
    cot = cot if isinstance(out, tuple | list) else cot[0]
    return out, pull(cot)


def _fnnet(check: _Check, inputs: Sequence[Any], douts: Sequence[Any]
           ) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]] | None:
    """fnnet's forward and its hand rule's cotangents under ``douts`` by leaf name, in
    float64; ``None`` (with a note) when the op cannot take these values."""
    if check.op is None:
        return None
    names = tuple([check.roles[i] for i in check.diff] + [s.name for s in check.access.slots])
    leaves = [_leaf_name(check, "input", i) for i in check.diff] + \
        [_leaf_name(check, "param", s) for s in check.access.slots]
    arrays, statics = _op_values(check, inputs)
    try:
        with jax.enable_x64(True), fnnet_precision.matmul_precision("highest"):
            cot = tuple(jnp.asarray(d, jnp.float64) for d in douts)
            out, cts = _fnnet_vjp(check.known_name, names, tuple(sorted(statics.items())),
                                  {k: jnp.asarray(v) for k, v in arrays.items()}, cot)
    except Exception as e:
        note = f"{check.op_name} could not be compared with {check.name}: {_error(e)}"
        if note not in check.notes:
            check.notes.append(note)
        return None
    outs = out if isinstance(out, tuple | list) else (out,)
    return (tuple(np.asarray(o, np.float64) for o in outs),
            {leaf: np.asarray(ct, np.float64) for leaf, ct in zip(leaves, cts, strict=True)})


def _mistake(check: _Check, inputs: Sequence[Any], got: np.ndarray) -> str | None:
    """The known textbook mistake whose forward ``got`` matches, if any."""
    if check.known is None:
        return None
    values = {role: np.asarray(v, np.float64) for role, v in zip(check.roles, inputs,
                                                                 strict=True)}
    for words, wrong in check.known.mistakes:
        try:
            candidate = np.asarray(wrong(values), np.float64)
        except Exception:
            continue
        if candidate.shape == got.shape and np.allclose(got, candidate, rtol=1e-6, atol=1e-12,
                                                        equal_nan=True):
            return f"it computes {words}"
    return None


def _clip(check: _Check, inputs: Sequence[Any], outs: Sequence[np.ndarray]
          ) -> tuple[float, float] | None:
    """``(clipped loss, its gradient's relative error)`` when the forward is the book's
    clipped loss ``−mean log(p + 1e-7)`` at these inputs (see :func:`clipped_loss`)."""
    if check.known is None or len(outs) != 1 or outs[0].size != 1:
        return None
    values = {role: np.asarray(v) for role, v in zip(check.roles, inputs, strict=True)}
    try:
        clip = clipped_loss(check.known, values)
    except Exception:
        return None
    if clip is None or abs(float(outs[0]) - clip[0]) > 1e-9 * max(1.0, abs(clip[0])):
        return None
    return clip


def _compare_forward(check: _Check, trial: str, inputs: Sequence[Any],
                     outs: Sequence[np.ndarray], ref: Sequence[np.ndarray],
                     clipped: float | None = None) -> None:
    """Problems for outputs that differ from fnnet's (a warning when a loss matches the
    book's ``log(y + 1e-7)`` form instead, see :func:`fnnet.check.known.clipped_loss`)."""
    if len(outs) != len(ref):
        check.fail(trial, f"forward({_describe(check, inputs)})", f"{len(outs)} outputs",
                   f"{len(ref)}, as {check.op_name}")
        return
    for k, (got, want) in enumerate(zip(outs, ref, strict=True)):
        which = f"output {k}" if len(outs) > 1 else "the output"
        expected = (f"{check.op_name} = {check.known.formula}"
                    + (f" = {float(want.reshape(-1)[0]):.6g}" if want.size == 1 else ""))
        if got.shape != want.shape:
            if got.size == want.size:
                got = got.reshape(want.shape)
            else:
                check.fail(trial, f"forward({_describe(check, inputs)})",
                           f"{which} of shape {_shape(got.shape)}",
                           f"shape {_shape(want.shape)} ({check.op_name})")
                continue
        floor = FLOORS["float64"] * max(1.0, float(np.max(np.abs(want), initial=0.0)))
        comparison = _compare(got.reshape(-1), want.reshape(-1), floor, check.rtol, 0.0)
        if comparison.ok:
            continue
        if clipped is not None and got.size == 1 and abs(float(got) - clipped) <= \
                check.rtol * max(1.0, abs(clipped)):
            check.warn(trial, f"forward({_describe(check, inputs)})", f"{float(got):.6g}",
                       f"{expected}: the loss clips log(y + 1e-7), the book's "
                       f"cross_entropy_error, so saturated logits give {clipped:.4g} instead; "
                       f"the backward (y − t)/N is then not this forward's gradient (harmless "
                       f"in training; fnnet uses log-softmax)")
            continue
        hint = _mistake(check, inputs, got) or diagnose(got, want, sizes=_sizes(check, inputs))
        check.fail(trial, f"forward({_describe(check, inputs)})", _values_words(got, want),
                   expected, hint)


# --- the gradient check ------------------------------------------------------------------------


def _as_float64(check: _Check, inputs: Sequence[Any]) -> list[Any]:
    return [np.array(v, np.float64) if np.issubdtype(np.asarray(v).dtype, np.floating)
            else np.asarray(v) for v in inputs]


def _douts(check: _Check, outs: Sequence[np.ndarray]) -> tuple[Any, ...]:
    return tuple(1.0 if o.ndim == 0 else check.rng.standard_normal(o.shape) for o in outs)


def _run_backward(check: _Check, trial: str, inputs: list[Any], douts: Sequence[Any],
                  watch_dout: bool = False) -> dict[str, np.ndarray | None] | None:
    """``backward(*douts)`` (on copies of ``douts``) after ``forward(*inputs)``: the
    gradients by leaf name; ``None`` (and a problem) when a call raises."""
    access = check.access
    try:
        access.forward(inputs)
    except Exception as e:
        check.fail(trial, f"forward({_describe(check, inputs)})", _error(e), "an output")
        return None
    given = [np.array(d) if isinstance(d, np.ndarray) else d for d in douts]
    try:
        returned = access.backward(given)
    except Exception as e:
        check.fail(trial, f"backward(dout) after forward({_describe(check, inputs)})",
                   _error(e), "the gradients")
        return None
    if watch_dout:
        for d, g in zip(douts, given, strict=True):
            if isinstance(d, np.ndarray) and not np.array_equal(d, g, equal_nan=True):
                changed = int(np.sum(d != g))
                check.warn("dout unchanged", "backward(dout) with a dout array kept by the "
                           "caller", f"{changed} of {d.size} entries of dout changed in place",
                           "dout as it was passed",
                           "e.g. dout[mask] = 0; dx = dout (the book's Relu): harmless in the "
                           "book's loop, a bug once dout is reused (a branch, a second "
                           "backward); write dx = dout * mask, or copy dout first")
    grads: dict[str, np.ndarray | None] = {}
    arrays = [r for r in returned if r is not None]
    if len(check.diff) > len(arrays):
        check.fail(trial, f"backward(dout) after forward({_describe(check, inputs)})",
                   f"{len(arrays)} gradient array{'s' * (len(arrays) != 1)}",
                   f"one per floating input: "
                   f"{', '.join(_leaf_name(check, 'input', i) for i in check.diff)}")
    for k, i in enumerate(check.diff):
        grads[_leaf_name(check, "input", i)] = (np.asarray(arrays[k], np.float64)
                                                if k < len(arrays) else None)
    for slot, grad in zip(access.slots, access.param_grads(), strict=True):
        grads[_leaf_name(check, "param", slot)] = grad
    return grads


def _loss_fn(check: _Check, inputs: list[Any], douts: Sequence[Any]) -> Callable[[], float]:
    def loss() -> float:
        outs = check.access.forward(inputs)
        return float(sum(np.sum(o * np.asarray(d, np.float64))
                         for o, d in zip(outs, douts, strict=True)))

    return loss


def _repeated(check: _Check, inputs: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    mask = np.zeros(shape, bool)
    for v in inputs:
        a = np.asarray(v)
        if shape and np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 \
                and a.max() < shape[0]:
            mask[np.bincount(a.reshape(-1), minlength=shape[0]) > 1] = True
    return mask if mask.any() else None


def _gradient_check(check: _Check, trial: str, inputs: Sequence[Any],
                    watch_dout: bool = False) -> tuple[LeafReport, ...]:
    """``backward`` vs central differences (and fnnet) at ``inputs``: leaf reports, and
    problems for the failing ones."""
    inputs = _as_float64(check, inputs)
    try:
        outs = check.access.forward(inputs)
    except Exception as e:
        check.fail(trial, f"forward({_describe(check, inputs)})", _error(e), "an output")
        return ()
    douts = _douts(check, outs)
    grads = _run_backward(check, trial, inputs, douts, watch_dout)
    if grads is None:
        return ()
    reference = _fnnet(check, inputs, douts)
    if reference is not None:
        _compare_forward(check, trial if trial != "gradient" else "forward", inputs, outs,
                         reference[0])
    loss = _loss_fn(check, inputs, douts)
    center = loss()
    rtol = check.rtol
    clip = _clip(check, inputs, outs)
    if clip is not None and 4 * clip[1] > rtol:
        rtol = 4 * clip[1]
        note = (f"{check.name}'s forward is the book's clipped loss −mean log(p + 1e-7): its "
                f"central differences differ from the exact gradient (y − t)/N by up to "
                f"1e-7/p, so the tolerance vs numerical is widened to 4·1e-7/min p (up to "
                f"{rtol:.1e} here); fnnet's log-softmax loss has no clip")
        if not any(n.startswith(note[:60]) for n in check.notes):
            check.notes.append(note)
    floor = FLOORS["float64"] * (max(1.0, abs(center)) if np.isfinite(center) else 1.0)
    arrays = [(_leaf_name(check, "input", i), inputs[i]) for i in check.diff] + \
        [(_leaf_name(check, "param", s), s.get(check.access.layer)) for s in check.access.slots]
    leaves = []
    for index, (name, array) in enumerate(arrays):
        got = grads.get(name)
        tried = f"backward(dout) after forward({_describe(check, inputs)})"
        if got is None:
            check.fail(trial, tried, f"no {name}", f"{name} of shape {_shape(array.shape)}")
            continue
        if got.shape != array.shape:
            if got.size == array.size and name.startswith("d") and index < len(check.diff):
                got = got.reshape(array.shape)  # e.g. dx flattened by Affine: fine
            else:
                check.fail(trial, tried, f"{name} of shape {_shape(got.shape)}",
                           f"shape {_shape(array.shape)}",
                           diagnose_shape(got.shape, array.shape))
                continue
        subset = _subset(array.size, check.max_entries, check.seed, index)
        full, half, jump, rounding = central_differences(loss, array, subset)
        comparable = _smooth(full, half, jump, rounding, floor, rtol)
        numerical = _compare(got.reshape(-1)[subset], full, floor, rtol, 0.0, comparable)
        against = None
        expected_full = None
        if reference is not None and name in reference[1]:
            expected_full = reference[1][name].reshape(array.shape)
            against = _compare(got.reshape(-1), expected_full.reshape(-1), floor, check.rtol, 0.0)
        leaf = LeafReport(name, tuple(array.shape), "float64", floor, against, numerical)
        leaves.append(leaf)
        if not leaf.ok:
            if expected_full is None and subset.size == array.size:
                expected_full = full.reshape(array.shape)
            hint = None
            if expected_full is not None:
                ones = _fnnet(check, inputs, tuple(np.ones_like(np.asarray(d, np.float64))
                                                   for d in douts))
                hint = diagnose(got, expected_full, sizes=_sizes(check, inputs),
                                if_ones=ones[1].get(name) if ones else None,
                                repeated=_repeated(check, inputs, array.shape),
                                repeated_what="an index repeats in the input (its rows of "
                                              f"{name[1:]} get only one of the douts)")
            if not numerical.ok:
                bad, source = numerical, "central differences of forward"
                expected = f"{name} = ∂/∂{name[1:]} Σ forward·dout"
            else:
                bad, source, expected = against, check.op_name, f"{check.op_name}'s VJP"
            check.fail(trial, tried, f"{name} off from {source} (max rel {bad.max_rel:.2e}, "
                                     f"cos {bad.cosine:.4f})", expected, hint)
    return tuple(leaves)


# --- the trials --------------------------------------------------------------------------------


def _batch_axis(inputs: Sequence[Any]) -> int | None:
    first = np.asarray(inputs[0])
    return int(first.shape[0]) if first.ndim >= 1 else None


def _redraw(check: _Check, k: int, value: Any, shape: tuple[int, ...], classes: int | None
            ) -> np.ndarray:
    """New values for input ``k`` of ``shape``: labels in range (ints, or one-hot rows),
    other ints in the example's range, floats with the example's mean and spread."""
    rng, a = check.rng, np.asarray(value)
    if k == check.labels and classes is not None:
        if np.issubdtype(a.dtype, np.integer):
            return rng.integers(0, classes, size=shape)
        if a.ndim == 2:
            return np.eye(classes)[rng.integers(0, classes, size=shape[0])]
    if np.issubdtype(a.dtype, np.integer):
        return rng.integers(int(a.min()), int(a.max()) + 1, size=shape) if a.size else \
            np.zeros(shape, a.dtype)
    std = float(np.std(a)) or 1.0
    return float(np.mean(a)) + std * rng.standard_normal(shape)


def _classes(check: _Check, inputs: Sequence[Any]) -> int | None:
    """The class count (``x.shape[-1]`` of a 2-D ``x``) of a loss or softmax layer."""
    kind = check.known.kind if check.known else ("loss" if check.labels is not None else None)
    x = np.asarray(inputs[0])
    return int(x.shape[-1]) if kind in ("loss", "softmax") and x.ndim == 2 else None


def _trial_batch(check: _Check, inputs: Sequence[Any]) -> None:
    n = _batch_axis(inputs)
    if n is None:
        return
    n2 = n + 2
    classes = _classes(check, inputs)
    new = [(_redraw(check, k, v, (n2, *np.shape(v)[1:]), classes)
            if np.ndim(v) >= 1 and np.shape(v)[0] == n else v) for k, v in enumerate(inputs)]
    check.trials.append(f"batch size {n2}: forward, backward and the gradient check at "
                        f"{_describe(check, new)}")
    before = len(check.problems)
    passed_before = not check.failures()
    _gradient_check(check, f"batch size {n2}", new)
    if passed_before:
        fixed = (f"right at batch size {n}, wrong at {n2}: a batch size fixed somewhere "
                 f"(hard-coded, or kept from an earlier call)?")
        for i in range(before, len(check.problems)):
            p = check.problems[i]
            if p.severity == "fail":
                hint = fixed if p.hint is None else f"{p.hint}; {fixed}"
                check.problems[i] = Problem(p.trial, p.severity, p.tried, p.got, p.expected,
                                            hint)


def _trial_classes(check: _Check, inputs: Sequence[Any]) -> None:
    c = _classes(check, inputs)
    if c is None:
        return
    c2 = 3 if c != 3 else 7
    n = np.shape(inputs[0])[0]
    x = np.asarray(inputs[0], np.float64)
    new = list(inputs)
    new[0] = float(np.std(x) or 1.0) * check.rng.standard_normal((n, c2))
    if check.labels is not None:
        t = np.asarray(inputs[check.labels])
        new[check.labels] = _redraw(check, check.labels, t, t.shape[:1] + (
            (c2,) if t.ndim == 2 else ()), c2)
    check.trials.append(f"{c2} classes: forward, backward and the gradient check at "
                        f"{_describe(check, new)}")
    before = len(check.failures())
    _gradient_check(check, f"{c2} classes", new)
    if c == 10 and before == 0 and len(check.failures()) > before:
        fixed = ("works with 10 classes, not with 3: a class count fixed at 10 (np.eye(10)[t], "
                 "np.zeros((N, 10)), reshape(-1, 10))?")
        for i in range(before, len(check.problems)):
            p = check.problems[i]
            if p.severity == "fail" and p.hint is None:
                check.problems[i] = Problem(p.trial, p.severity, p.tried, p.got, p.expected,
                                            fixed)


def _large_logits(check: _Check, inputs: Sequence[Any]) -> list[Any]:
    x = np.asarray(inputs[0], np.float64)
    signs = np.where(check.rng.random(x.shape) < 0.5, 1.0, -1.0)
    return [LARGE_LOGIT * signs + check.rng.standard_normal(x.shape), *inputs[1:]]


def _trial_large(check: _Check, inputs: Sequence[Any]) -> None:
    if not ((check.known and check.known.logits) or (check.known is None and check.labels
                                                       is not None)):
        return
    trial = "large logits"
    passed_before = not check.failures()
    new = _as_float64(check, _large_logits(check, inputs))
    check.trials.append(f"large logits: forward and backward at {_describe(check, new)}")
    tried = f"forward and backward at {_describe(check, new)}"
    try:
        outs = check.access.forward(new)
    except Exception as e:
        check.fail(trial, tried, _error(e), "finite outputs")
        return
    douts = _douts(check, outs)
    grads = _run_backward(check, trial, new, douts)
    if grads is None:
        return
    bad_out = sum(int(np.sum(~np.isfinite(o))) for o in outs)
    bad_grad = {k: int(np.sum(~np.isfinite(g))) for k, g in grads.items() if g is not None}
    if bad_out or any(bad_grad.values()):
        where = [f"{bad_out} in the output"] if bad_out else []
        where += [f"{n} in {k}" for k, n in bad_grad.items() if n]
        check.fail(trial, tried, f"NaN/inf: {', '.join(where)}", "finite values",
                   None if not passed_before else
                   "an overflow: exp of a large logit; subtract the row max before exp "
                   "(softmax), or use log-sum-exp for the loss")
        return
    reference = _fnnet(check, new, douts)
    if reference is None:
        return
    clip = _clip(check, new, outs)
    clipped = clip[0] if clip else None
    _compare_forward(check, trial, new, outs, reference[0], clipped)
    for name, want in reference[1].items():
        got = grads.get(name)
        if got is None or got.size != want.size:
            continue
        floor = FLOORS["float64"] * max(1.0, float(np.max(np.abs(outs[0]))))
        comparison = _compare(got.reshape(-1), want.reshape(-1), floor, check.rtol, 0.0)
        if not comparison.ok:
            check.fail(trial, tried, f"{name} {_values_words(got.reshape(want.shape), want)}",
                       f"{check.op_name}'s VJP", diagnose(got.reshape(want.shape), want,
                                                          sizes=_sizes(check, new)))


def _trial_dout(check: _Check, inputs: Sequence[Any]) -> None:
    inputs = _as_float64(check, inputs)
    trial = f"dout × {DOUT_SCALE:g}"
    try:
        outs = check.access.forward(inputs)
    except Exception:
        return  # reported by the gradient check
    douts = _douts(check, outs)
    scalar = all(o.ndim == 0 for o in outs)
    once = _run_backward(check, trial, inputs, douts)
    scaled = _run_backward(check, trial, inputs, [DOUT_SCALE * np.asarray(d) if
                                                  isinstance(d, np.ndarray) else DOUT_SCALE * d
                                                  for d in douts])
    given = f"dout = {DOUT_SCALE:g}" if scalar else f"dout × {DOUT_SCALE:g}"
    check.trials.append(f"{trial}: backward({given}) against {DOUT_SCALE:g} × "
                        f"backward({'dout = 1' if scalar else 'dout'})")
    if once is None or scaled is None:
        return
    for name, g1 in once.items():
        g2 = scaled.get(name)
        if g1 is None or g2 is None or g1.shape != g2.shape:
            continue
        finite = np.isfinite(g1) & np.isfinite(g2)
        if not finite.any():
            continue  # non-finite gradients: reported by the gradient check
        g1, g2 = g1[finite], g2[finite]
        atol = check.rtol * float(np.max(np.abs(g1), initial=0.0)) * 1e-3
        if np.allclose(g2, DOUT_SCALE * g1, rtol=check.rtol, atol=atol):
            continue
        ignores = np.allclose(g2, g1, rtol=check.rtol, atol=atol)
        check.fail(trial, f"backward({given}) after forward({_describe(check, inputs)})",
                   f"{name} {'equal to' if ignores else 'not ' + format(DOUT_SCALE, 'g') + ' ×'}"
                   f" backward({'dout = 1' if scalar else 'dout'})'s",
                   f"{DOUT_SCALE:g} × that (a backward is linear in dout)",
                   "backward ignores dout (assumes dout = 1): multiply by dout, or "
                   "grad(2·loss) comes out as grad(loss)" if ignores else None)


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
