"""The trials of :func:`fnnet.check_layer`: the inputs that break textbook layer code (a
second batch size, another class count, logits of ±1e3, a scaled ``dout``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fnnet.check.diagnose import diagnose
from fnnet.check.layer_gradient import (
    DOUT_SCALE,
    LARGE_LOGIT,
    _as_float64,
    _Check,
    _clip,
    _compare_forward,
    _describe,
    _douts,
    _error,
    _fnnet,
    _gradient_check,
    _run_backward,
    _sizes,
    _values_words,
)
from fnnet.check.layer_report import Problem
from fnnet.gradcheck import FLOORS, _compare

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
