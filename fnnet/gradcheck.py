"""Gradient checks as a product: manual vs autodiff vs numerical gradients, per parameter leaf.

:func:`compare_grads` takes two losses with the same forward values — one whose backward pass
runs the hand-written rules (``loss_manual``), one differentiated by ``jax.grad`` through plain
``jax.numpy`` (``loss_autodiff``) — and for every leaf of the parameter pytree (named by its
path, e.g. ``affine1/W``) compares the manual gradient ``a`` with

* the autodiff gradient, on every entry, and
* a central-difference **numerical** gradient of ``loss_manual``'s forward, on a seeded random
  subset of at most ``max_entries`` entries per leaf.

Each comparison reports three numbers over the compared entries:

* ``max_abs = max |a − b|``;
* ``max_rel = max |a − b| / max(|a|, |b|, floor)`` — relative, except that entries smaller than
  the *floor* are measured against the floor (a near-zero entry's relative error means
  nothing). ``floor = FLOORS[dtype] · max(1, |L|)``, with ``L`` the loss value: the numerical
  gradient's absolute error is proportional to the loss's own rounding, so the floor scales
  with ``|L|`` (see :data:`FLOORS`);
* ``cosine = a·b / (‖a‖‖b‖)`` (1 when both are zero, 0 when only one is).

A comparison passes when every compared entry has ``|a − b| ≤ max(atol, rtol·max(|a|, |b|,
floor))``, i.e. ``max_rel ≤ rtol`` (or ``max_abs ≤ atol``); tolerances default per dtype
(:data:`RTOL_AUTODIFF`, :data:`RTOL_NUMERICAL`) and can be overridden.

**Status.** Each comparison, and each leaf, is ``"ok"``, ``"FAIL"``, ``"zero"`` or
``"not checked"``. *Zero*: every compared entry of both gradients is within the absolute
tolerance the check resolves, ``zero_tol = max(atol, rtol·floor)`` — a gradient that is zero
by construction (a bias followed by batch norm: the normalisation cancels any shift), whose
cosine is rounding noise; it passes, and the table states the tolerance. *Not checked*: no
entry could be compared (every numerically sampled entry was at a kink, or the leaf is empty)
— never reported as "ok"; the report's :attr:`GradReport.not_checked` lists those leaves.

**Numerical gradient.** ``∂L/∂θᵢ ≈ (L(θ + hᵢeᵢ) − L(θ − hᵢeᵢ)) / ((θᵢ + hᵢ) − (θᵢ − hᵢ))``
with ``hᵢ = ∛ε · max(1, |θᵢ|)`` (``ε`` the machine epsilon of the dtype it is computed in:
the step that balances the O(h²) truncation error against the O(ε|L|/h) rounding error; the
denominator is the step actually taken after rounding). If float64 is enabled
(``jax_enable_x64``) the numerical gradient is computed on a float64 copy of the params and of
the floating arguments, whatever their dtype; otherwise in float32, which is much coarser (the
report says which, and the float32 tolerances allow for it). Parameters are never perturbed in
place: every evaluation builds new arrays. The losses must be traceable (``jax.jit``,
``vmap``) and hashable: they are static arguments of the jitted gradient functions, so a
second check of the same losses reuses the compiled code.

**Kinks: not comparable, never failed.** A step that straddles a kink (a ReLU pre-activation
within ``hᵢ·|x|`` of 0) gives a numerical gradient that is wrong, not the manual rule: with the
book's ``std = 0.01`` init in a deep ReLU net the pre-activations shrink layer by layer until
even the float64 step (~6e-6) crosses them. So each entry's central difference is also taken
with half the step: on a smooth stretch the two agree to ``O(h²)``, but across a kink at
distance ``d < h`` they differ by about ``|s₁ − s₂|·d/2h`` (``s₁, s₂`` the slopes on either
side). A kink at ``θᵢ`` itself (a ReLU input exactly 0: a zero bias over zero pixels) makes both
central differences the same average of the two slopes, so the second differences are compared
too: ``S(h) = L(θ+h) + L(θ−h) − 2L(θ)`` is ``≈ 4·S(h/2)`` on a smooth stretch but ``2·S(h/2)``
across a slope jump ``J`` at ``θ``, and ``|S(h) − 4·S(h/2)|/h`` estimates ``J``. An entry whose
two estimates differ by more than the numerical tolerance, or whose jump exceeds it (and the
rounding bound), is **not comparable**: it is counted in ``Comparison.skipped``, left out of the
statistics and the verdict, and the report says how many (``n`` column: ``64 (12 kinks)``; a
note). A wrong rule on a smooth stretch — the usual bug — still fails; only a kink closer to
``θᵢ`` than about ``rtol·hᵢ`` can slip through as an (always tiny) false failure. Deep ReLU nets
are checked more thoroughly with ``weight_init="he"`` (as the book's own ``MultiLayerNet``
does): fewer entries then sit at kinks.

>>> import functools, jax, fnnet
>>> with jax.enable_x64(True):
...     report = compare_model_grads(functools.partial(fnnet.two_layer_net, 4, 5, 3,
...                                                    dtype=jax.numpy.float64),
...                                  jax.numpy.ones((2, 4)), jax.numpy.array([0, 2]))
>>> report.ok, [leaf.path for leaf in report.leaves]
(True, ['affine1/W', 'affine1/b', 'affine2/W', 'affine2/b'])
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fnnet import precision as fnnet_precision
from fnnet._checks import check_int
from fnnet.layers import Model
from fnnet.nets import CONV_NETS, NETS, SAMPLED_NETS, build_net
from fnnet.precision import cast_floating

__all__ = [
    "FLOORS",
    "RTOL_AUTODIFF",
    "RTOL_NUMERICAL",
    "Comparison",
    "GradReport",
    "LeafReport",
    "compare_grads",
    "compare_model_grads",
    "gradcheck_model",
    "leaf_table",
]

FLOORS: dict[str, float] = {
    "float64": 1e-4,
    "float32": 1e-3,
    "float16": 1e-2,
    "bfloat16": 1e-1,
}
"""Relative-error floor per parameter dtype, in units of ``max(1, |L|)``.

float64: a float64 central difference is accurate to about ``ε^(2/3)·|L| ≈ 4e-11·|L|``
(measured 3e-11–7e-11 at ``|L| ≈ 2.3``), so entries below ``1e-4·|L|`` cannot be checked to
``1e-6`` relative; the floor checks them absolutely, to ``1e-10·|L|``. Without it, manual vs
autodiff alone reaches 3e-10 relative on the tiny entries of a 3-hidden-layer net.
float32: manual and autodiff float32 gradients differ by ~1e-9 absolute (rounding order); a
floor of ``1e-3·|L|`` keeps the tiny entries from dominating. Half precision: about ``√ε``
of the dtype (bfloat16 keeps 8 significant bits)."""

RTOL_AUTODIFF: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-4,
    "float16": 2e-2,
    "bfloat16": 5e-2,
}
"""Default ``max_rel`` bound, manual vs autodiff, by parameter dtype. The two differ only in
rounding order. Measured worst cases (digits, 3 samples, 8 seeds, two-layer net and
3×100-hidden ReLU/He and sigmoid/Xavier nets, floors above): float64 1.7e-13, float32 1.1e-5,
float16 5.9e-3, bfloat16 1.5e-2."""

RTOL_NUMERICAL: dict[tuple[str, str], float] = {
    ("float64", "float64"): 1e-6,
    ("float32", "float64"): 3e-4,
    ("float32", "float32"): 5e-2,
    ("float16", "float64"): 2e-2,
    ("float16", "float32"): 5e-2,
    ("bfloat16", "float64"): 5e-2,
    ("bfloat16", "float32"): 5e-2,
}
"""Default ``max_rel`` bound, manual vs numerical, by (parameter dtype, numerical dtype).
Measured worst cases as for :data:`RTOL_AUTODIFF`: float64 3.8e-7; float32 params against a
float64 numerical gradient 2.9e-5 (the manual float32 rounding dominates); float16 3.8e-3,
bfloat16 8.8e-3. A float32 numerical gradient (x64 off) steps by ``∛ε ≈ 5e-3`` on a loss
rounded to ~1e-7, leaving ~5e-5 absolute error: 2.3e-2 on a smooth (sigmoid) net; on ReLU
nets with the book's ``std = 0.01`` init such a step straddles kinks and the check is
unreliable (relative errors of order 1)."""


# --- report types --------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Manual gradient ``a`` against another gradient ``b`` on the compared entries of a leaf.

    ``max_abs = max |a − b|``, ``mean_abs = mean |a − b|`` (the book's gradient-check
    figure), ``max_rel = max |a − b| / max(|a|, |b|, floor)``, ``cosine = a·b / (‖a‖‖b‖)``
    over the ``entries − skipped`` comparable entries; ``ok`` when every one of them has
    ``|a − b| ≤ max(atol, rtol·max(|a|, |b|, floor))``. NaN anywhere makes ``ok`` false.
    ``skipped``: entries left out as not comparable (numerical: the step crosses a kink).
    ``max_magnitude = max(|a|, |b|)`` over the compared entries and ``zero_tol = max(atol,
    rtol·floor)``, the absolute tolerance below which both gradients count as zero.
    """

    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    entries: int
    rtol: float
    atol: float
    ok: bool
    skipped: int = 0
    max_magnitude: float = 0.0
    zero_tol: float = 0.0

    @property
    def status(self) -> str:
        """``"FAIL"``; ``"not checked"`` (no entry compared); ``"zero"`` (both gradients
        within ``zero_tol`` of 0 everywhere); else ``"ok"``."""
        if not self.ok:
            return "FAIL"
        if self.entries - self.skipped == 0:
            return "not checked"
        return "zero" if self.max_magnitude <= self.zero_tol else "ok"


@dataclass(frozen=True)
class LeafReport:
    """The checks of one parameter leaf.

    ``autodiff`` compares every entry; ``numerical`` (``None`` if not computed) compares
    ``numerical.entries`` entries (all of them, or a seeded random subset). ``autodiff`` is
    ``None`` only in :func:`fnnet.check_layer`'s reports of layers fnnet has no op for.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    floor: float
    autodiff: Comparison | None
    numerical: Comparison | None

    @property
    def ok(self) -> bool:
        return ((self.autodiff is None or self.autodiff.ok)
                and (self.numerical is None or self.numerical.ok))

    @property
    def status(self) -> str:
        """``"FAIL"`` if a comparison fails; ``"not checked"`` if the numerical check (when
        asked for) compared nothing; ``"zero"`` if every comparison found a zero gradient;
        else ``"ok"``."""
        comparisons = [c for c in (self.autodiff, self.numerical) if c is not None]
        if not self.ok:
            return "FAIL"
        if any(c.status == "not checked" for c in comparisons):
            return "not checked"
        return "zero" if all(c.status == "zero" for c in comparisons) else "ok"


@dataclass(frozen=True)
class GradReport:
    """Per-leaf gradient checks of one loss at one point (see :func:`compare_grads`).

    Attributes:
      leaves: one :class:`LeafReport` per parameter leaf, in ``tree_flatten`` order.
      loss: the loss value ``L`` at the params (sets the floor, ``FLOORS[dtype]·max(1, |L|)``).
      numerical_dtype: the dtype the numerical gradient was computed in, or ``None``.
      max_entries: the per-leaf cap on numerically checked entries (``None``: all).
      seed: seed of the entry subsets.
      notes: remarks on how the check was made (e.g. float32 numerical gradient).
      matmul_precision: the float32 matmul precision the gradients were computed at.
    """

    leaves: tuple[LeafReport, ...]
    loss: float
    numerical_dtype: str | None
    max_entries: int | None
    seed: int
    notes: tuple[str, ...] = ()
    matmul_precision: str = "highest"

    @property
    def ok(self) -> bool:
        """True when every leaf passes both comparisons."""
        return all(leaf.ok for leaf in self.leaves)

    @property
    def failures(self) -> tuple[str, ...]:
        """Paths of the leaves that fail."""
        return tuple(leaf.path for leaf in self.leaves if not leaf.ok)

    @property
    def not_checked(self) -> tuple[str, ...]:
        """Paths of the leaves that pass only because nothing of them could be compared
        numerically (status ``"not checked"``; they do not count as failures)."""
        return tuple(leaf.path for leaf in self.leaves if leaf.status == "not checked")

    @property
    def zero(self) -> tuple[str, ...]:
        """Paths of the leaves whose gradient is zero within the checks' tolerance."""
        return tuple(leaf.path for leaf in self.leaves if leaf.status == "zero")

    def leaf(self, path: str) -> LeafReport:
        """The report of the leaf at ``path`` (e.g. ``"affine1/W"``)."""
        for leaf in self.leaves:
            if leaf.path == path:
                return leaf
        raise KeyError(f"no leaf {path!r}; leaves: {[leaf.path for leaf in self.leaves]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite numbers become ``None``), with ``ok`` and
        ``failures``."""
        leaves = []
        for leaf in self.leaves:
            entry = _finite(dataclasses.asdict(leaf))
            entry["shape"] = list(leaf.shape)
            entry["ok"], entry["status"] = leaf.ok, leaf.status
            for name in ("autodiff", "numerical"):
                if getattr(leaf, name) is not None:
                    entry[name]["status"] = getattr(leaf, name).status
            leaves.append(entry)
        return {
            "ok": self.ok,
            "failures": list(self.failures),
            "not_checked": list(self.not_checked),
            "zero": list(self.zero),
            "loss": _finite(self.loss),
            "numerical_dtype": self.numerical_dtype,
            "max_entries": self.max_entries,
            "seed": self.seed,
            "matmul_precision": self.matmul_precision,
            "notes": list(self.notes),
            "leaves": leaves,
        }

    def format_table(self) -> str:
        """A plain-text table, one row per leaf, then the tolerances, notes and verdict."""
        lines = leaf_table(self.leaves)
        if self.leaves:
            first = self.leaves[0]
            tol = f"tolerances: max rel <= {first.autodiff.rtol:g} vs autodiff"
            if first.numerical:
                tol += (f", <= {first.numerical.rtol:g} vs numerical (central differences in "
                        f"{self.numerical_dtype}; n = entries checked)")
            lines += [tol, f"rel = |a-b| / max(|a|, |b|, floor), floor = {first.floor:.3g} "
                           f"(FLOORS[{first.dtype}]·max(1, |L|), loss L = {self.loss:.6g})",
                      f"matmul precision: {self.matmul_precision} (float32 products: "
                      f"{_PRECISION_NOTES[self.matmul_precision]})"]
        lines += [f"note: {note}" for note in (*self._status_notes(), *self.notes)]
        unchecked = (f" (not checked numerically: {', '.join(self.not_checked)})"
                     if self.not_checked else "")
        lines.append(f"OK{unchecked}" if self.ok else f"FAIL: {', '.join(self.failures)}")
        return "\n".join(lines)

    def _status_notes(self) -> list[str]:
        """What the "zero" and "not checked" statuses of the table mean, with tolerances."""
        notes = []
        zeros = [leaf for leaf in self.leaves if leaf.status == "zero"]
        if zeros:
            first = zeros[0]
            bounds = ", ".join(f"<= {c.zero_tol:.1e} vs {name}" for name, c in
                               (("autodiff", first.autodiff), ("numerical", first.numerical))
                               if c is not None)
            bounds = f"|g| {bounds}"
            notes.append(f"zero ({', '.join(leaf.path for leaf in zeros)}): every entry of "
                         f"both gradients is 0 within the absolute tolerance the check "
                         f"resolves, rtol·floor ({bounds}): a gradient zero by construction, "
                         f"e.g. a bias followed by batch norm; its cosine is rounding noise")
        if self.not_checked:
            notes.append(f"not checked ({', '.join(self.not_checked)}): no numerically "
                         f"sampled entry could be compared, each sits at a kink (e.g. a zero "
                         f"bias over blank pixels: the ReLU input is exactly 0), so only the "
                         f"comparison with autodiff stands for it")
        return notes


def leaf_table(leaves: Sequence[LeafReport], *, labels: Sequence[str] | None = None,
               label_header: str = "check", leaf_header: str = "leaf",
               groups: tuple[str, str] = ("manual vs autodiff", "manual vs numerical"),
               ) -> list[str]:
    """The lines of a per-leaf table: group titles, header, rule, one row per leaf.

    :meth:`GradReport.format_table` prints it; the checks of :mod:`fnnet.check` print it with
    a first column of ``labels`` (one per leaf, e.g. ``"float32 example jit"``) under
    ``label_header``, their own name for the leaf column (``leaf_header``) and their own
    ``groups`` titles (the two comparison column groups).
    """
    header = [leaf_header, "shape", "max abs", "max rel", "cos", "max abs", "max rel", "cos",
              "n", "ok"]
    rows = []
    for leaf in leaves:
        num = leaf.numerical
        rows.append([
            leaf.path, "x".join(map(str, leaf.shape)) or "()",
            *(_comparison_cells(leaf.autodiff) if leaf.autodiff else ["-", "-", "-"]),
            *(_comparison_cells(num) if num else ["-", "-", "-"]),
            _entries_cell(num) if num else "-",
            leaf.status,
        ])
    n_left = 2
    if labels is not None:
        header, n_left = [label_header, *header], 3
        rows = [[label, *row] for label, row in zip(labels, rows, strict=True)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < n_left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    left = sum(widths[:n_left]) + 2 * n_left
    group_a = groups[0].center(sum(widths[n_left:n_left + 3]) + 4)
    group_b = groups[1].center(sum(widths[n_left + 3:n_left + 7]) + 6)
    return [" " * left + group_a + "  " + group_b, line(header),
            "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(line, rows)]


_PRECISION_NOTES = {"highest": "full float32 on every device",
                    "high": "bf16x3 on GPUs, about float32",
                    "default": "the backend's choice: TF32 on NVIDIA GPUs"}


def _cosine_cell(cosine: float) -> str:
    """``1`` exactly, ``1-2.2e-16`` near 1 (where the interesting digits are), else 6 places."""
    if cosine == 1.0:
        return "1"
    if 0.999 < cosine < 1.0:
        return f"1-{1.0 - cosine:.1e}"
    return f"{cosine:.6f}"


def _entries_cell(c: Comparison) -> str:
    """``64``, ``64 (12 kinks)`` when some entries were not comparable, ``0 of 30 (30
    kinks)`` when none was."""
    if not c.skipped:
        return str(c.entries)
    kinks = f"({c.skipped} kink{'s' if c.skipped > 1 else ''})"
    return f"0 of {c.entries} {kinks}" if c.skipped == c.entries else f"{c.entries} {kinks}"


def _comparison_cells(c: Comparison) -> list[str]:
    if c.status == "not checked":
        return ["-", "-", "-"]
    cosine = "zero" if c.status == "zero" else _cosine_cell(c.cosine)
    return [f"{c.max_abs:.2e}", f"{c.max_rel:.2e}", cosine]


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# --- the comparison ------------------------------------------------------------------------


def _path_str(path: Sequence[Any]) -> str:
    """A pytree key path as ``a/b/0`` (JAX's own ``keystr``); ``params`` for the root."""
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/") or "params"


def _dtype_name(dtype: Any) -> str:
    return jnp.dtype(dtype).name


def _compare(a: np.ndarray, b: np.ndarray, floor: float, rtol: float, atol: float,
             comparable: np.ndarray | None = None) -> Comparison:
    """The :class:`Comparison` of two float64 vectors of the same length, over the entries
    where ``comparable`` (default: all) is true."""
    if comparable is not None and not np.all(comparable):
        inner = _compare(a[comparable], b[comparable], floor, rtol, atol)
        return dataclasses.replace(inner, entries=int(a.size),
                                   skipped=int(a.size - np.count_nonzero(comparable)))
    diff = np.abs(a - b)
    magnitude = np.maximum(np.abs(a), np.abs(b))
    scale = np.maximum(magnitude, floor)
    zero_tol = max(atol, rtol * floor)
    if a.size == 0:
        return Comparison(0.0, 0.0, 0.0, 1.0, 0, rtol, atol, True, zero_tol=zero_tol)
    norms = float(np.linalg.norm(a)) * float(np.linalg.norm(b))
    if norms > 0:
        cosine = float(np.clip(np.dot(a, b) / norms, -1.0, 1.0))  # rounding can pass 1
    else:
        cosine = 1.0 if not (np.any(a) or np.any(b)) else 0.0
    with np.errstate(invalid="ignore"):
        entry_ok = (diff <= np.maximum(atol, rtol * scale)) & np.isfinite(diff)
    return Comparison(float(np.max(diff)), float(np.mean(diff)), float(np.max(diff / scale)),
                      cosine, int(a.size), rtol, atol, bool(np.all(entry_ok)),
                      max_magnitude=float(np.max(magnitude)), zero_tol=zero_tol)


def _subset(size: int, max_entries: int | None, seed: int, leaf_index: int) -> np.ndarray:
    """Sorted flat indices checked numerically: all, or ``max_entries`` drawn without
    replacement by ``np.random.default_rng([seed, leaf_index])``."""
    if max_entries is None or size <= max_entries:
        return np.arange(size)
    rng = np.random.default_rng([seed, leaf_index])
    return np.sort(rng.choice(size, size=max_entries, replace=False))


@functools.partial(jax.jit, static_argnums=(0,))
def _numerical_grads(loss: Callable, params: Any, args: tuple, flat_indices: jax.Array):
    """Central differences of ``loss`` at ``params`` for entries ``flat_indices`` of the
    params raveled into one vector (one compiled loop for every leaf), with step ``h`` and
    with ``h/2``, and each entry's slope jump and its rounding bound (to detect kinks, see
    the module docstring)."""
    flat, unravel = ravel_pytree(params)
    theta = flat[flat_indices]
    h = float(np.cbrt(np.finfo(flat.dtype).eps)) * jnp.maximum(1, jnp.abs(theta))
    steps = (theta + h, theta - h, theta + h / 2, theta - h / 2)

    def loss_at(i: jax.Array, value: jax.Array) -> jax.Array:
        return loss(unravel(flat.at[i].set(value)), *args)

    def four(entry):
        i, *values = entry
        return tuple(loss_at(i, value) for value in values)

    plus, minus, half_plus, half_minus = jax.lax.map(four, (flat_indices, *steps),
                                                     batch_size=32)
    center = loss(params, *args)
    # Second differences: S(h) ≈ f''·h² ≈ 4·S(h/2) on a smooth stretch, but S(h) = J·h =
    # 2·S(h/2) across a slope jump J at θ itself, so |S(h) − 4·S(h/2)|/h estimates J.
    second, second_half = plus + minus - 2 * center, half_plus + half_minus - 2 * center
    jump = jnp.abs(second - 4 * second_half) / h
    rounding = 16 * jnp.finfo(flat.dtype).eps * jnp.maximum(jnp.abs(center), 1e-30) / h
    return ((plus - minus) / (steps[0] - steps[1]),
            (half_plus - half_minus) / (steps[2] - steps[3]), jump, rounding)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _value_and_grads(loss_manual: Callable, loss_autodiff: Callable, params: Any, args: tuple):
    value, grads_m = jax.value_and_grad(loss_manual)(params, *args)
    return value, grads_m, jax.grad(loss_autodiff)(params, *args)


def _tolerance(option: float | tuple[float, float] | None, which: int, default: float) -> float:
    if option is None:
        return default
    if isinstance(option, tuple):
        if len(option) != 2:
            raise ValueError(f"compare_grads: a tolerance tuple must be (autodiff, numerical); "
                             f"got {option!r}")
        return float(option[which])
    return float(option)


def compare_grads(
    loss_manual: Callable[..., jax.Array],
    loss_autodiff: Callable[..., jax.Array],
    params: Any,
    *args: Any,
    rtol: float | tuple[float, float] | None = None,
    atol: float | tuple[float, float] | None = None,
    numerical: bool = True,
    max_entries: int | None = 64,
    seed: int = 0,
    floor: float | Mapping[str, float] | None = None,
    matmul_precision: str = "highest",
) -> GradReport:
    """Compare ``jax.grad`` of two losses with respect to ``params``, leaf by leaf.

    Args:
      loss_manual: ``loss(params, *args) -> scalar`` whose backward runs the hand rules.
      loss_autodiff: the same loss through the references (``jax.grad`` differentiates it).
      params: the parameter pytree (the first argument of both losses).
      *args: the other arguments (inputs, labels), passed as they are.
      rtol: ``max_rel`` bound(s): a float for both comparisons, or ``(autodiff, numerical)``;
        ``None``: :data:`RTOL_AUTODIFF` / :data:`RTOL_NUMERICAL` for the leaf's dtype.
      atol: absolute bound(s) below which any difference passes, same forms; default 0.
      numerical: also compare against central differences (``False``: autodiff only).
      max_entries: the most entries per leaf checked numerically (a seeded random subset of
        larger leaves, see ``seed``); ``None`` checks every entry.
      seed: seed of the subsets: leaf ``i`` (``tree_flatten`` order) uses
        ``np.random.default_rng([seed, i]).choice(size, max_entries, replace=False)``.
      floor: override of :data:`FLOORS` (a number for every dtype, or a dict by dtype name),
        still multiplied by ``max(1, |L|)``.
      matmul_precision: float32 matmul precision of all three gradients
        (:data:`fnnet.precision.MATMUL_PRECISIONS`). ``"highest"`` by default on every
        device: the comparison is about the rules, and NVIDIA GPUs' default TF32 products
        (~1e-3 relative error) would make correct rules look wrong.

    Returns:
      A :class:`GradReport`; ``report.ok``, ``report.failures``, ``report.format_table()``.
    """
    if max_entries is not None and (isinstance(max_entries, bool) or max_entries < 1):
        raise ValueError(f"compare_grads: max_entries must be >= 1 or None; got {max_entries!r}")
    path_leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in path_leaves:
        dtype = jnp.asarray(leaf).dtype
        if _dtype_name(dtype) not in FLOORS:
            raise TypeError(f"compare_grads: parameter {_path_str(path)} must be floating "
                            f"({', '.join(FLOORS)}); got {dtype}")
    with fnnet_precision.matmul_precision(matmul_precision):
        value, grads_m, grads_a = _value_and_grads(loss_manual, loss_autodiff, params, args)
    loss_value, grads_m, grads_a = float(value), jax.tree.leaves(grads_m), jax.tree.leaves(grads_a)

    notes: list[str] = []
    numerical_dtype = None
    grads_n: list[np.ndarray] | None = None
    grads_half: list[np.ndarray] | None = None
    subsets = [_subset(int(np.size(leaf)), max_entries, seed, i)
               for i, (_, leaf) in enumerate(path_leaves)]
    if numerical:
        numerical_dtype = "float64" if jax.config.jax_enable_x64 else "float32"
        if numerical_dtype == "float32":
            notes.append("numerical gradient computed in float32 (jax_enable_x64 is off): "
                         "expect ~1e-2 agreement at best; enable x64 for a sharp check")
        offsets = np.cumsum([0] + [int(np.size(leaf)) for _, leaf in path_leaves])
        with fnnet_precision.matmul_precision(matmul_precision):
            flat_n, flat_half, flat_jump, flat_rounding = _numerical_grads(
                loss_manual, cast_floating(params, numerical_dtype),
                cast_floating(args, numerical_dtype),
                jnp.asarray(np.concatenate([s + o for s, o in zip(subsets, offsets,
                                                                    strict=False)])))
        cuts = np.cumsum([len(s) for s in subsets])[:-1]
        grads_n = np.split(np.asarray(flat_n, np.float64), cuts)
        grads_half = np.split(np.asarray(flat_half, np.float64), cuts)
        jumps = np.split(np.asarray(flat_jump, np.float64), cuts)
        roundings = np.split(np.asarray(flat_rounding, np.float64), cuts)

    reports = []
    for i, (path, leaf) in enumerate(path_leaves):
        dtype = _dtype_name(jnp.asarray(leaf).dtype)
        unit = max(1.0, abs(loss_value)) if math.isfinite(loss_value) else 1.0
        if floor is None:
            leaf_floor = FLOORS[dtype] * unit
        elif isinstance(floor, Mapping):
            leaf_floor = float(floor.get(dtype, FLOORS[dtype])) * unit
        else:
            leaf_floor = float(floor) * unit
        a = np.asarray(grads_m[i], np.float64).reshape(-1)
        b = np.asarray(grads_a[i], np.float64).reshape(-1)
        autodiff = _compare(a, b, leaf_floor, _tolerance(rtol, 0, RTOL_AUTODIFF[dtype]),
                            _tolerance(atol, 0, 0.0))
        num = None
        if grads_n is not None:
            rtol_n = _tolerance(rtol, 1, RTOL_NUMERICAL[(dtype, numerical_dtype)])
            num = _compare(a[subsets[i]], grads_n[i], leaf_floor, rtol_n,
                           _tolerance(atol, 1, 0.0),
                           comparable=_smooth(grads_n[i], grads_half[i], jumps[i],
                                              roundings[i], leaf_floor, rtol_n))
        reports.append(LeafReport(_path_str(path), tuple(np.shape(leaf)), dtype, leaf_floor,
                                  autodiff, num))
    skipped = sum(r.numerical.skipped for r in reports if r.numerical is not None)
    if skipped:
        where = ", ".join(f"{r.path} {r.numerical.skipped}/{r.numerical.entries}"
                          for r in reports if r.numerical is not None and r.numerical.skipped)
        notes.append(f"{skipped} {'entry' if skipped == 1 else 'entries'} not comparable "
                     f"numerically ({where}): the central difference crosses a kink (steps h "
                     f"and h/2 disagree, or the slope jumps at the point), e.g. a ReLU input "
                     f"at or near 0; left out, not failed. "
                     f"He init (weight_init='he', --init he) puts fewer entries at kinks")
    return GradReport(tuple(reports), loss_value, numerical_dtype,
                      max_entries, seed, tuple(notes), matmul_precision)


def _smooth(full: np.ndarray, half: np.ndarray, jump: np.ndarray, rounding: np.ndarray,
            floor: float, rtol: float) -> np.ndarray:
    """Entries with no kink within the step: central differences with steps ``h`` and ``h/2``
    that agree within ``rtol`` (relative, with the floor), and no slope jump at the point
    itself beyond that tolerance and the rounding bound. NaN counts as smooth (and fails)."""
    scale = np.maximum(np.maximum(np.abs(full), np.abs(half)), floor)
    with np.errstate(invalid="ignore"):
        crossed = np.abs(full - half) > rtol * scale
        at_kink = jump > np.maximum(rtol * scale, rounding)
        return ~(crossed | at_kink)


def compare_model_grads(
    build: Callable[..., Model],
    x: Any,
    t: Any,
    *,
    params: Any = None,
    key: jax.Array | None = None,
    **kwargs: Any,
) -> GradReport:
    """:func:`compare_grads` of ``model.loss`` for a model built with both grads settings.

    Args:
      build: ``build(grads=...) -> Model``, e.g.
        ``functools.partial(fnnet.two_layer_net, 64, 10, 10)``.
      x, t: a batch of inputs and labels.
      params: the point to check at; default ``build(grads="manual").init(key)``.
      key: PRNG key for the init (default ``jax.random.key(0)``); the losses are compared in
        training mode with the initial model state and the dropout key ``fold_in(key, 1)``.
      **kwargs: passed to :func:`compare_grads` (``rtol``, ``max_entries``, ...).
    """
    manual_model = build(grads="manual")
    autodiff_model = build(grads="autodiff")
    key = jax.random.key(0) if key is None else key
    if params is None:
        params = jax.jit(manual_model.init)(key)
    # Training-mode losses: batch norm's batch statistics, one fixed dropout mask for both.
    state, noise = manual_model.init_state(), jax.random.fold_in(key, 1)
    losses = [_TrainingLoss(model.loss, state, noise) for model in (manual_model, autodiff_model)]
    return compare_grads(*losses, params, x, t, **kwargs)


@dataclass(frozen=True, eq=False)
class _TrainingLoss:
    """``loss(params, x, t)`` in training mode with a fixed state and dropout key; hashable
    by identity, as :func:`compare_grads` needs (its jitted functions take it as static)."""

    loss: Callable[..., jax.Array]
    state: Any
    key: jax.Array

    def __call__(self, params: Any, x: jax.Array, t: jax.Array) -> jax.Array:
        return self.loss(params, x, t, state=self.state, key=self.key)


def gradcheck_model(
    *,
    net: str = "two-layer",
    dataset: str = "digits",
    batch_size: int = 3,
    dtype: str = "float64",
    seed: int = 0,
    data_dir: str | None = None,
    max_entries: int | None = 64,
    numerical: bool = True,
    download: bool = True,
    matmul_precision: str = "highest",
    **net_options: Any,
) -> GradReport:
    """Gradient check of one of the book's nets on real samples (what ``fnnet gradcheck`` runs).

    Takes the first ``batch_size`` samples of ``np.random.default_rng(seed).permutation`` of
    the training set of ``dataset`` (:func:`fnnet.data.load_dataset`; as images for the conv
    nets), builds the net ``net`` of :data:`fnnet.nets.NETS` with ``net_options``, inits
    params with ``jax.random.key(seed)`` and runs :func:`compare_model_grads` on the training
    loss: batch statistics for batch norm (from the initial state), and for dropout the fixed
    key ``fold_in(key(seed), 1)``, the same mask for the manual and the autodiff model.

    Float64 is enabled for the duration of the call only (``jax.enable_x64``, a scoped
    setting: the global flag is left alone), for either ``dtype``. For ``dtype="float64"``
    everything runs in float64; for ``dtype="float32"`` the params, inputs, forward and both
    backward passes stay float32 and only the numerical reference is float64 (a float32
    central difference is too coarse to judge a float32 gradient, see
    :data:`RTOL_NUMERICAL`).

    Args:
      net: a name of :data:`fnnet.nets.NETS` (``"two-layer"``, ``"mlp"``,
        ``"simple-conv"``, ``"deep-conv"``), or of :data:`fnnet.nets.SAMPLED_NETS` (the
        language models ``"simple-rnnlm"``, ``"rnnlm"``, ``"better-rnnlm"``, …): those bring
        their own batch (``SampledNet.sample``: random word ids for the language models)
        and are built with ``SampledNet.options`` updated by ``net_options``; ``dataset``,
        ``data_dir`` and ``download`` do not apply to them.
      dataset: ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.
      batch_size: samples in the batch (the book checks 3).
      dtype: ``"float64"`` or ``"float32"``.
      seed: seeds the sample choice, the init key, the dropout key and the entry subsets.
      data_dir: the directory holding the IDX files.
      max_entries, numerical: as for :func:`compare_grads`.
      download: fetch missing MNIST/Fashion-MNIST files (see :func:`fnnet.data.load_dataset`).
      matmul_precision: as for :func:`compare_grads` (``"highest"`` by default).
      **net_options: the builder's options, e.g. ``hidden=(50,)``, ``activation="relu"``,
        ``weight_init="he"``, ``batchnorm=True``, ``dropout=0.5``.
    """
    if net not in NETS and net not in SAMPLED_NETS:
        raise ValueError(f"gradcheck_model: net must be one of "
                         f"{(*NETS, *SAMPLED_NETS)}; got {net!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"gradcheck_model: dtype must be 'float32' or 'float64'; got {dtype!r}")
    batch_size = check_int("gradcheck_model: batch_size", batch_size)
    if net in SAMPLED_NETS:
        return _gradcheck_sampled(net, batch_size, dtype, seed, max_entries, numerical,
                                  matmul_precision, net_options)
    with jax.enable_x64(True):
        from fnnet.data import load_dataset  # data loading is only needed here

        data = load_dataset(dataset, data_dir=data_dir, download=download)
        if net in CONV_NETS:
            data = data.as_images()
        if batch_size > len(data.x_train):
            raise ValueError(f"gradcheck_model: batch_size must be <= {len(data.x_train)} (the "
                             f"training set of {dataset}); got {batch_size}")
        rows = np.random.default_rng(seed).permutation(len(data.x_train))[:batch_size]
        x = jnp.asarray(data.x_train[rows], dtype)
        t = jnp.asarray(data.t_train[rows])
        build = functools.partial(build_net, net, x.shape[1:], data.num_classes,
                                  dtype=jnp.dtype(dtype), **net_options)
        return compare_model_grads(build, x, t, key=jax.random.key(seed),
                                   max_entries=max_entries, numerical=numerical, seed=seed,
                                   matmul_precision=matmul_precision)


def _gradcheck_sampled(net: str, batch_size: int, dtype: str, seed: int,
                       max_entries: int | None, numerical: bool, matmul_precision: str,
                       net_options: dict[str, Any]) -> GradReport:
    """:func:`gradcheck_model` of a net of :data:`fnnet.nets.SAMPLED_NETS`."""
    spec = SAMPLED_NETS[net]
    unknown = sorted(set(net_options) - set(spec.options))
    if unknown:
        raise ValueError(f"gradcheck_model: net {net!r} takes the options "
                         f"{sorted(spec.options)}; got {unknown}")
    options = {**spec.options, **net_options}
    with jax.enable_x64(True):
        build = functools.partial(spec.build, dtype=jnp.dtype(dtype), **options)
        x, t = spec.sample(build(grads="manual"), batch_size, seed)
        return compare_model_grads(build, jnp.asarray(x), jnp.asarray(t),
                                   key=jax.random.key(seed), max_entries=max_entries,
                                   numerical=numerical, seed=seed,
                                   matmul_precision=matmul_precision)
