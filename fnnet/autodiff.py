"""The reference ops: plain ``jax.numpy`` whose gradients come from ``jax.grad``.

Built from the op table :data:`fnnet.ops.table.OPS` (its ``reference`` column): same names,
signatures and forward values as :mod:`fnnet.manual`.
"""

from fnnet.ops.table import OPS as _OPS

globals().update({name: pair.reference for name, pair in _OPS.items()})
OPS = tuple(_OPS)
__all__ = ["OPS", *_OPS]
