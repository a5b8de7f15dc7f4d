"""The ops with hand-derived backward rules (each a ``jax.custom_vjp``).

Built from the op table :data:`fnnet.ops.table.OPS` (its ``manual`` column): same names,
signatures and forward values as :mod:`fnnet.autodiff`; only where the gradient comes from
differs. ``sum`` here is the computational graph's Sum node, not the builtin.
"""

from fnnet.ops.table import OPS as _OPS

globals().update({name: pair.manual for name, pair in _OPS.items()})
OPS = tuple(_OPS)
__all__ = ["OPS", *_OPS]
