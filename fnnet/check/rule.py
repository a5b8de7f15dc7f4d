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

Tolerances are :mod:`fnnet.gradcheck`'s per dtype; in float32 a rule need not beat autodiff
of the reference, so where the reference's own float32 VJP is further from its float64 VJP
(ill-conditioned inputs: a variance of two close samples) the tolerance is 4× that distance
(a note says so). Float64 is enabled for the duration of the call only (``jax.enable_x64``),
float32 matmuls run at ``matmul_precision`` (``"highest"``: GPUs' TF32 would make right rules
look wrong).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from fnnet import precision as fnnet_precision
from fnnet.check.args import cast_args, draw_like, split_args
from fnnet.check.rule_checks import (
    _bwd_shape_check,
    _diagnoses,
    _dtype_check,
    _extreme_check,
    _forward_check,
    _linearity_check,
)
from fnnet.check.rule_core import (
    _cotangent,
    _eager_case,
    _error,
    _jit_case,
    _probe,
    _Setup,
    _vmap_case,
    reference_rounding,
    widened,
)
from fnnet.check.rule_report import RuleCase, RuleReport, StructuralCheck

__all__ = ["MODES", "check_rule"]

MODES = ("eager", "jit", "vmap")
_DTYPES = ("float32", "float64")



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


@dataclass(frozen=True)
class _DtypeRun:
    """The cases of one dtype, and what the structural checks read: the probe at the example
    arguments (or the check saying it raised), those arguments and their cotangent."""

    dtype: str
    cases: tuple[RuleCase, ...]
    probe: dict | None
    failed_probe: StructuralCheck | None
    args: tuple
    cot: Any
    note: str | None = None


def _run_dtype(setup: _Setup, dtype: str, sets: Sequence[tuple[str, tuple]],
               stack: Sequence[tuple], modes: Sequence[str], numerical: bool,
               rng: np.random.Generator) -> _DtypeRun:
    """Every case of ``dtype``: each argument set eagerly and under ``jit`` (with the
    numerical comparison), then the ``vmap`` stack."""
    sig, f = setup.sig, setup.f
    typed = [(label, cast_args(a, dtype)) for label, a in sets]
    try:
        shapes = jax.eval_shape(lambda *a: sig.call(f, sig.diff_values(a), sig.traced_values(a)),
                                *typed[0][1])
    except Exception as e:
        raise TypeError(f"check_rule: f raised on the example arguments in {dtype}: "
                        f"{_error(e)}") from e
    cots = [_cotangent(rng, shapes) for _ in typed]
    probe, failed = None, None
    try:
        probe = jax.jit(functools.partial(_probe, f, setup.reference, sig))(
            sig.diff_values(typed[0][1]), sig.traced_values(typed[0][1]), cots[0])
    except Exception as e:
        failed = StructuralCheck(f"structure ({dtype})", False, f"forward, dtype and linearity "
                                                               f"checks not run: {_error(e)}")
    rounding = reference_rounding(setup, dtype)
    allowance = 0.0

    def tolerance(args: tuple, cot: Any) -> tuple[float, float] | None:
        nonlocal allowance
        if rounding is None:
            return None
        try:
            error = rounding(args, cot)
        except Exception:  # the reference raised: the cases will say so
            return None
        allowance = max(allowance, error)
        return widened(setup, dtype, error)

    cases = []
    for (label, args), cot in zip(typed, cots, strict=True):
        rtol = tolerance(args, cot)
        if "eager" in modes:
            cases.append(_eager_case(setup, dtype, label, args, cot, rtol))
        if "jit" in modes or numerical:
            cases.append(_jit_case(setup, dtype, label, args, cot, numerical, rtol))
    if "vmap" in modes:
        stacked = [cast_args(a, dtype) for a in stack]
        stack_cots = [_cotangent(rng, shapes) for _ in stacked]
        rtols = [tolerance(a, c) for a, c in zip(stacked, stack_cots, strict=True)]
        rtol = max((r for r in rtols if r is not None), default=None)
        cases.append(_vmap_case(setup, dtype, stacked, stack_cots, rtol))
    note = None
    if widened(setup, dtype, allowance) is not None:
        note = (f"{dtype} tolerances widened to 4× the reference's own {dtype} rounding, up to "
                f"max rel {4 * allowance:.1e} (its VJP in {dtype} is that far from its float64 "
                f"VJP here: ill-conditioned inputs, e.g. a variance of two close samples)")
    return _DtypeRun(dtype, tuple(cases), probe, failed, typed[0][1], cots[0], note)


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
        runs = [_run_dtype(setup, dtype, sets, stack, modes, numerical, rng) for dtype in dtypes]
        cases = [case for run in runs for case in run.cases]
        probes = {run.dtype: run.probe for run in runs if run.probe is not None}
        args_by_dtype = {run.dtype: run.args for run in runs}
        cots = {run.dtype: run.cot for run in runs}
        checks = [run.failed_probe for run in runs if run.failed_probe is not None]
        ignoring: set[str] = set()
        lin_dtype = "float64" if "float64" in args_by_dtype else dtypes[-1]
        if probes:
            lin_dtype = lin_dtype if lin_dtype in probes else next(iter(probes))
            linearity, ignoring = _linearity_check(sig, lin_dtype, probes[lin_dtype])
            checks += [_forward_check(probes), _dtype_check(sig, args_by_dtype, probes),
                       linearity]
        bwd_check, shape_words = _bwd_shape_check(setup, args_by_dtype[lin_dtype],
                                                  cots[lin_dtype], probes.get(lin_dtype))
        checks += [bwd_check] if bwd_check is not None else []
        checks += [_extreme_check(setup, k, tuple(args), rng)
                   for k, args in enumerate(extremes, start=1)]
        diagnoses = _diagnoses(setup, cases, probes, args_by_dtype, cots, ignoring, shape_words)
    notes = [run.note for run in runs if run.note]
    if any(leaf.numerical is not None and leaf.numerical.skipped
           for case in cases for leaf in case.leaves):
        notes.append("some entries were not comparable numerically (the central difference "
                     "crosses a kink, e.g. a ReLU input near 0): left out, not failed")
    return RuleReport(_name(f), _name(reference), sig.diff_names, tuple(cases), tuple(checks),
                      tuple(diagnoses), tuple(notes), seed, matmul_precision)

