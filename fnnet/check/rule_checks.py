"""The structural checks of :func:`fnnet.check_rule` (forward, dtypes, linearity, ``bwd``
shapes, extremes) and its diagnosis of each failing argument."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.check.args import Signature
from fnnet.check.diagnose import diagnose, diagnose_shape
from fnnet.check.rule_core import (
    _cotangent,
    _error,
    _leaves,
    _probe,
    _Setup,
)
from fnnet.check.rule_report import RuleCase, StructuralCheck
from fnnet.gradcheck import FLOORS, RTOL_AUTODIFF, _compare

# --- structural checks -------------------------------------------------------------------------


def _close(a: Any, b: Any, dtype: str) -> tuple[bool, float]:
    """Pytrees ``a``, ``b`` equal to the reference tolerance of ``dtype``; the max rel error."""
    worst, ok = 0.0, True
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        if x.shape != y.shape:
            return False, float("inf")
        c = _compare(x.reshape(-1), y.reshape(-1), FLOORS[dtype] * 1e-3, RTOL_AUTODIFF[dtype], 0.0)
        worst, ok = max(worst, c.max_rel), ok and c.ok
    return ok, worst


def _forward_check(probes: dict[str, dict]) -> StructuralCheck:
    parts, ok = [], True
    for dtype, probe in probes.items():
        good, worst = _close(probe["out_f"], probe["out_r"], dtype)
        ok &= good
        parts.append(f"{dtype} max rel {worst:.2e}")
    detail = "f(args) = reference(args) on the example arguments: " + ", ".join(parts)
    if not ok:
        detail += " — the forwards differ, so the gradients are compared with another function"
    return StructuralCheck("forward", ok, detail)


def _dtype_check(sig: Signature, args_by_dtype: dict[str, tuple], probes: dict[str, dict]
                 ) -> StructuralCheck:
    problems = []
    for dtype, probe in probes.items():
        for i, (o, r) in enumerate(zip(jax.tree.leaves(probe["out_f"]),
                                       jax.tree.leaves(probe["out_r"]), strict=True)):
            if o.dtype != r.dtype:
                problems.append(f"output {i} is {o.dtype} where the reference gives {r.dtype}")
        primals = sig.diff_values(args_by_dtype[dtype])
        for name, ct, primal in zip(sig.diff_names, probe["ct_f"], primals, strict=True):
            if ct.dtype != primal.dtype:
                problems.append(f"cotangent of {name} is {ct.dtype} for a {primal.dtype} {name}")
    if problems:
        return StructuralCheck("dtypes", False, "; ".join(sorted(set(problems))))
    return StructuralCheck("dtypes", True, "outputs as the reference's, cotangents as the "
                                           f"primals' ({', '.join(probes)})")


def _linearity_check(sig: Signature, dtype: str, probe: dict) -> tuple[StructuralCheck, set]:
    """``vjp(2g) = 2·vjp(g)``; also returns the arguments whose VJP ignores ``g``."""
    bad, ignoring = [], set()
    for name, once, twice in zip(sig.diff_names, probe["ct_f"], probe["ct_f2"], strict=True):
        ok, worst = _close(twice, jax.tree.map(lambda c: 2 * c, once), dtype)
        if not ok:
            bad.append(f"{name} max rel {worst:.2e}")
            if _close(twice, once, dtype)[0] and np.any(np.asarray(once)):
                ignoring.add(name)
    if not bad:
        return StructuralCheck("linearity", True, f"vjp(2g) = 2·vjp(g) ({dtype})"), ignoring
    detail = f"vjp(2g) != 2·vjp(g) ({dtype}): " + ", ".join(bad)
    if ignoring:
        detail += f"; vjp(2g) = vjp(g) for {', '.join(sorted(ignoring))}: ignores the cotangent"
    return StructuralCheck("linearity", False, detail), ignoring


def _bwd_shape_check(setup: _Setup, args: tuple, cot: Any, probe: dict | None
                     ) -> tuple[StructuralCheck | None, dict[str, str]]:
    """A custom_vjp's ``bwd`` called directly (after its ``fwd``, under ``jit``): one
    cotangent per non-``nondiff`` argument, each of its argument's shape. Returns the check
    (``None`` when ``f`` is no custom_vjp) and a shape diagnosis per wrongly shaped argument
    (checked on the values against the reference's VJP in ``probe``, when there is one)."""
    f, sig = setup.f, setup.sig
    if not isinstance(f, jax.custom_vjp) or getattr(f, "bwd", None) is None:
        return None, {}
    nondiff = tuple(f.nondiff_argnums)

    def raw(diff: tuple, traced: tuple, cot: Any):
        full = sig.full(diff, traced)
        _, residuals = f.fwd(*full)
        return f.bwd(*(full[i] for i in nondiff), residuals, cot)

    try:
        cts = jax.jit(raw)(sig.diff_values(args), sig.traced_values(args), cot)
    except Exception as e:
        return StructuralCheck("bwd shapes", False, f"calling fwd/bwd directly raised "
                                                   f"{_error(e)}"), {}
    positions = [i for i in range(len(args)) if i not in nondiff]
    if not isinstance(cts, tuple | list) or len(cts) != len(positions):
        count = len(cts) if isinstance(cts, tuple | list) else "a non-tuple"
        return StructuralCheck("bwd shapes", False,
                               f"bwd returned {count} cotangents for {len(positions)} "
                               f"differentiable arguments (one per argument, a tuple)"), {}
    expected = probe["ct_r"] if probe is not None else [None] * len(sig.diff)
    shapes, problems = {}, []
    for i, want in zip(sig.diff, expected, strict=True):
        ct = cts[positions.index(i)]
        if ct is None or np.shape(ct) == np.shape(args[i]):
            continue
        name = sig.names[i]
        shapes[name] = diagnose_shape(np.shape(ct), np.shape(args[i]),
                                      np.asarray(ct, np.float64),
                                      None if want is None else np.asarray(want, np.float64))
        problems.append(f"{name} {shapes[name]}")
    if problems:
        return StructuralCheck("bwd shapes", False, "; ".join(problems)), shapes
    return StructuralCheck("bwd shapes", True, "one cotangent per argument, of its shape"), {}


def _extreme_check(setup: _Setup, k: int, args: tuple, rng: np.random.Generator
                   ) -> StructuralCheck:
    sig = setup.sig
    name = f"extremes {k}"
    try:
        shapes = jax.eval_shape(lambda *a: sig.call(setup.f, sig.diff_values(a),
                                                    sig.traced_values(a)), *args)
        cot = _cotangent(rng, shapes)
        probe = jax.jit(functools.partial(_probe, setup.f, setup.reference, sig))(
            sig.diff_values(args), sig.traced_values(args), cot)
    except Exception as e:
        return StructuralCheck(name, False, f"raised {_error(e)}")
    values = _leaves(probe["out_f"]) + _leaves(probe["ct_f"])
    bad = sum(int(np.sum(~np.isfinite(v))) for v in values)
    if bad:
        return StructuralCheck(name, False, f"{bad} NaN/inf entries in the outputs or "
                                            f"cotangents at these arguments")
    reference = _leaves(probe["out_r"]) + _leaves(probe["ct_r"])
    if all(np.all(np.isfinite(r)) for r in reference):
        dtype = str(jnp.result_type(*[jnp.asarray(d).dtype for d in sig.diff_values(args)]))
        dtype = dtype if dtype in FLOORS else "float32"
        good, worst = _close((probe["out_f"], probe["ct_f"]), (probe["out_r"], probe["ct_r"]),
                             dtype)
        if not good:
            return StructuralCheck(name, False, f"finite, but differs from the reference "
                                                f"(max rel {worst:.2e})")
        return StructuralCheck(name, True, f"finite and equal to the reference "
                                           f"(max rel {worst:.2e})")
    return StructuralCheck(name, True, "finite (the reference is not: not compared)")


# --- diagnosis ---------------------------------------------------------------------------------


def _sizes(sig: Signature, args: tuple) -> dict[str, int]:
    """Candidate sizes for a constant factor: the leading axis of the first array argument
    first (the batch size), then every other axis of every array argument."""
    sizes: dict[str, int] = {}
    arrays = [(sig.names[i], args[i]) for i in (*sig.diff, *sig.traced)
              if hasattr(args[i], "shape")]
    arrays.sort(key=lambda pair: sig.names.index(pair[0]))
    for k, (name, a) in enumerate(arrays):
        for axis, n in enumerate(a.shape):
            what = f"N ({name}.shape[{axis}])" if k == 0 and axis == 0 else \
                f"{name}.shape[{axis}]"
            if n > 1 and n not in sizes.values():
                sizes[what] = int(n)
    return sizes


def _repeated_rows(sig: Signature, args: tuple, shape: tuple[int, ...]) -> np.ndarray | None:
    """Mask of the rows (axis 0) of an argument of ``shape`` that an integer argument
    selects more than once, when some integer argument can index it."""
    mask = np.zeros(shape, bool)
    for i in sig.traced:
        a = args[i]
        if not jnp.issubdtype(getattr(a, "dtype", np.float32), jnp.integer) or not shape:
            continue
        values = np.asarray(a).reshape(-1)
        if values.size == 0 or values.min() < 0 or values.max() >= shape[0]:
            continue
        counts = np.bincount(values, minlength=shape[0])
        mask[counts > 1] = True
    return mask if mask.any() else None


def _broadcast_recheck(setup: _Setup, args: tuple, cot: Any, dtype: str) -> str | None:
    """Whether the rule is right once every broadcast input is materialised at the output's
    shape (then only its un-broadcasting is wrong): the broadcast inputs as words, or None."""
    sig = setup.sig
    outs = jax.tree.leaves(cot)
    if len(outs) != 1:
        return None
    out_shape = tuple(outs[0].shape)
    widened, names = list(args), []
    for i in sig.diff:
        shape = tuple(np.shape(args[i]))
        if shape != out_shape:
            try:
                if np.broadcast_shapes(shape, out_shape) != out_shape:
                    return None
            except ValueError:
                return None
            widened[i] = jnp.broadcast_to(args[i], out_shape)
            names.append(f"{sig.names[i]} {shape} → {out_shape}")
    if not names:
        return None
    try:
        probe = jax.jit(functools.partial(_probe, setup.f, setup.reference, sig))(
            sig.diff_values(widened), sig.traced_values(widened), cot)
    except Exception:
        return None
    if all(_close(a, b, dtype)[0] for a, b in zip(probe["ct_f"], probe["ct_r"], strict=True)):
        return (f"wrong only where inputs are broadcast ({', '.join(names)}): right once they "
                f"are materialised at the output's shape, so the cotangent of a broadcast "
                f"input must be summed over its broadcast axes (un-broadcast)")
    return None


_JAX_SHAPE_ERROR = re.compile(r"output\[(\d+)\] the bwd rule produced an output of type "
                              r"\w+\[([\d,]*)\] corresponding to an input of type \w+\[([\d,]*)\]")


def _shape_from_error(cases: Sequence[RuleCase]) -> str | None:
    """A shape diagnosis from JAX's "shapes do not match" error (when ``f`` is a wrapper
    around a custom_vjp, so its ``bwd`` cannot be called directly)."""
    for case in cases:
        match = _JAX_SHAPE_ERROR.search(case.error or "")
        if match:
            def shape(text: str) -> tuple[int, ...]:
                return tuple(int(n) for n in text.split(",") if n)
            return (f"the custom_vjp's bwd output[{match.group(1)}] "
                    + diagnose_shape(shape(match.group(2)), shape(match.group(3))))
    return None


def _diagnoses(setup: _Setup, report_cases: Sequence[RuleCase], probes: dict[str, dict],
               args_by_dtype: dict[str, tuple], cots: dict[str, Any], ignoring: set,
               shape_words: dict[str, str]) -> list[tuple[str, str]]:
    sig = setup.sig
    found: dict[str, str] = dict(shape_words)
    wrong = {}
    for case in report_cases:
        for leaf in case.leaves:
            if not leaf.ok:
                wrong.setdefault(leaf.path, []).append(case)
    if not wrong and not found:
        words = _shape_from_error(report_cases)
        return [("bwd", words)] if words else []
    dtype = "float64" if "float64" in probes else next(iter(probes), None)
    for name in sig.diff_names:
        if name in found or name not in wrong:
            continue
        cases = wrong[name]
        if name in ignoring:
            found[name] = ("ignores the cotangent: vjp(2g) = vjp(g) (multiply the result by "
                           "g / dout)")
            continue
        k = sig.diff_names.index(name)
        reference_failed = [c for c in cases if not c.leaves[k].autodiff.ok]
        if not reference_failed:
            found[name] = ("agrees with the reference's VJP but not with central differences "
                           "of f: is the reference f's forward? (see the forward check)")
            continue
        if dtype is None:
            continue
        if all(c.mode == "vmap" for c in reference_failed):
            found[name] = "wrong only under vmap: right one example at a time"
            continue
        if all(c.dtype == "float32" for c in reference_failed) and "float64" in probes:
            found[name] = ("wrong only in float32: a precision loss (a cast to a lower "
                           "precision, a cancellation) rather than a wrong formula")
            continue
        probe, args = probes[dtype], args_by_dtype[dtype]
        got, expected = np.asarray(probe["ct_f"][k]), np.asarray(probe["ct_r"][k])
        words = diagnose(got, expected, sizes=_sizes(sig, args),
                         if_ones=np.asarray(probe["ct_r1"][k]),
                         repeated=_repeated_rows(sig, args, expected.shape),
                         repeated_what=f"an integer argument repeats an index into {name}")
        if words is None:
            words = _broadcast_recheck(setup, args, cots[dtype], dtype)
        if words is not None:
            found[name] = words
    ordered = [n for n in sig.diff_names if n in found]
    return [(n, found[n]) for n in ordered + [n for n in found if n not in ordered]]
