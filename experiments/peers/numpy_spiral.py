"""The sequel's §1.4 training loop in plain NumPy, as the book describes it: a peer for
``experiments/spiral.py``.

Everything random comes from one legacy Mersenne-Twister stream, in the book's order: the
spiral's 300 angle-noise draws (``np.random.seed(1984)`` inside its data loader), then the
init ``W1 = 0.01·randn(2, H)``, ``W2 = 0.01·randn(H, 3)`` (biases 0), then one permutation of
the (already shuffled) training set per epoch, cut into ``300 // 30 = 10`` batches. Each step
is the forward pass Affine → Sigmoid → Affine → Softmax-with-Loss (the book's ``+1e-7``
inside the log), its backward pass and ``W ← W − lr·dW``. The loss the book prints is the
mean of the last 10 iterations' losses: with 10 iterations an epoch, the epoch's mean, each
taken before its update.

:func:`book_run` is the book's run itself; :func:`train` the same loop on any points with any
stream (the spread over seeds).
"""

from __future__ import annotations

import numpy as np


def book_points(stream: np.random.RandomState, points_per_class: int = 100, classes: int = 3,
                noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """The spiral drawn point by point from ``stream``: arm ``j``, point ``i``, ``r = i/P``,
    ``θ = 4j + 4r + noise·randn()``, at ``(r·sin θ, r·cos θ)``; float64 points, int labels."""
    x = np.zeros((points_per_class * classes, 2))
    t = np.zeros(points_per_class * classes, dtype=np.int64)
    for j in range(classes):
        for i in range(points_per_class):
            rate = i / points_per_class
            theta = 4.0 * j + 4.0 * rate + noise * stream.randn()
            x[points_per_class * j + i] = rate * np.sin(theta), rate * np.cos(theta)
            t[points_per_class * j + i] = j
    return x, t


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train(x: np.ndarray, t: np.ndarray, stream: np.random.RandomState, *, epochs: int = 300,
          batch_size: int = 30, hidden: int = 10, lr: float = 1.0) -> dict:
    """The §1.4 loop on ``(x, t)``, init and batch order from ``stream``.

    Returns ``{"loss": per-epoch mean loss, "final_loss", "final_acc"}`` (accuracy over all
    of ``(x, t)`` after training, as the book's decision-region figure shows it).
    """
    classes = int(t.max()) + 1
    W1, b1 = 0.01 * stream.randn(x.shape[1], hidden), np.zeros(hidden)
    W2, b2 = 0.01 * stream.randn(hidden, classes), np.zeros(classes)
    rows = np.arange(batch_size)
    epoch_losses = []
    for _ in range(epochs):
        order = stream.permutation(len(x))
        x, t = x[order], t[order]
        losses = []
        for it in range(len(x) // batch_size):
            xb, tb = (a[it * batch_size:(it + 1) * batch_size] for a in (x, t))
            h = _sigmoid(xb @ W1 + b1)
            y = _softmax(h @ W2 + b2)
            losses.append(-np.mean(np.log(y[rows, tb] + 1e-7)))
            ds = y.copy()
            ds[rows, tb] -= 1.0
            ds /= batch_size
            da = (ds @ W2.T) * h * (1.0 - h)
            W2, b2 = W2 - lr * (h.T @ ds), b2 - lr * ds.sum(axis=0)
            W1, b1 = W1 - lr * (xb.T @ da), b1 - lr * da.sum(axis=0)
        epoch_losses.append(float(np.mean(losses)))
    predicted = np.argmax(_sigmoid(x @ W1 + b1) @ W2 + b2, axis=1)
    return {"loss": epoch_losses, "final_loss": epoch_losses[-1],
            "final_acc": float(np.mean(predicted == t))}


def book_run(seed: int = 1984, **options) -> dict:
    """The book's whole run from ``np.random.seed(seed)``: its points, init and batches."""
    stream = np.random.RandomState(seed)
    x, t = book_points(stream)
    return train(x, t, stream, **options)
