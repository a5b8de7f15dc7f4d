"""Hand-derived backward rules, one family per module.

Each op exists twice: ``<op>`` is the manual version (a ``jax.custom_vjp`` whose backward
pass is the rule from the formula sheet) and ``<op>_reference`` is plain ``jax.numpy`` that
``jax.grad`` differentiates. The public namespaces :mod:`fnnet.manual` and
:mod:`fnnet.autodiff` expose them under the same names.
"""
