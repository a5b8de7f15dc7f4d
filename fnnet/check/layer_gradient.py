"""The gradient check of :func:`fnnet.check_layer`: one forward/backward of the user's layer,
its gradients against float64 central differences of its forward and against fnnet's op (a
class fnnet knows), and the problem lines for what differs."""

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
from fnnet.check.known import KNOWN_LAYERS, KnownLayer, clipped_loss
from fnnet.check.layer_access import LayerAccess, Slot, central_differences
from fnnet.check.layer_report import Problem
from fnnet.gradcheck import FLOORS, LeafReport, _compare, _smooth, _subset

__all__ = ["DOUT_SCALE", "LARGE_LOGIT", "LAYER_RTOL"]

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
                       f"in training; fnnet's loss has no clip)")
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
                f"{rtol:.1e} here); fnnet's loss has no clip")
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
