"""Peer: the book's NumPy layer classes ("Deep Learning from Scratch", ch. 5), written fresh.

Each layer is an object with ``forward`` and ``backward`` that caches what its backward needs;
the network keeps them in order, runs ``forward`` through all of them, then ``backward`` in
reverse, and plain SGD updates the parameter arrays in place (``W -= lr * dW``), as the book's
``TwoLayerNet`` / ``MultiLayerNet`` and ``SGD`` do. Everything stays float32.

Two deliberate departures from the printed code (see DESIGN.md, "Traps"): the softmax
subtracts the row max and the loss is taken from the log-softmax (no ``log(y + 1e-7)``), and
``Relu.backward`` does not mutate the incoming gradient. As in the book, every ``Affine``
computes ``dx`` — the first layer's is then unused (JAX and PyTorch skip it).
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np

from peers import PairParams, check_activation


class Affine:
    """``y = x·W + b``; backward ``dx = dout·Wᵀ``, ``dW = xᵀ·dout``, ``db = Σₙ dout``."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W, self.b = W, b
        self.x: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0)
        return dout @ self.W.T


class Sigmoid:
    """``y = 1/(1 + e^(−x))``; backward ``dx = dout·y·(1 − y)``."""

    def __init__(self) -> None:
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1.0 - self.out) * self.out


class Relu:
    """``y = max(x, 0)``; backward ``dx = dout·[x > 0]`` (a copy: ``dout`` is left alone)."""

    def __init__(self) -> None:
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class SoftmaxWithLoss:
    """Softmax + cross-entropy, batch mean, labels as class indices ``(N,)``.

    Forward ``L = −(1/N) Σₙ log softmax(x)ₙ,tₙ`` (row max subtracted); backward
    ``dx = dout·(y − onehot(t))/N``.
    """

    def __init__(self) -> None:
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        self.t = t
        shifted = x - np.max(x, axis=1, keepdims=True)
        logp = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        self.y = np.exp(logp)
        return float(-np.mean(logp[np.arange(len(t)), t]))

    def backward(self, dout: float = 1) -> np.ndarray:
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx * dout / batch_size


class LayerNet:
    """What the book's nets share: ``layers`` then ``last_layer``, the forward pass, the loss,
    and backpropagation through every layer in reverse order (each layer keeps its dW, db)."""

    layers: list
    last_layer: SoftmaxWithLoss

    def predict(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        return self.last_layer.forward(self.predict(x), t)

    def backpropagate(self, x: np.ndarray, t: np.ndarray) -> float:
        """Forward, then every layer's ``backward`` in reverse order; returns the loss."""
        loss = self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return loss


class MultiLayerNet(LayerNet):
    """``(Affine → activation) × (L − 1) → Affine → SoftmaxWithLoss``, the book's net.

    ``params`` holds ``W1, b1, …`` (copies of the given arrays); the Affine layers share them,
    so the in-place SGD update reaches the layers.
    """

    def __init__(self, params: PairParams, activation: str) -> None:
        check_activation(activation)
        hidden = Sigmoid if activation == "sigmoid" else Relu
        self.params: dict[str, np.ndarray] = {}
        self.layers: list = []
        for i, (W, b) in enumerate(params, start=1):
            self.params[f"W{i}"], self.params[f"b{i}"] = W.copy(), b.copy()
            self.layers.append(Affine(self.params[f"W{i}"], self.params[f"b{i}"]))
            if i < len(params):
                self.layers.append(hidden())
        self.last_layer = SoftmaxWithLoss()

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Backpropagation (:meth:`LayerNet.backpropagate`), then each Affine's dW, db."""
        self.backpropagate(x, t)
        grads = {}
        affines = [layer for layer in self.layers if isinstance(layer, Affine)]
        for i, layer in enumerate(affines, start=1):
            grads[f"W{i}"], grads[f"b{i}"] = layer.dW, layer.db
        return grads


class SGD:
    """``θ ← θ − lr·∂L/∂θ``, in place."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for key in params:
            params[key] -= self.lr * grads[key]


def blas_threads(threads: int | None):
    """A context limiting NumPy's BLAS to ``threads`` threads (``threadpoolctl``, which
    scikit-learn brings); no limit when ``threads`` is ``None``."""
    if threads is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def train(params: PairParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray, lr: float,
          activation: str, *, threads: int | None = None) -> tuple[PairParams, float, float]:
    """The book's training loop; see :mod:`peers` for the contract (``compile_s`` is the
    warm-up step on a throwaway network). ``threads`` limits the BLAS threads."""
    with blas_threads(threads):
        return _train(params, x, t, indices, lr, activation)


def _train(params: PairParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray, lr: float,
           activation: str) -> tuple[PairParams, float, float]:
    start = time.perf_counter()
    warm = MultiLayerNet(params, activation)
    SGD(lr).update(warm.params, warm.gradient(x[indices[0]], t[indices[0]]))
    compile_s = time.perf_counter() - start
    network, optimizer = MultiLayerNet(params, activation), SGD(lr)
    with np.errstate(over="ignore"):  # exp(−x) → inf for x ≪ 0 gives the right sigmoid, 0
        start = time.perf_counter()
        for batch in indices:
            grads = network.gradient(x[batch], t[batch])
            optimizer.update(network.params, grads)
        seconds = time.perf_counter() - start
    layers = len(params)
    final = [(network.params[f"W{i}"], network.params[f"b{i}"]) for i in range(1, layers + 1)]
    return final, seconds, compile_s
