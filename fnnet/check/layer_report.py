"""The report of :func:`fnnet.check_layer`: the gradient table at the given inputs, what was
tried, and one line per problem (what was tried, what came out, what was expected)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fnnet.gradcheck import LeafReport, _finite, leaf_table

__all__ = ["LayerReport", "Problem"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a layer.

    ``severity`` is ``"fail"`` or ``"warn"`` (e.g. ``backward`` changed the caller's
    ``dout`` in place: harmless in the book's loop, a bug once ``dout`` is reused);
    ``trial`` names the trial (``"gradient"``, ``"forward"``, ``"batch size 5"``, ``"3
    classes"``, ``"large logits"``, ``"dout × 2.5"``, ``"dout unchanged"``); ``hint`` the
    diagnosis, when the error has a recognisable shape.
    """

    trial: str
    severity: str
    tried: str
    got: str
    expected: str
    hint: str | None = None

    @property
    def line(self) -> str:
        """``FAIL <trial>: tried …; got …; expected … (hint)``."""
        mark = "FAIL" if self.severity == "fail" else "warn"
        text = f"{mark} {self.trial}: tried {self.tried}; got {self.got}; expected {self.expected}"
        return text + (f" — {self.hint}" if self.hint else "")


@dataclass(frozen=True)
class LayerReport:
    """Everything :func:`fnnet.check_layer` found; ``ok`` when no problem is a failure.

    Attributes:
      layer: the class name.
      op: the fnnet op the layer was compared with (``"fnnet.manual.affine"``), or ``None``.
      leaves: at the given inputs, one :class:`~fnnet.gradcheck.LeafReport` per gradient
        (``dx``, ``dW``, …): ``autodiff`` holds the comparison with fnnet's op (``None``
        when there is none), ``numerical`` the one with central differences of ``forward``.
      trials: what was tried, one line each, passing or not.
      problems: the :class:`Problem` lines, failures and warnings.
      notes: remarks on how the check was made.
    """

    layer: str
    op: str | None
    leaves: tuple[LeafReport, ...]
    trials: tuple[str, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()
    seed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "fail")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warn")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite numbers become ``None``)."""
        leaves = []
        for leaf in self.leaves:
            entry = _finite(dataclasses.asdict(leaf))
            entry["shape"], entry["ok"] = list(leaf.shape), leaf.ok
            leaves.append(entry)
        return {"ok": self.ok, "layer": self.layer, "op": self.op, "leaves": leaves,
                "trials": list(self.trials),
                "problems": [{**dataclasses.asdict(p), "line": p.line} for p in self.problems],
                "notes": list(self.notes), "seed": self.seed}

    def format_table(self) -> str:
        """The gradient table, the trials, the problem lines and the verdict."""
        against = self.op or "no fnnet op"
        lines = [f"check_layer: {self.layer} (backward vs central differences of its forward "
                 f"in float64; vs {against})"]
        if self.leaves:
            lines += leaf_table(self.leaves, leaf_header="grad",
                                groups=(f"backward vs {self.op or 'fnnet (none)'}",
                                        "backward vs numerical"))
        lines.append("tried:")
        lines += [f"  {trial}" for trial in self.trials]
        if self.problems:
            lines.append("problems:")
            lines += [f"  {p.line}" for p in self.problems]
        lines += [f"note: {note}" for note in self.notes]
        warned = f" ({len(self.warnings)} warning{'s' * (len(self.warnings) != 1)})" \
            if self.warnings else ""
        lines.append(f"OK{warned}" if self.ok else
                     f"FAIL: {len(self.failures)} problem{'s' * (len(self.failures) != 1)}"
                     f"{warned}")
        return "\n".join(lines)
