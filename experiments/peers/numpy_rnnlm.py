"""Peer: the sequel's chapter-6 ``Rnnlm`` in NumPy, layer objects as the book writes them
(TimeEmbedding, TimeLSTM, TimeAffine, TimeSoftmaxWithLoss), with its ``clip_grads`` and SGD.

Each layer caches what its backward needs; ``TimeLSTM`` loops over the time steps in Python,
one LSTM cell object per step, forward and then backward in reverse, each step computing its
own ``dWx``/``dWh`` (the book's structure: the weight gradients summed step by step). The
softmax subtracts the row max and the loss uses the log-softmax (DESIGN.md's traps), and
clipping makes new arrays rather than scaling in place; otherwise the arithmetic is the
book's, in float32. ``stateful``: the last ``h``, ``c`` carry from one batch to the next.

Parameters come as fnnet's pytree (``embedding/W``, ``lstm/Wx, Wh, b``, ``affine/W, b``:
the book's layout, gate blocks f, g, i, o), so a run starts where fnnet's does.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


class TimeEmbedding:
    """``W[xs]``; backward: ``dW`` scatter-added (``np.add.at``: repeats accumulate)."""

    def __init__(self, W: np.ndarray) -> None:
        self.W = W
        self.grad = np.zeros_like(W)
        self.idx: np.ndarray | None = None

    def forward(self, xs: np.ndarray) -> np.ndarray:
        self.idx = xs
        return self.W[xs]

    def backward(self, dout: np.ndarray) -> None:
        self.grad[...] = 0
        np.add.at(self.grad, self.idx, dout)


class LSTMCell:
    """One step: ``A = x·Wx + h·Wh + b`` split f, g, i, o; ``c = f·c₋ + g·i``, ``h = o·tanh c``."""

    def __init__(self, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> None:
        self.Wx, self.Wh, self.b = Wx, Wh, b
        self.cache: tuple | None = None

    def forward(self, x, h_prev, c_prev):
        H = h_prev.shape[1]
        A = x @ self.Wx + h_prev @ self.Wh + self.b
        f, g = _sigmoid(A[:, :H]), np.tanh(A[:, H:2 * H])
        i, o = _sigmoid(A[:, 2 * H:3 * H]), _sigmoid(A[:, 3 * H:])
        c = f * c_prev + g * i
        tanh_c = np.tanh(c)
        h = o * tanh_c
        self.cache = (x, h_prev, c_prev, f, g, i, o, tanh_c)
        return h, c

    def backward(self, dh, dc):
        x, h_prev, c_prev, f, g, i, o, tanh_c = self.cache
        ds = dc + dh * o * (1 - tanh_c ** 2)
        dA = np.hstack([ds * c_prev * f * (1 - f), ds * i * (1 - g ** 2),
                        ds * g * i * (1 - i), dh * tanh_c * o * (1 - o)])
        return (dA @ self.Wx.T, dA @ self.Wh.T, ds * f,
                x.T @ dA, h_prev.T @ dA, dA.sum(axis=0))


class TimeLSTM:
    """T cells over ``xs (N, T, D)``; stateful: the last ``h``, ``c`` start the next call."""

    def __init__(self, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> None:
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.h: np.ndarray | None = None
        self.c: np.ndarray | None = None
        self.cells: list[LSTMCell] = []

    def forward(self, xs: np.ndarray) -> np.ndarray:
        N, T, _ = xs.shape
        H = self.params[1].shape[0]
        if self.h is None:
            self.h = np.zeros((N, H), np.float32)
            self.c = np.zeros((N, H), np.float32)
        hs = np.empty((N, T, H), np.float32)
        self.cells = []
        for t in range(T):
            cell = LSTMCell(*self.params)
            self.h, self.c = cell.forward(xs[:, t], self.h, self.c)
            hs[:, t] = self.h
            self.cells.append(cell)
        return hs

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        N, T, _ = dhs.shape
        D = self.params[0].shape[0]
        dxs = np.empty((N, T, D), np.float32)
        dh = np.zeros_like(dhs[:, 0])
        dc = np.zeros_like(dh)
        sums = [np.zeros_like(p) for p in self.params]
        for t in reversed(range(T)):
            dx, dh, dc, *step_grads = self.cells[t].backward(dhs[:, t] + dh, dc)
            dxs[:, t] = dx
            for total, grad in zip(sums, step_grads, strict=True):
                total += grad
        self.grads = sums
        return dxs


class TimeAffine:
    """``xs·W + b`` over the ``N·T`` rows."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x: np.ndarray | None = None

    def forward(self, xs: np.ndarray) -> np.ndarray:
        N, T, D = xs.shape
        self.x = xs.reshape(N * T, D)
        return (self.x @ self.params[0] + self.params[1]).reshape(N, T, -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        N, T, M = dout.shape
        dout = dout.reshape(N * T, M)
        self.grads = [self.x.T @ dout, dout.sum(axis=0)]
        return (dout @ self.params[0].T).reshape(N, T, -1)


class TimeSoftmaxWithLoss:
    """Mean cross-entropy over every position; backward ``(softmax − onehot)/(N·T)``."""

    def __init__(self) -> None:
        self.cache: tuple | None = None

    def forward(self, xs: np.ndarray, ts: np.ndarray) -> float:
        N, T, V = xs.shape
        x = xs.reshape(N * T, V)
        shifted = x - x.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        logp = shifted - log_z
        t = ts.reshape(N * T)
        self.cache = (logp, t, (N, T, V))
        return float(-logp[np.arange(N * T), t].mean())

    def backward(self) -> np.ndarray:
        logp, t, shape = self.cache
        dx = np.exp(logp)
        dx[np.arange(len(t)), t] -= 1
        return (dx / len(t)).reshape(shape)


class Rnnlm:
    """TimeEmbedding → TimeLSTM (stateful) → TimeAffine → TimeSoftmaxWithLoss."""

    def __init__(self, params: dict) -> None:
        copy = {k: {n: np.array(a, np.float32) for n, a in v.items()} for k, v in params.items()}
        self.embedding = TimeEmbedding(copy["embedding"]["W"])
        self.lstm = TimeLSTM(copy["lstm"]["Wx"], copy["lstm"]["Wh"], copy["lstm"]["b"])
        self.affine = TimeAffine(copy["affine"]["W"], copy["affine"]["b"])
        self.loss_layer = TimeSoftmaxWithLoss()

    def params_and_grads(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return ([self.embedding.W, *self.lstm.params, *self.affine.params],
                [self.embedding.grad, *self.lstm.grads, *self.affine.grads])

    def forward(self, xs: np.ndarray, ts: np.ndarray) -> float:
        hs = self.lstm.forward(self.embedding.forward(xs))
        return self.loss_layer.forward(self.affine.forward(hs), ts)

    def backward(self) -> None:
        self.embedding.backward(self.lstm.backward(self.affine.backward(
            self.loss_layer.backward())))

    def pytree(self) -> dict:
        Wx, Wh, b = self.lstm.params
        return {"embedding": {"W": self.embedding.W}, "lstm": {"Wx": Wx, "Wh": Wh, "b": b},
                "affine": {"W": self.affine.params[0], "b": self.affine.params[1]}}


def clip_grads(grads: list[np.ndarray], max_norm: float) -> list[np.ndarray]:
    """The book's ``clip_grads``: scale by ``max_norm/(‖g‖ + 1e-6)`` when that is < 1."""
    rate = max_norm / (np.sqrt(sum(float(np.sum(g * g)) for g in grads)) + 1e-6)
    return [g * rate for g in grads] if rate < 1 else grads


def train_step(model: Rnnlm, xs: np.ndarray, ts: np.ndarray, lr: float,
               max_grad: float | None) -> float:
    """One step of the book's ``RnnlmTrainer``: forward, backward, clip, SGD; the loss."""
    loss = model.forward(xs, ts)
    model.backward()
    params, grads = model.params_and_grads()
    if max_grad is not None:
        grads = clip_grads(grads, max_grad)
    for p, g in zip(params, grads, strict=True):
        p -= lr * g
    return loss
