"""Peer: the book's chapter-7 ``SimpleConvNet`` in NumPy float32, written fresh from its formulas.

The layers of "Deep Learning from Scratch" ch. 7 (``common/util.py``, ``common/layers.py``,
``ch07/simple_convnet.py``) as objects with ``forward`` / ``backward`` that cache what the
backward pass needs:

* ``im2col``: the padded input ``(N, C, H, W)`` → ``col (N·OH·OW, C·FH·FW)``, one strided slice
  per kernel offset ``(fh, fw)``; ``col2im``, its adjoint, adds the slices back (``+=``).
* ``Convolution``: ``out = col·W_colᵀ + b`` reshaped to NCHW; backward ``db = Σ dout``,
  ``dW = colᵀ·dout``, ``dcol = dout·W_col``, ``dx = col2im(dcol)``.
* ``Pooling`` (max): im2col, one row per window, ``max`` and ``argmax``; backward routes each
  window's gradient to its (first) argmax entry, then col2im.
* ``Affine`` (flattens its input, restores the shape in ``dx``), ``Relu``,
  ``SoftmaxWithLoss`` (batch mean, labels as class indices).

Everything is float32 (the book's ``im2col`` allocates float64 with ``np.zeros``; here the
buffers take the input's dtype), the softmax subtracts the row max and the loss comes from
the log-softmax, and ``Relu.backward`` does not mutate ``dout`` (DESIGN.md, "Traps"). The
optimiser is the book's ``Adam`` (``lr_t`` form, ε = 1e-7 on √v), updating in place.

Parameters are fnnet's pytree of ``simple_conv_net`` as NumPy arrays:
``{"conv1": {"W": (FN, C, FH, FW), "b": (FN,)}, "affine1": {"W", "b"}, "affine2": {"W", "b"}}``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from peers import numpy_book
from peers.numpy_book import Relu, SoftmaxWithLoss, blas_threads

ConvParams = dict[str, dict[str, np.ndarray]]
LAYERS = ("conv1", "affine1", "affine2")


def im2col(x: np.ndarray, fh: int, fw: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """``(N, C, H, W)`` → ``(N·OH·OW, C·FH·FW)``: rows ``(n, oh, ow)``, columns ``(c, fh, fw)``."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)]) if pad else x
    col = np.empty((n, c, fh, fw, oh, ow), dtype=x.dtype)
    for y in range(fh):
        y_max = y + stride * oh
        for xx in range(fw):
            x_max = xx + stride * ow
            col[:, :, y, xx, :, :] = img[:, :, y:y_max:stride, xx:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(col: np.ndarray, x_shape: tuple[int, ...], fh: int, fw: int, stride: int = 1,
           pad: int = 0) -> np.ndarray:
    """The adjoint of :func:`im2col`: each entry of ``col`` added back onto its pixel."""
    n, c, h, w = x_shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for y in range(fh):
        y_max = y + stride * oh
        for xx in range(fw):
            x_max = xx + stride * ow
            img[:, :, y:y_max:stride, xx:x_max:stride] += col[:, :, y, xx, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


class Convolution:
    """The book's Convolution layer (im2col + one matmul; col2im in backward)."""

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0) -> None:
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.x_shape: tuple[int, ...] = ()
        self.col = self.col_W = self.dW = self.db = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        fn, _, fh, fw = self.W.shape
        n, _, h, w = x.shape
        oh = (h + 2 * self.pad - fh) // self.stride + 1
        ow = (w + 2 * self.pad - fw) // self.stride + 1
        self.x_shape = x.shape
        self.col = im2col(x, fh, fw, self.stride, self.pad)
        self.col_W = self.W.reshape(fn, -1).T
        out = self.col @ self.col_W + self.b
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        fn, c, fh, fw = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = np.sum(dout, axis=0)
        self.dW = (self.col.T @ dout).transpose(1, 0).reshape(fn, c, fh, fw)
        dcol = dout @ self.col_W.T
        return col2im(dcol, self.x_shape, fh, fw, self.stride, self.pad)


class Pooling:
    """The book's max Pooling layer (argmax routing in backward; ties go to the first)."""

    def __init__(self, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> None:
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad
        self.x_shape: tuple[int, ...] = ()
        self.arg_max = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        oh = (h + 2 * self.pad - self.pool_h) // self.stride + 1
        ow = (w + 2 * self.pad - self.pool_w) // self.stride + 1
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)
        self.x_shape, self.arg_max = x.shape, np.argmax(col, axis=1)
        out = np.max(col, axis=1)
        return out.reshape(n, oh, ow, c).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout = dout.transpose(0, 2, 3, 1)
        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size), dtype=dout.dtype)
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dcol = dmax.reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1)
        return col2im(dcol, self.x_shape, self.pool_h, self.pool_w, self.stride, self.pad)


class Affine(numpy_book.Affine):
    """The book's Affine over the flattened input; ``dx`` is reshaped back to the input's
    shape (the two-layer peer's Affine takes flat rows already)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        return super().forward(x.reshape(x.shape[0], -1))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return super().backward(dout).reshape(self.x_shape)


class SimpleConvNet(numpy_book.LayerNet):
    """``Conv → ReLU → Pool 2×2 → Affine → ReLU → Affine → SoftmaxWithLoss`` (the book's
    ``SimpleConvNet``, conv stride 1 pad 0), on copies of ``params`` (float32)."""

    def __init__(self, params: ConvParams) -> None:
        self.params = {layer: {k: np.array(v, dtype=np.float32) for k, v in params[layer].items()}
                       for layer in LAYERS}
        p = self.params
        self.layers = [Convolution(p["conv1"]["W"], p["conv1"]["b"]), Relu(),
                       Pooling(2, 2, stride=2), Affine(p["affine1"]["W"], p["affine1"]["b"]),
                       Relu(), Affine(p["affine2"]["W"], p["affine2"]["b"])]
        self.last_layer = SoftmaxWithLoss()

    def gradient(self, x: np.ndarray, t: np.ndarray) -> tuple[float, ConvParams]:
        """``(loss, grads)`` by backpropagation; ``grads`` shaped like ``params``."""
        loss = self.backpropagate(x, t)
        conv, affine1, affine2 = self.layers[0], self.layers[3], self.layers[5]
        return loss, {name: {"W": layer.dW, "b": layer.db}
                      for name, layer in zip(LAYERS, (conv, affine1, affine2), strict=True)}


class Adam:
    """The book's Adam: ``lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)``; ``m += (1−β₁)(g−m)``;
    ``v += (1−β₂)(g²−v)``; ``θ −= lr_t·m/(√v + 1e-7)``, in place."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr, self.beta1, self.beta2, self.iter = lr, beta1, beta2, 0
        self.m: dict[tuple[str, str], np.ndarray] = {}
        self.v: dict[tuple[str, str], np.ndarray] = {}

    def update(self, params: ConvParams, grads: ConvParams) -> None:
        self.iter += 1
        lr_t = np.float32(self.lr * np.sqrt(1.0 - self.beta2 ** self.iter)
                          / (1.0 - self.beta1 ** self.iter))
        b1, b2 = np.float32(1 - self.beta1), np.float32(1 - self.beta2)
        for layer, leaves in params.items():
            for name, value in leaves.items():
                g = grads[layer][name]
                m = self.m.setdefault((layer, name), np.zeros_like(value))
                v = self.v.setdefault((layer, name), np.zeros_like(value))
                m += b1 * (g - m)
                v += b2 * (g * g - v)
                value -= lr_t * m / (np.sqrt(v) + np.float32(1e-7))


def train(params: ConvParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray, lr: float, *,
          threads: int | None = None) -> tuple[ConvParams, float, float]:
    """Train with the book's Adam on ``x[indices[i]]`` for each step ``i``; returns the final
    params, the seconds of the timed loop, and the seconds of one warm-up step on a throwaway
    network (``compile_s``, for the table). ``threads`` limits the BLAS threads."""
    with blas_threads(threads):
        start = time.perf_counter()
        warm = SimpleConvNet(params)
        Adam(lr).update(warm.params, warm.gradient(x[indices[0]], t[indices[0]])[1])
        warm_s = time.perf_counter() - start
        network, optimizer = SimpleConvNet(params), Adam(lr)
        start = time.perf_counter()
        for batch in indices:
            _, grads = network.gradient(x[batch], t[batch])
            optimizer.update(network.params, grads)
        seconds = time.perf_counter() - start
    return network.params, seconds, warm_s


def as_numpy(params: Any) -> ConvParams:
    """fnnet's params (JAX arrays) as the NumPy dict this peer takes."""
    return {layer: {k: np.asarray(v, dtype=np.float32) for k, v in params[layer].items()}
            for layer in LAYERS}
