"""The reference ops: plain ``jax.numpy`` whose gradients come from ``jax.grad``.

Same names, signatures and forward values as :mod:`fnnet.manual`.
"""

from fnnet.manual import OPS as OPS
from fnnet.ops.activations import relu_reference as relu
from fnnet.ops.activations import sigmoid_reference as sigmoid
from fnnet.ops.activations import tanh_reference as tanh
from fnnet.ops.graph import add_reference as add
from fnnet.ops.graph import branch_reference as branch
from fnnet.ops.graph import mul_reference as mul
from fnnet.ops.graph import repeat_reference as repeat
from fnnet.ops.graph import sum_reference as sum
from fnnet.ops.linear import affine_reference as affine
from fnnet.ops.linear import matmul_reference as matmul
from fnnet.ops.losses import cross_entropy_error_reference as cross_entropy_error
from fnnet.ops.losses import mean_squared_error_reference as mean_squared_error
from fnnet.ops.losses import softmax_cross_entropy_reference as softmax_cross_entropy
from fnnet.ops.losses import softmax_reference as softmax

__all__ = [
    "OPS", "add", "affine", "branch", "cross_entropy_error", "matmul", "mean_squared_error",
    "mul", "relu", "repeat", "sigmoid", "softmax", "softmax_cross_entropy", "sum", "tanh",
]  # fmt: skip
