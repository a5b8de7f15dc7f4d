"""Layer classes in the style of the sequel (``params`` and ``grads`` lists, gradients
written in place), written for the tests of :func:`fnnet.check_layer`: correct versions."""

import numpy as np


def softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    x = np.exp(x)
    return x / x.sum(axis=1, keepdims=True)


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class MatMul:
    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.x = None

    def forward(self, x):
        W, = self.params
        self.x = x
        return np.dot(x, W)

    def backward(self, dout):
        W, = self.params
        dx = np.dot(dout, W.T)
        dW = np.dot(self.x.T, dout)
        self.grads[0][...] = dW
        return dx


class Affine:
    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        W, b = self.params
        self.x = x
        return np.dot(x, W) + b

    def backward(self, dout):
        W, _ = self.params
        dx = np.dot(dout, W.T)
        self.grads[0][...] = np.dot(self.x.T, dout)
        self.grads[1][...] = np.sum(dout, axis=0)
        return dx


class Softmax:
    def __init__(self):
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x):
        self.out = softmax(x)
        return self.out

    def backward(self, dout):
        dx = self.out * dout
        sumdx = np.sum(dx, axis=1, keepdims=True)
        dx -= self.out * sumdx
        return dx


class SoftmaxWithLoss:
    def __init__(self):
        self.params, self.grads = [], []
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        if self.t.size == self.y.size:
            self.t = self.t.argmax(axis=1)
        return cross_entropy_error(self.y, self.t)

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        dx *= dout
        dx = dx / batch_size
        return dx


class SigmoidWithLoss:
    def __init__(self):
        self.params, self.grads = [], []
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = 1 / (1 + np.exp(-x))
        self.loss = cross_entropy_error(np.c_[1 - self.y, self.y], self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        return (self.y - self.t) * dout / batch_size


class Embedding:
    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.idx = None

    def forward(self, idx):
        W, = self.params
        self.idx = idx
        return W[idx]

    def backward(self, dout):
        dW, = self.grads
        dW[...] = 0
        np.add.at(dW, self.idx, dout)
        return None


class RNN:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        t = np.dot(h_prev, Wh) + np.dot(x, Wx) + b
        h_next = np.tanh(t)
        self.cache = (x, h_prev, h_next)
        return h_next

    def backward(self, dh_next):
        Wx, Wh, _ = self.params
        x, h_prev, h_next = self.cache
        dt = dh_next * (1 - h_next ** 2)
        self.grads[0][...] = np.dot(x.T, dt)
        self.grads[1][...] = np.dot(h_prev.T, dt)
        self.grads[2][...] = np.sum(dt, axis=0)
        return np.dot(dt, Wx.T), np.dot(dt, Wh.T)


class LSTM:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        H = h_prev.shape[1]
        A = np.dot(x, Wx) + np.dot(h_prev, Wh) + b
        f = 1 / (1 + np.exp(-A[:, :H]))
        g = np.tanh(A[:, H:2 * H])
        i = 1 / (1 + np.exp(-A[:, 2 * H:3 * H]))
        o = 1 / (1 + np.exp(-A[:, 3 * H:]))
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        Wx, Wh, _ = self.params
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache
        tanh_c = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c ** 2)
        dc_prev = ds * f
        di = ds * g * i * (1 - i)
        df = ds * c_prev * f * (1 - f)
        do = dh_next * tanh_c * o * (1 - o)
        dg = ds * i * (1 - g ** 2)
        dA = np.hstack((df, dg, di, do))
        self.grads[0][...] = np.dot(x.T, dA)
        self.grads[1][...] = np.dot(h_prev.T, dA)
        self.grads[2][...] = dA.sum(axis=0)
        return np.dot(dA, Wx.T), np.dot(dA, Wh.T), dc_prev


class GRU:
    """Gates in the blocks z, r, h̃ of Wx (D, 3H), Wh (H, 3H), b (3H,)."""

    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        H = h_prev.shape[1]
        sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
        z = sig(np.dot(x, Wx[:, :H]) + np.dot(h_prev, Wh[:, :H]) + b[:H])
        r = sig(np.dot(x, Wx[:, H:2 * H]) + np.dot(h_prev, Wh[:, H:2 * H]) + b[H:2 * H])
        h_hat = np.tanh(np.dot(x, Wx[:, 2 * H:]) + np.dot(r * h_prev, Wh[:, 2 * H:]) + b[2 * H:])
        h_next = (1 - z) * h_prev + z * h_hat
        self.cache = (x, h_prev, z, r, h_hat)
        return h_next

    def backward(self, dh_next):
        Wx, Wh, _ = self.params
        H = dh_next.shape[1]
        x, h_prev, z, r, h_hat = self.cache
        dt = dh_next * z * (1 - h_hat ** 2)
        dhr = np.dot(dt, Wh[:, 2 * H:].T)
        dz = dh_next * (h_hat - h_prev) * z * (1 - z)
        dr = dhr * h_prev * r * (1 - r)
        dA = np.hstack((dz, dr, dt))
        self.grads[0][...] = np.dot(x.T, dA)
        self.grads[1][...] = np.hstack((np.dot(h_prev.T, np.hstack((dz, dr))),
                                        np.dot((r * h_prev).T, dt)))
        self.grads[2][...] = dA.sum(axis=0)
        dh_prev = dh_next * (1 - z) + dhr * r + np.dot(np.hstack((dz, dr)), Wh[:, :2 * H].T)
        return np.dot(dA, Wx.T), dh_prev


class EmbeddingDot:
    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.cache = None

    def forward(self, h, idx):
        W, = self.params
        target_W = W[idx]
        self.cache = (h, target_W, idx)
        return np.sum(target_W * h, axis=1)

    def backward(self, dout):
        h, target_W, idx = self.cache
        dout = dout.reshape(dout.shape[0], 1)
        dW, = self.grads
        dW[...] = 0
        np.add.at(dW, idx, dout * h)
        return dout * target_W
