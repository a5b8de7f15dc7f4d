"""``check_rule``: a user's own ``jax.custom_vjp`` against autodiff and central differences.

For a rule ``f`` and its reference ``r`` (by default the undecorated primal the custom_vjp
wraps, ``f.fun``: JAX differentiates that plain function itself), with a random cotangent
``g`` on every output (never ones: a rule that ignores ``g`` would pass):

* **vs reference**: ``vjp(f)(g)`` against ``jax.vjp(r)(g)`` on every entry of every
  differentiated argument;
* **vs numerical**: against float64 central differences of ``L(args) = Σ⟨f(args), g⟩`` (the
  rule's own forward), on a seeded subset of entries, with :mod:`fnnet.gradcheck`'s step and
  kink handling (:func:`fnnet.gradcheck.compare_grads` does the work);

on the example arguments and on ``fresh`` random ones of the same shapes
(:func:`fnnet.check.args.draw_like`), in float32 and float64, eagerly, under ``jit`` and under
``vmap`` over a leading axis of ``vmap_size`` stacked argument sets. Structural checks:

* **forward**: ``f(args) = r(args)`` (else the comparison of gradients means little);
* **dtypes**: outputs have the reference's dtypes, cotangents the primals' dtypes;
* **linearity**: ``vjp(2g) = 2·vjp(g)`` (a VJP is linear in the cotangent);
* **bwd shapes**: for a custom_vjp, its ``bwd`` called directly returns one cotangent per
  argument of the argument's shape (JAX would only say "shapes do not match");
* **extremes**: at each argument tuple of ``extremes`` the outputs and cotangents are finite
  (and equal the reference's where that is finite).

A failing argument gets a **diagnosis** (:func:`fnnet.check.diagnose.diagnose`): off by a
constant factor (which: exactly the batch size N, "divided by the batch size twice?"),
ignores the cotangent, transposed, sign flipped, wrong only where an index repeats, or wrong
only where an input is broadcast (the rule is re-checked with the broadcast inputs
materialised at the output's shape: if it passes there, the un-broadcasting is the bug).

Float64 is enabled for the duration of the call only (``jax.enable_x64``), float32 matmuls run
at ``matmul_precision`` (``"highest"``: GPUs' TF32 would make right rules look wrong).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnnet import precision as fnnet_precision
from fnnet.check.args import Signature, cast_args, draw_like, split_args, stack_args
from fnnet.check.diagnose import diagnose, diagnose_shape
from fnnet.check.rule_report import RuleCase, RuleReport, StructuralCheck
from fnnet.gradcheck import FLOORS, RTOL_AUTODIFF, LeafReport, _compare, compare_grads

__all__ = ["MODES", "check_rule"]

MODES = ("eager", "jit", "vmap")
_DTYPES = ("float32", "float64")


# --- the functions under comparison ----------------------------------------------------------


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]


def _inner(tree: Any, cot: Any) -> jax.Array:
    """``Σ_leaves ⟨out, cot⟩``: the scalar whose gradient is the VJP with ``cot``."""
    terms = [jnp.sum(o * c) for o, c in zip(jax.tree.leaves(tree), jax.tree.leaves(cot),
                                            strict=True)]
    return functools.reduce(jnp.add, terms)


def _vjp(fn: Callable, sig: Signature, diff: tuple, traced: tuple, cot: Any):
    """``(f(args), vjp(f)(cot))`` for the differentiated arguments."""
    out, pull = jax.vjp(lambda *d: sig.call(fn, d, traced), *diff)
    return out, pull(cot)


def _probe(f: Callable, reference: Callable, sig: Signature, diff: tuple, traced: tuple,
           cot: Any) -> dict[str, Any]:
    """Everything the structural checks and the diagnosis read, in one compiled program:
    both forwards, the rule's VJP at ``g`` and ``2g``, the reference's at ``g`` and at an
    all-ones cotangent."""
    out_f, pull_f = jax.vjp(lambda *d: sig.call(f, d, traced), *diff)
    out_r, pull_r = jax.vjp(lambda *d: sig.call(reference, d, traced), *diff)
    twice = jax.tree.map(lambda c: 2 * c, cot)
    ones = jax.tree.map(jnp.ones_like, cot)
    return {"out_f": out_f, "out_r": out_r, "ct_f": pull_f(cot), "ct_f2": pull_f(twice),
            "ct_r": pull_r(cot), "ct_r1": pull_r(ones)}


@dataclass(frozen=True, eq=False)
class _CotangentLoss:
    """``L(params, traced, cot) = Σ⟨f(args), cot⟩`` with the differentiated arguments in the
    dict ``params`` (by name): the loss :func:`fnnet.gradcheck.compare_grads` compares.
    Hashable by identity (compare_grads' jitted functions take it as static)."""

    fn: Callable
    sig: Signature

    def __call__(self, params: dict, traced: tuple, cot: Any) -> jax.Array:
        return _inner(self.sig.call(self.fn, [params[n] for n in self.sig.diff_names], traced),
                      cot)


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def _cotangent(rng: np.random.Generator, shapes: Any) -> Any:
    """A standard-normal cotangent for every output leaf (never ones)."""
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), shapes)


def _floor(dtype: str, loss: float) -> float:
    return FLOORS[dtype] * (max(1.0, abs(loss)) if np.isfinite(loss) else 1.0)


# --- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    f: Callable
    reference: Callable
    sig: Signature
    rtol: float | tuple[float, float] | None
    atol: float | tuple[float, float] | None
    max_entries: int | None
    seed: int
    matmul_precision: str

    def rtol_reference(self, dtype: str) -> float:
        if self.rtol is None:
            return RTOL_AUTODIFF[dtype]
        return float(self.rtol[0] if isinstance(self.rtol, tuple) else self.rtol)

    def atol_reference(self) -> float:
        if self.atol is None:
            return 0.0
        return float(self.atol[0] if isinstance(self.atol, tuple) else self.atol)


def _leaf_reports(setup: _Setup, dtype: str, got: Sequence[Any], expected: Sequence[Any],
                  loss: float) -> tuple[LeafReport, ...]:
    floor = _floor(dtype, loss)
    reports = []
    for name, a, b in zip(setup.sig.diff_names, got, expected, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        comparison = _compare(a64.reshape(-1), b64.reshape(-1), floor,
                              setup.rtol_reference(dtype), setup.atol_reference())
        reports.append(LeafReport(name, tuple(np.shape(b)), dtype, floor, comparison, None))
    return tuple(reports)


def _eager_case(setup: _Setup, dtype: str, label: str, args: tuple, cot: Any) -> RuleCase:
    sig = setup.sig
    try:
        out, got = _vjp(setup.f, sig, sig.diff_values(args), sig.traced_values(args), cot)
        _, expected = _vjp(setup.reference, sig, sig.diff_values(args),
                           sig.traced_values(args), cot)
    except Exception as e:  # the user's code: report, do not crash the check
        return RuleCase(dtype, label, "eager", error=_error(e))
    loss = float(_inner(out, cot))
    return RuleCase(dtype, label, "eager", _leaf_reports(setup, dtype, got, expected, loss))


def _jit_case(setup: _Setup, dtype: str, label: str, args: tuple, cot: Any,
              numerical: bool) -> RuleCase:
    """Rule vs reference under ``jit`` and vs numerical: :func:`compare_grads` of the two
    cotangent losses (it compiles both gradients into one program)."""
    sig = setup.sig
    params = dict(zip(sig.diff_names, sig.diff_values(args), strict=True))
    try:
        report = compare_grads(_CotangentLoss(setup.f, sig), _CotangentLoss(setup.reference, sig),
                               params, sig.traced_values(args), cot, rtol=setup.rtol,
                               atol=setup.atol, numerical=numerical,
                               max_entries=setup.max_entries, seed=setup.seed,
                               matmul_precision=setup.matmul_precision)
    except Exception as e:
        return RuleCase(dtype, label, "jit", error=_error(e))
    leaves = tuple(report.leaf(name) for name in sig.diff_names)
    return RuleCase(dtype, label, "jit", leaves)


def _vmap_case(setup: _Setup, dtype: str, sets: Sequence[tuple], cots: Sequence[Any]) -> RuleCase:
    """Rule vs reference, both under ``jit(vmap(...))`` over ``len(sets)`` stacked sets."""
    sig = setup.sig
    label = f"{len(sets)} stacked"
    diff = stack_args([sig.diff_values(a) for a in sets])
    traced = stack_args([sig.traced_values(a) for a in sets]) if sig.traced else ()
    cot = jax.tree.map(lambda *cs: jnp.stack(cs), *cots)

    def both(d, t, c):
        return (_vjp(setup.f, sig, d, t, c), _vjp(setup.reference, sig, d, t, c)[1])

    try:
        (out, got), expected = jax.jit(jax.vmap(both))(diff, traced, cot)
    except Exception as e:
        return RuleCase(dtype, label, "vmap", error=_error(e))
    losses = jax.vmap(_inner)(out, cot)
    loss = float(np.max(np.abs(np.asarray(losses, np.float64))))
    return RuleCase(dtype, label, "vmap", _leaf_reports(setup, dtype, got, expected, loss))


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


# --- the entry point ---------------------------------------------------------------------------


def _check_options(dtypes: Sequence[str], modes: Sequence[str], fresh: int,
                   vmap_size: int) -> None:
    for dtype in dtypes:
        if dtype not in _DTYPES:
            raise ValueError(f"check_rule: dtypes entries must be one of {_DTYPES}; got {dtype!r}")
    if not dtypes:
        raise ValueError("check_rule: dtypes must name at least one dtype; got ()")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"check_rule: modes entries must be one of {MODES}; got {mode!r}")
    if isinstance(fresh, bool) or not isinstance(fresh, int) or fresh < 0:
        raise ValueError(f"check_rule: fresh must be an int >= 0; got {fresh!r}")
    if isinstance(vmap_size, bool) or not isinstance(vmap_size, int) or vmap_size < 2:
        raise ValueError(f"check_rule: vmap_size must be an int >= 2; got {vmap_size!r}")


def _name(fn: Callable) -> str:
    inner = getattr(fn, "fun", None) if isinstance(fn, jax.custom_vjp) else None
    base = inner if inner is not None else getattr(fn, "func", fn)  # functools.partial
    return getattr(base, "__qualname__", None) or getattr(base, "__name__", None) or repr(fn)


def check_rule(
    f: Callable,
    *example_args: Any,
    reference: Callable | None = None,
    argnums: Sequence[int] | None = None,
    dtypes: Sequence[str] = _DTYPES,
    modes: Sequence[str] = MODES,
    fresh: int = 1,
    make_args: Callable[[np.random.Generator], tuple] | None = None,
    vmap_size: int = 3,
    numerical: bool = True,
    extremes: Sequence[tuple] = (),
    rtol: float | tuple[float, float] | None = None,
    atol: float | tuple[float, float] | None = None,
    max_entries: int | None = 64,
    seed: int = 0,
    matmul_precision: str = "highest",
) -> RuleReport:
    """Check the backward rule of ``f`` against its reference and central differences.

    Args:
      f: the rule: a ``jax.custom_vjp`` (then ``reference`` defaults to the function it
        decorates, ``f.fun``), or any function whose VJP is to be checked.
      *example_args: positional arguments of ``f``: floating arrays are differentiated,
        other arrays (integer labels, indices, keys) traced, the rest static (see
        :mod:`fnnet.check.args`). Keyword options of ``f``: bind them with
        ``functools.partial``.
      reference: the same function differentiated by JAX (plain ``jax.numpy``).
      argnums: the differentiated positions (default: every floating array argument outside
        the custom_vjp's ``nondiff_argnums``).
      dtypes: the floating arguments are cast to each (``"float32"``, ``"float64"``).
      modes: ``"eager"``, ``"jit"``, ``"vmap"`` (the numerical comparison runs under ``jit``
        whenever ``numerical`` is on).
      fresh: random argument sets of the example's shapes checked besides the example.
      make_args: ``make_args(rng) -> args`` draws those sets (default:
        :func:`fnnet.check.args.draw_like` per argument); also fills the vmap stack.
      vmap_size: argument sets stacked along the leading axis for ``vmap``.
      numerical: compare with float64 central differences of ``f`` too.
      extremes: argument tuples (e.g. logits of ±1e3) where outputs and cotangents must be
        finite.
      rtol, atol: tolerances as for :func:`fnnet.gradcheck.compare_grads` (a float, or
        ``(reference, numerical)``); default per dtype.
      max_entries: the most entries per argument checked numerically (``None``: all).
      seed: seeds the cotangents, fresh arguments and numerical subsets.
      matmul_precision: float32 matmul precision of every computation.

    Returns:
      A :class:`~fnnet.check.rule_report.RuleReport`: ``.ok``, ``.format_table()``,
      ``.to_dict()``, ``.diagnosis(argument)``.

    >>> import jax, jax.numpy as jnp
    >>> @jax.custom_vjp
    ... def square(x):
    ...     return x * x
    >>> square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))  # forgot the 2
    >>> report = check_rule(square, jnp.array([1.0, -2.0, 3.0]), modes=("jit",), fresh=0)
    >>> report.ok, report.diagnosis("x")
    (False, 'off by a constant factor 0.5: a factor 2 missing (d(x²)/dx = 2x?)')
    """
    _check_options(dtypes, modes, fresh, vmap_size)
    if reference is None:
        if not isinstance(f, jax.custom_vjp):
            raise TypeError(f"check_rule: f is not a jax.custom_vjp (got {_name(f)}): pass "
                            f"reference=, the same function in plain jax.numpy")
        reference = f.fun
    nondiff = tuple(f.nondiff_argnums) if isinstance(f, jax.custom_vjp) else ()
    sig = split_args(example_args, argnums=argnums, nondiff_argnums=nondiff,
                     name_sources=(reference, getattr(f, "fun", None), f), caller="check_rule")
    setup = _Setup(f, reference, sig, rtol, atol, max_entries, seed, matmul_precision)
    rng = np.random.default_rng(seed)

    def draw() -> tuple:
        if make_args is not None:
            return tuple(make_args(rng))
        return tuple(draw_like(rng, a) for a in example_args)

    sets = [("example", tuple(example_args))] + [(f"fresh {k + 1}", draw()) for k in range(fresh)]
    with jax.enable_x64(True), fnnet_precision.matmul_precision(matmul_precision):
        stack = [a for _, a in sets][:vmap_size]
        stack += [draw() for _ in range(vmap_size - len(stack))] if "vmap" in modes else []
        cases, probes, args_by_dtype, cots, extra = [], {}, {}, {}, []
        for dtype in dtypes:
            typed = [(label, cast_args(a, dtype)) for label, a in sets]
            try:
                shapes = jax.eval_shape(lambda *a: sig.call(f, sig.diff_values(a),
                                                            sig.traced_values(a)), *typed[0][1])
            except Exception as e:
                raise TypeError(f"check_rule: f raised on the example arguments in {dtype}: "
                                f"{_error(e)}") from e
            set_cots = [_cotangent(rng, shapes) for _ in typed]
            args_by_dtype[dtype], cots[dtype] = typed[0][1], set_cots[0]
            try:
                probes[dtype] = jax.jit(functools.partial(_probe, f, reference, sig))(
                    sig.diff_values(typed[0][1]), sig.traced_values(typed[0][1]), set_cots[0])
            except Exception as e:
                extra.append(StructuralCheck(f"structure ({dtype})", False,
                                             f"forward, dtype and linearity checks not run: "
                                             f"{_error(e)}"))
            for (label, args), cot in zip(typed, set_cots, strict=True):
                if "eager" in modes:
                    cases.append(_eager_case(setup, dtype, label, args, cot))
                if "jit" in modes or numerical:
                    cases.append(_jit_case(setup, dtype, label, args, cot, numerical))
            if "vmap" in modes:
                stacked = [cast_args(a, dtype) for a in stack]
                cases.append(_vmap_case(setup, dtype, stacked,
                                        [_cotangent(rng, shapes) for _ in stacked]))
        checks = list(extra)
        if probes:
            checks.append(_forward_check(probes))
            checks.append(_dtype_check(sig, args_by_dtype, probes))
            lin_dtype = "float64" if "float64" in probes else next(iter(probes))
            linearity, ignoring = _linearity_check(sig, lin_dtype, probes[lin_dtype])
            checks.append(linearity)
        else:
            lin_dtype, ignoring = dtypes[-1], set()
        bwd_check, shape_words = _bwd_shape_check(setup, args_by_dtype[lin_dtype],
                                                  cots[lin_dtype], probes.get(lin_dtype))
        if bwd_check is not None:
            checks.append(bwd_check)
        for k, args in enumerate(extremes, start=1):
            checks.append(_extreme_check(setup, k, tuple(args), rng))
        diagnoses = _diagnoses(setup, cases, probes, args_by_dtype, cots, ignoring, shape_words)
    notes = []
    if any(c.mode == "jit" and c.leaves and c.leaves[0].numerical is not None
           and c.leaves[0].numerical.skipped for c in cases):
        notes.append("some entries were not comparable numerically (the central difference "
                     "crosses a kink, e.g. a ReLU input near 0): left out, not failed")
    return RuleReport(_name(f), _name(reference), sig.diff_names, tuple(cases), tuple(checks),
                      tuple(diagnoses), tuple(notes), seed, matmul_precision)

