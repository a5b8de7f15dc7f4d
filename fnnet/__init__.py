"""fnnet: the "Deep Learning from Scratch" network in functional JAX, with every backward rule
written by hand as a ``jax.custom_vjp`` and checked against ``jax.grad``.

* :mod:`fnnet.manual` — the ops with hand-derived backward rules;
* :mod:`fnnet.autodiff` — the same ops in plain ``jax.numpy`` (gradients by ``jax.grad``);
* :func:`two_layer_net`, :func:`multi_layer_net` — the book's networks as pure functions;
* :func:`check_rule`, :func:`check_layer` — checking your own backward rule (a
  ``jax.custom_vjp``) or a book-style NumPy layer class.

The names are imported on first use (PEP 562), so ``import fnnet.cli`` does not import JAX:
the ``fnnet`` command can then turn a Ctrl-C during JAX's import into one line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fnnet import autodiff as autodiff
    from fnnet import manual as manual
    from fnnet.check import check_layer as check_layer
    from fnnet.check import check_rule as check_rule
    from fnnet.layers import Model as Model
    from fnnet.nets import multi_layer_net as multi_layer_net
    from fnnet.nets import two_layer_net as two_layer_net

__version__ = "0.1.0"
_LAZY = {"autodiff": ("fnnet.autodiff", None), "manual": ("fnnet.manual", None),
         "check_layer": ("fnnet.check", "check_layer"), "check_rule": ("fnnet.check", "check_rule"),
         "Model": ("fnnet.layers", "Model"), "multi_layer_net": ("fnnet.nets", "multi_layer_net"),
         "two_layer_net": ("fnnet.nets", "two_layer_net")}
__all__ = ["Model", "autodiff", "check_layer", "check_rule", "manual", "multi_layer_net",
           "two_layer_net"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fnnet' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
