"""The ops with hand-derived backward rules (each a ``jax.custom_vjp``).

Same names, signatures and forward values as :mod:`fnnet.autodiff`; only where the gradient
comes from differs. The computational-graph nodes (``add``, ``mul``, ``branch``, ``repeat``,
``sum``, and ``matmul``) are in :mod:`fnnet.ops.graph`; ``sum`` here is the Sum node, not the
builtin.
"""

from fnnet.ops.activations import relu as relu
from fnnet.ops.activations import sigmoid as sigmoid
from fnnet.ops.activations import tanh as tanh
from fnnet.ops.graph import add as add
from fnnet.ops.graph import branch as branch
from fnnet.ops.graph import mul as mul
from fnnet.ops.graph import repeat as repeat
from fnnet.ops.graph import sum_ as sum  # noqa: F401 (re-export: the Sum node, not the builtin)
from fnnet.ops.linear import affine as affine
from fnnet.ops.linear import matmul as matmul
from fnnet.ops.losses import cross_entropy_error as cross_entropy_error
from fnnet.ops.losses import mean_squared_error as mean_squared_error
from fnnet.ops.losses import softmax as softmax
from fnnet.ops.losses import softmax_cross_entropy as softmax_cross_entropy

OPS = (
    "sigmoid", "relu", "tanh", "affine", "matmul", "softmax",
    "softmax_cross_entropy", "cross_entropy_error", "mean_squared_error",
    "add", "mul", "branch", "repeat", "sum",
)  # fmt: skip
