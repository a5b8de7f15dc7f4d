"""What :func:`fnnet.check_rule` runs and compares: the rule's and the reference's VJPs
(eagerly, under ``jit`` with :func:`fnnet.gradcheck.compare_grads`, under ``vmap``), the
one-program probe the structural checks read, and the per-argument comparisons."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.check.args import Signature, stack_args
from fnnet.check.rule_report import RuleCase
from fnnet.gradcheck import (
    FLOORS,
    RTOL_AUTODIFF,
    RTOL_NUMERICAL,
    LeafReport,
    _compare,
    compare_grads,
)

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


def reference_rounding(setup: _Setup, dtype: str) -> Callable[[tuple, Any], float] | None:
    """For a dtype below float64, ``error(args, cot)``: how far the reference's own VJP in
    ``dtype`` is from its float64 VJP at these arguments (max rel, with the floor) — its
    rounding, which ill-conditioned inputs (a variance over two close samples) make large.
    A rule is held to the default tolerance or to 4× that, whichever is larger: it need not
    be more accurate than autodiff of the reference. ``None`` for float64 (or a given rtol)."""
    if dtype == "float64" or setup.rtol is not None:
        return None
    sig = setup.sig

    def both(diff: tuple, traced: tuple, cot: Any):
        out, low = _vjp(setup.reference, sig, diff, traced, cot)
        wide = jax.tree.map(lambda x: x.astype(jnp.float64), (diff, cot))
        return out, low, _vjp(setup.reference, sig, *wide[:1], traced, wide[1])[1]

    compiled = jax.jit(both)

    def error(args: tuple, cot: Any) -> float:
        out, low, high = compiled(sig.diff_values(args), sig.traced_values(args), cot)
        floor = _floor(dtype, float(_inner(out, cot)))
        return max((_compare(np.asarray(lo, np.float64).reshape(-1),
                             np.asarray(hi, np.float64).reshape(-1), floor, 0.0, 0.0).max_rel
                    for lo, hi in zip(low, high, strict=True)), default=0.0)

    return error


def widened(setup: _Setup, dtype: str, rounding: float) -> tuple[float, float] | None:
    """``(reference, numerical)`` tolerances widened to 4× the reference's own rounding
    (see :func:`reference_rounding`), or ``None`` when the defaults stand."""
    if setup.rtol is not None or not 4 * rounding > RTOL_AUTODIFF[dtype]:
        return None
    return (4 * rounding, max(RTOL_NUMERICAL[(dtype, "float64")], 4 * rounding))


def _leaf_reports(setup: _Setup, dtype: str, got: Sequence[Any], expected: Sequence[Any],
                  loss: float, rtol: float | None = None) -> tuple[LeafReport, ...]:
    floor = _floor(dtype, loss)
    reports = []
    for name, a, b in zip(setup.sig.diff_names, got, expected, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        comparison = _compare(a64.reshape(-1), b64.reshape(-1), floor,
                              rtol or setup.rtol_reference(dtype), setup.atol_reference())
        reports.append(LeafReport(name, tuple(np.shape(b)), dtype, floor, comparison, None))
    return tuple(reports)


def _eager_case(setup: _Setup, dtype: str, label: str, args: tuple, cot: Any,
                rtol: tuple[float, float] | None = None) -> RuleCase:
    sig = setup.sig
    try:
        out, got = _vjp(setup.f, sig, sig.diff_values(args), sig.traced_values(args), cot)
        _, expected = _vjp(setup.reference, sig, sig.diff_values(args),
                           sig.traced_values(args), cot)
    except Exception as e:  # the user's code: report, do not crash the check
        return RuleCase(dtype, label, "eager", error=_error(e))
    loss = float(_inner(out, cot))
    return RuleCase(dtype, label, "eager", _leaf_reports(setup, dtype, got, expected, loss,
                                                         rtol[0] if rtol else None))


def _jit_case(setup: _Setup, dtype: str, label: str, args: tuple, cot: Any,
              numerical: bool, rtol: tuple[float, float] | None = None) -> RuleCase:
    """Rule vs reference under ``jit`` and vs numerical: :func:`compare_grads` of the two
    cotangent losses (it compiles both gradients into one program)."""
    sig = setup.sig
    params = dict(zip(sig.diff_names, sig.diff_values(args), strict=True))
    try:
        report = compare_grads(_CotangentLoss(setup.f, sig), _CotangentLoss(setup.reference, sig),
                               params, sig.traced_values(args), cot,
                               rtol=rtol if rtol is not None else setup.rtol,
                               atol=setup.atol, numerical=numerical,
                               max_entries=setup.max_entries, seed=setup.seed,
                               matmul_precision=setup.matmul_precision)
    except Exception as e:
        return RuleCase(dtype, label, "jit", error=_error(e))
    leaves = tuple(report.leaf(name) for name in sig.diff_names)
    return RuleCase(dtype, label, "jit", leaves)


def _vmap_case(setup: _Setup, dtype: str, sets: Sequence[tuple], cots: Sequence[Any],
               rtol: tuple[float, float] | None = None) -> RuleCase:
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
    return RuleCase(dtype, label, "vmap", _leaf_reports(setup, dtype, got, expected, loss,
                                                        rtol[0] if rtol else None))
