"""Naming the shape of a wrong gradient: what a hand rule most often gets wrong.

A wrong backward rule rarely returns noise. It returns the right gradient transposed, with its
sign flipped, scaled by a constant (``N`` too large: the batch mean's ``1/N`` left out; ``N``
too small: divided by ``N`` twice), computed for an all-ones cotangent (the incoming gradient
``g``/``dout`` ignored), not summed over the axes an input was broadcast along, or right
everywhere except where an index repeats (``dW[idx] = dout`` instead of a scatter-add).
:func:`diagnose` tests each of these shapes of ``got`` against ``expected`` and says which one
fits, as a hint the reports print next to the failing argument.

"Fits" means: every entry within ``tol · max|expected|`` of the candidate (a loose bound: the
strict verdict is the report's; this one only has to tell the shapes of error apart). All
arrays are NumPy, compared in float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["diagnose", "diagnose_shape"]

_NAMED_FACTORS = {
    2.0: "a factor 2 too many (the 2 of d(x²)/dx where the loss has ½x²?)",
    0.5: "a factor 2 missing (d(x²)/dx = 2x?)",
}


def _fits(got: np.ndarray, candidate: np.ndarray, tol: float) -> bool:
    """True when ``got`` equals ``candidate`` to ``tol`` of the candidate's largest entry."""
    if got.shape != candidate.shape:
        return False
    scale = float(np.max(np.abs(candidate), initial=0.0))
    if scale == 0.0 or not np.all(np.isfinite(candidate)):
        return False
    return bool(np.all(np.abs(got - candidate) <= tol * scale))


def _shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _factor(got: np.ndarray, expected: np.ndarray, tol: float) -> float | None:
    """The constant ``c`` with ``got ≈ c·expected`` (least squares), if one fits."""
    denominator = float(np.vdot(expected, expected))
    if denominator == 0.0:
        return None
    c = float(np.vdot(got, expected)) / denominator
    if c == 0.0 or not _fits(got, c * expected, tol / 10) or abs(c - 1.0) < 10 * tol:
        return None
    return c


def _name_factor(c: float, sizes: Mapping[str, int], tol: float) -> str:
    """Words for ``got = c·expected``: the batch size (or another size) when it is one."""
    for what, n in sizes.items():
        if n > 1 and abs(c - n) <= tol * n:
            return (f"{n}× too large, exactly {what} = {n}: the batch mean's 1/N left out "
                    f"(not divided by the batch size)?")
        if n > 1 and abs(c * n - 1.0) <= tol:
            return (f"{n}× too small, exactly 1/{what} = 1/{n}: divided by the batch size "
                    f"twice?")
    for value, words in _NAMED_FACTORS.items():
        if abs(c - value) <= tol * value:
            return f"off by a constant factor {value:g}: {words}"
    return f"off by a constant factor {c:.6g} (every entry scaled alike)"


def diagnose_shape(got_shape: tuple[int, ...], expected_shape: tuple[int, ...],
                   got: np.ndarray | None = None,
                   expected: np.ndarray | None = None, tol: float = 1e-3) -> str:
    """Words for a gradient of the wrong shape: transposed, or not summed over the axes its
    input was broadcast along (checked on the values when both arrays are given)."""
    got_shape, expected_shape = tuple(got_shape), tuple(expected_shape)
    shapes = f"has shape {_shape_str(got_shape)} where {_shape_str(expected_shape)} is expected"
    if len(got_shape) == 2 and got_shape == expected_shape[::-1]:
        return (f"{shapes}: transposed? (e.g. np.dot(dout.T, x) where np.dot(x.T, dout) is "
                f"meant)")
    lead = len(got_shape) - len(expected_shape)
    if lead >= 0:
        try:
            stretched = tuple(range(lead)) + tuple(
                lead + i for i, n in enumerate(expected_shape)
                if n == 1 and got_shape[lead + i] != 1)
            broadcasts = np.broadcast_shapes(got_shape, expected_shape) == got_shape
        except ValueError:
            broadcasts = False
        if broadcasts and stretched:
            axes = ", ".join(map(str, stretched))
            words = (f"{shapes}: not summed over the axes the input was broadcast along "
                     f"(sum the cotangent over axis {axes}, e.g. np.sum(dout, axis=0))")
            if got is not None and expected is not None:
                summed = np.sum(got, axis=stretched).reshape(expected_shape)
                if not _fits(summed, expected, tol):
                    words += "; even summed it does not match"
            return words
    return shapes


def diagnose(got: np.ndarray, expected: np.ndarray, *,
             sizes: Mapping[str, int] | None = None,
             if_ones: np.ndarray | None = None,
             repeated: np.ndarray | None = None,
             repeated_what: str = "an index repeats",
             tol: float = 1e-3) -> str | None:
    """The recognisable shape of the error of ``got`` against ``expected``, or ``None``.

    Args:
      got: the gradient under test (the hand rule's, the layer's ``backward``).
      expected: the right one (a reference VJP, or central differences).
      sizes: candidate sizes for a constant factor, most telling first, e.g.
        ``{"the batch size N (x.shape[0])": 5}``; a factor of exactly ``N`` or ``1/N`` is
        named (``1/N``: "divided by the batch size twice?").
      if_ones: the right gradient for an all-ones cotangent: ``got`` equal to it means the
        rule ignores the cotangent.
      repeated: boolean mask, shape of ``got``: entries that an index repeated in an integer
        input selects (an embedding table's rows); an error confined to them means repeats
        overwrite instead of accumulating.
      repeated_what: how to describe those entries.
      tol: the fit tolerance, relative to ``max|candidate|``.
    """
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return diagnose_shape(got.shape, expected.shape, got, expected, tol)
    bad = ~np.isfinite(got)
    if np.any(bad) and np.all(np.isfinite(expected)):
        return (f"NaN or inf at {int(bad.sum())} of {got.size} entries where the expected "
                f"gradient is finite (an overflow, a log or square root of a negative "
                f"number, 0/0?)")
    if if_ones is not None and _fits(got, np.asarray(if_ones, np.float64), tol) \
            and not _fits(got, expected, tol):
        return ("ignores the cotangent: equals the gradient for an all-ones incoming "
                "gradient (multiply by g / dout)")
    if got.ndim == 2 and got.shape[0] == got.shape[1] > 1 and _fits(got, expected.T, tol):
        return "transposed: equals the expected gradient's transpose (x.T·g vs g.T·x?)"
    if _fits(got, -expected, tol):
        return "sign flipped: equals minus the expected gradient"
    c = _factor(got, expected, tol)
    if c is not None:
        return _name_factor(c, dict(sizes or {}), tol)
    if not np.any(got) and np.any(expected):
        return "zero everywhere where the expected gradient is not (never written?)"
    if repeated is not None and np.any(repeated):
        scale = float(np.max(np.abs(expected), initial=0.0)) or 1.0
        wrong = np.abs(got - expected) > tol * scale
        if np.any(wrong) and not np.any(wrong & ~repeated):
            return (f"wrong only where {repeated_what}: repeated indices must accumulate "
                    f"(np.add.at(dW, idx, dout) / dW.at[idx].add(g)), not overwrite "
                    f"(dW[idx] = dout)")
    return None
