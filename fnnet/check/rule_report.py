"""The report of :func:`fnnet.check_rule`: per-argument comparisons for every dtype, argument
set and transformation, the structural checks, and a diagnosis per failing argument.

The comparison numbers and the table are :mod:`fnnet.gradcheck`'s (:class:`LeafReport` rows,
``max_rel = |a − b| / max(|a|, |b|, floor)``): column group "rule vs reference" compares the
rule's VJP with ``jax.vjp`` of the reference, "rule vs numerical" with float64 central
differences of the rule's own forward.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fnnet.gradcheck import _PRECISION_NOTES, LeafReport, _finite, leaf_table

__all__ = ["RuleCase", "RuleReport", "StructuralCheck"]


@dataclass(frozen=True)
class RuleCase:
    """One run of the rule: a dtype, an argument set, a transformation.

    ``args`` is ``"example"`` (the arguments given), ``"fresh k"`` (random ones of the same
    shapes) or ``"K stacked"`` (a leading axis of K sets, for ``vmap``); ``mode`` is
    ``"eager"``, ``"jit"`` (with the numerical comparison) or ``"vmap"``. ``leaves`` has one
    :class:`~fnnet.gradcheck.LeafReport` per differentiated argument; ``error`` the exception
    the rule (or the reference) raised instead, as ``"TypeName: message"``.
    """

    dtype: str
    args: str
    mode: str
    leaves: tuple[LeafReport, ...] = ()
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.dtype} {self.args} {self.mode}"

    @property
    def ok(self) -> bool:
        return self.error is None and all(leaf.ok for leaf in self.leaves)


@dataclass(frozen=True)
class StructuralCheck:
    """A check of the rule's structure: ``name`` (e.g. ``"linearity"``), verdict, one line."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class RuleReport:
    """Everything :func:`fnnet.check_rule` found; ``ok`` when every case and check passes.

    Attributes:
      function, reference: names of the rule and of what it was compared with.
      arguments: the differentiated arguments, in positional order.
      cases: the comparisons (:class:`RuleCase`), by dtype, argument set and mode.
      checks: the structural checks (:class:`StructuralCheck`).
      diagnoses: ``(argument, words)`` for each failing argument whose error has a
        recognisable shape (off by a factor, transposed, sign, ignores the cotangent, ...).
      notes: remarks on how the check was made.
      seed, matmul_precision: how the check ran.
    """

    function: str
    reference: str
    arguments: tuple[str, ...]
    cases: tuple[RuleCase, ...]
    checks: tuple[StructuralCheck, ...]
    diagnoses: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    seed: int = 0
    matmul_precision: str = "highest"

    @property
    def ok(self) -> bool:
        return all(case.ok for case in self.cases) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[str, ...]:
        """``"<case>: <argument>"`` per failing comparison, ``"<case>: error"``, and the names
        of failing structural checks."""
        found = []
        for case in self.cases:
            if case.error is not None:
                found.append(f"{case.label}: error")
            found += [f"{case.label}: {leaf.path}" for leaf in case.leaves if not leaf.ok]
        return (*found, *(c.name for c in self.checks if not c.ok))

    @property
    def failing_arguments(self) -> tuple[str, ...]:
        """The arguments with at least one failing comparison, in positional order."""
        bad = {leaf.path for case in self.cases for leaf in case.leaves if not leaf.ok}
        return tuple(name for name in self.arguments if name in bad)

    def diagnosis(self, argument: str) -> str | None:
        """The diagnosis of ``argument``, or ``None``."""
        return dict(self.diagnoses).get(argument)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite numbers become ``None``)."""
        cases = []
        for case in self.cases:
            leaves = []
            for leaf in case.leaves:
                entry = _finite(dataclasses.asdict(leaf))
                entry["shape"], entry["ok"] = list(leaf.shape), leaf.ok
                leaves.append(entry)
            cases.append({"dtype": case.dtype, "args": case.args, "mode": case.mode,
                          "ok": case.ok, "error": case.error, "leaves": leaves})
        return {
            "ok": self.ok,
            "function": self.function,
            "reference": self.reference,
            "arguments": list(self.arguments),
            "failures": list(self.failures),
            "diagnoses": dict(self.diagnoses),
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "cases": cases,
            "notes": list(self.notes),
            "seed": self.seed,
            "matmul_precision": self.matmul_precision,
        }

    def format_table(self) -> str:
        """The comparisons as one table (a row per case and argument), then the errors, the
        structural checks, the diagnoses, the tolerances and the verdict."""
        rows = [(case.label, leaf) for case in self.cases for leaf in case.leaves]
        lines = [f"check_rule: {self.function} against {self.reference} "
                 f"(VJPs under random cotangents)"]
        lines += leaf_table([leaf for _, leaf in rows], labels=[label for label, _ in rows],
                            label_header="case", leaf_header="arg",
                            groups=("rule vs reference", "rule vs numerical"))
        errors = [case for case in self.cases if case.error is not None]
        if errors:
            lines.append("errors:")
            lines += [f"  {case.label}: {case.error}" for case in errors]
        if self.checks:
            lines.append("structural checks:")
            lines += [f"  {'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        if self.diagnoses:
            lines.append("diagnosis:")
            lines += [f"  {name}: {words}" for name, words in self.diagnoses]
        tolerances: dict[str, list[float | None]] = {}
        for _, leaf in rows:
            pair = tolerances.setdefault(leaf.dtype, [leaf.autodiff.rtol, None])
            if leaf.numerical is not None:
                pair[1] = leaf.numerical.rtol
        if tolerances:
            parts = [f"{dtype}: <= {ref:g} vs reference"
                     + (f", <= {num:g} vs numerical" if num is not None else "")
                     for dtype, (ref, num) in sorted(tolerances.items())]
            lines.append("tolerances (max rel): " + "; ".join(parts))
            lines.append("rel = |a-b| / max(|a|, |b|, floor), floor = FLOORS[dtype]·max(1, |L|) "
                         "with L = Σ<f(args), g>; numerical: float64 central differences of "
                         "the rule's forward, n = entries checked")
        lines.append(f"matmul precision: {self.matmul_precision} (float32 products: "
                     f"{_PRECISION_NOTES[self.matmul_precision]})")
        lines += [f"note: {note}" for note in self.notes]
        lines.append("OK" if self.ok else f"FAIL: {self._verdict()}")
        return "\n".join(lines)

    def _verdict(self) -> str:
        """The failures in a line: each failing argument with its count of failing cases,
        errors, failing checks."""
        parts = []
        for name in self.failing_arguments:
            bad = sum(1 for case in self.cases for leaf in case.leaves
                      if leaf.path == name and not leaf.ok)
            total = sum(1 for case in self.cases for leaf in case.leaves if leaf.path == name)
            parts.append(f"{name} ({bad} of {total} cases)")
        errors = sum(case.error is not None for case in self.cases)
        if errors:
            parts.append(f"{errors} case{'s' if errors > 1 else ''} raised")
        parts += [c.name for c in self.checks if not c.ok]
        return ", ".join(parts)
