"""Buggy layer classes, retyped as small fixtures from the kind of code readers of the book
post (each with one documented mistake), for the tests of :func:`fnnet.check_layer`. Each
class name starts with the book's class it imitates, so the check compares it with fnnet's
op of that name."""

import numpy as np

from tests.book_layers import cross_entropy_error, softmax


class SigmoidLogTypo:
    """The published typo: ``log`` where ``exp`` belongs."""

    def forward(self, x):
        self.out = 1 / (1 + np.log(-x))
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class SigmoidIgnoresDout:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return (1.0 - self.out) * self.out


class SoftmaxNoMax:
    """Per row, but without subtracting the row max: overflows at large logits."""

    def __init__(self):
        self.params, self.grads = [], []

    def forward(self, x):
        e = np.exp(x)
        self.out = e / np.sum(e, axis=1, keepdims=True)
        return self.out

    def backward(self, dout):
        dx = self.out * dout
        return dx - self.out * np.sum(dx, axis=1, keepdims=True)


class SoftmaxWholeBatch:
    """Normalised over the whole batch instead of per row."""

    def __init__(self):
        self.params, self.grads = [], []

    def forward(self, x):
        x = x - np.max(x)
        self.out = np.exp(x) / np.sum(np.exp(x))
        return self.out

    def backward(self, dout):
        dx = self.out * dout
        return dx - self.out * np.sum(dx, axis=1, keepdims=True)


class SoftmaxWithLossFixed10:
    """Integer labels to one-hot with a class count fixed at 10."""

    def forward(self, x, t):
        self.t = np.eye(10)[t]
        self.y = softmax(x)
        return -np.sum(self.t * np.log(self.y + 1e-7)) / x.shape[0]

    def backward(self, dout=1):
        return dout * (self.y - self.t) / self.t.shape[0]


class SoftmaxWithLossIgnoresDout:
    """The first book's backward: assumes ``dout = 1``."""

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        return cross_entropy_error(self.y, self.t)

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx / batch_size


class SoftmaxWithLossTwiceDivided:
    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        return cross_entropy_error(self.y, self.t)

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        dx = dx / batch_size
        return dout * dx / batch_size


class SoftmaxWithLossBatchFixed:
    """Divides by the batch size seen at the first call."""

    def __init__(self):
        self.batch_size = None

    def forward(self, x, t):
        if self.batch_size is None:
            self.batch_size = x.shape[0]
        self.t = t
        self.y = softmax(x)
        return -np.sum(np.log(self.y[np.arange(len(t)), t] + 1e-7)) / x.shape[0]

    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dout * dx / self.batch_size


class AffineTransposedDW:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        self.dW = np.dot(dout.T, self.x)
        self.db = np.sum(dout, axis=0)
        return np.dot(dout, self.W.T)


class AffineUnsummedDb:
    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]

    def forward(self, x):
        W, b = self.params
        self.x = x
        return np.dot(x, W) + b

    def backward(self, dout):
        W, _ = self.params
        self.grads[0][...] = np.dot(self.x.T, dout)
        self.grads[1] = dout
        return np.dot(dout, W.T)


class EmbeddingOverwrites:
    """``dW[idx] = dout``: a repeated word keeps only one of its gradients."""

    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]

    def forward(self, idx):
        W, = self.params
        self.idx = idx
        return W[idx]

    def backward(self, dout):
        dW, = self.grads
        dW[...] = 0
        dW[self.idx] = dout
        return None
