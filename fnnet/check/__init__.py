"""Checking a user's own backward rules: :func:`check_rule` for a ``jax.custom_vjp``,
:func:`check_layer` for a book-style NumPy layer class (forward/backward methods).

* :mod:`fnnet.check.rule` — a VJP against autodiff of a reference and central differences;
* :mod:`fnnet.check.layer` — ``backward`` against central differences of ``forward``, and
  the inputs that break textbook code;
* :mod:`fnnet.check.diagnose` — naming the shape of a wrong gradient;
* :mod:`fnnet.check.load` — ``FILE.py:CLASS`` for ``fnnet check-layer``.
"""

from fnnet.check.layer import check_layer
from fnnet.check.layer_report import LayerReport, Problem
from fnnet.check.load import (
    LayerSpecError,
    build_layer,
    check_layer_file,
    check_layer_main,
    load_layer_class,
)
from fnnet.check.rule import check_rule
from fnnet.check.rule_report import RuleCase, RuleReport, StructuralCheck

__all__ = [
    "LayerReport",
    "LayerSpecError",
    "Problem",
    "RuleCase",
    "RuleReport",
    "StructuralCheck",
    "build_layer",
    "check_layer",
    "check_layer_file",
    "check_layer_main",
    "check_rule",
    "load_layer_class",
]
