"""Peer: the sequel's NumPy seq2seq ("Deep Learning from Scratch 2", ch. 7), written fresh.

The book's layer objects, each with ``params``/``grads`` lists, ``forward`` caching what its
``backward`` needs, and the time layers looping over the steps in Python as the book's do:
``Embedding`` / ``TimeEmbedding``, ``LSTM`` / ``TimeLSTM`` (gate blocks f, g, i, o, from its
``h``; ``stateful`` keeps it), ``TimeAffine``, ``TimeSoftmaxWithLoss``; then ``Encoder``,
``Decoder`` / ``PeekyDecoder`` and ``Seq2seq`` / ``PeekySeq2seq``; the sequel's ``Adam`` and
``clip_grads``, updating the arrays in place. Everything float32, as the book.

Departures from the printed code (DESIGN.md, "Traps"): the softmax subtracts the row max and
the loss comes from the log-softmax; ``clip_grads`` and the layers never mutate an incoming
gradient. Parameters come in and go out in fnnet's layout (:mod:`fnnet.nets.seq2seq`), so the
same initial values train here and in fnnet.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


class Embedding:
    """``out = W[idx]``; backward scatter-adds ``dout`` into ``dW`` (repeats accumulate)."""

    def __init__(self, W: np.ndarray) -> None:
        self.params, self.grads = [W], [np.zeros_like(W)]
        self.idx: np.ndarray | None = None

    def forward(self, idx: np.ndarray) -> np.ndarray:
        self.idx = idx
        return self.params[0][idx]

    def backward(self, dout: np.ndarray) -> None:
        dW = self.grads[0]
        dW[...] = 0
        np.add.at(dW, self.idx, dout)


class TimeEmbedding:
    """One :class:`Embedding` per step over ``xs (N, T)`` → ``(N, T, D)``, the book's loop."""

    def __init__(self, W: np.ndarray) -> None:
        self.params, self.grads = [W], [np.zeros_like(W)]
        self.layers: list[Embedding] = []

    def forward(self, xs: np.ndarray) -> np.ndarray:
        N, T = xs.shape
        W = self.params[0]
        out = np.empty((N, T, W.shape[1]), dtype="f")
        self.layers = []
        for t in range(T):
            layer = Embedding(W)
            out[:, t, :] = layer.forward(xs[:, t])
            self.layers.append(layer)
        return out

    def backward(self, dout: np.ndarray) -> None:
        grad = 0
        for t, layer in enumerate(self.layers):
            layer.backward(dout[:, t, :])
            grad += layer.grads[0]
        self.grads[0][...] = grad


class LSTM:
    """One step: ``A = x·Wx + h_prev·Wh + b`` split into f, g, i, o; ``c = f·c_prev + g·i``,
    ``h = o·tanh c``. Backward from ``(dh, dc)`` to ``(dx, dh_prev, dc_prev)``."""

    def __init__(self, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> None:
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache: tuple | None = None

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        H = h_prev.shape[1]
        A = x @ Wx + h_prev @ Wh + b
        f, g = _sigmoid(A[:, :H]), np.tanh(A[:, H:2 * H])
        i, o = _sigmoid(A[:, 2 * H:3 * H]), _sigmoid(A[:, 3 * H:])
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
        dA = np.hstack((ds * c_prev * f * (1 - f), ds * i * (1 - g ** 2),
                        ds * g * i * (1 - i), dh_next * tanh_c * o * (1 - o)))
        self.grads[0][...] = x.T @ dA
        self.grads[1][...] = h_prev.T @ dA
        self.grads[2][...] = dA.sum(axis=0)
        return dA @ Wx.T, dA @ Wh.T, dc_prev


class TimeLSTM:
    """:class:`LSTM` over ``xs (N, T, D)``, the book's loop; ``h``/``c`` start from zeros
    unless ``stateful`` and set; backward leaves the gradient into ``h0`` in ``dh``."""

    def __init__(self, Wx, Wh, b, stateful: bool = False) -> None:
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers: list[LSTM] = []
        self.h = self.c = self.dh = None
        self.stateful = stateful

    def set_state(self, h, c=None) -> None:
        self.h, self.c = h, c

    def forward(self, xs: np.ndarray) -> np.ndarray:
        N, T, _ = xs.shape
        H = self.params[1].shape[0]
        hs = np.empty((N, T, H), dtype="f")
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype="f")
        if not self.stateful or self.c is None:
            self.c = np.zeros((N, H), dtype="f")
        self.layers = []
        for t in range(T):
            layer = LSTM(*self.params)
            self.h, self.c = layer.forward(xs[:, t, :], self.h, self.c)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        Wx = self.params[0]
        N, T, _ = dhs.shape
        dxs = np.empty((N, T, Wx.shape[0]), dtype="f")
        dh, dc = 0, 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh, dc = layer.backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            for k, grad in enumerate(layer.grads):
                grads[k] += grad
        for k, grad in enumerate(grads):
            self.grads[k][...] = grad
        self.dh = dh
        return dxs


class TimeAffine:
    """``xs (N, T, D)`` folded into ``N·T`` rows: ``ys = X·W + b``."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.params, self.grads = [W, b], [np.zeros_like(W), np.zeros_like(b)]
        self.x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        N, T, _ = x.shape
        self.x = x
        return (x.reshape(N * T, -1) @ self.params[0] + self.params[1]).reshape(N, T, -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        N, T, _ = self.x.shape
        dout = dout.reshape(N * T, -1)
        rx = self.x.reshape(N * T, -1)
        self.grads[0][...] = rx.T @ dout
        self.grads[1][...] = dout.sum(axis=0)
        return (dout @ self.params[0].T).reshape(*self.x.shape)


class TimeSoftmaxWithLoss:
    """Softmax cross-entropy at every position, mean over them (labels ``(N, T)``)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache: tuple | None = None

    def forward(self, xs: np.ndarray, ts: np.ndarray) -> float:
        N, T, V = xs.shape
        x = xs.reshape(N * T, V)
        x = x - x.max(axis=1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        t = ts.reshape(N * T)
        self.cache = (np.exp(logp), t, (N, T, V))
        return float(-logp[np.arange(N * T), t].mean())

    def backward(self, dout: float = 1.0) -> np.ndarray:
        y, t, (N, T, V) = self.cache
        dx = y.copy()
        dx[np.arange(N * T), t] -= 1
        return (dx * (dout / (N * T))).astype("f").reshape(N, T, V)


class Encoder:
    """Embedding → TimeLSTM (from zeros); returns the last ``h``."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.embed = TimeEmbedding(p["embed"]["W"])
        self.lstm = TimeLSTM(p["lstm"]["Wx"], p["lstm"]["Wh"], p["lstm"]["b"])
        self.layers = [self.embed, self.lstm]
        self.hs: np.ndarray | None = None

    def forward(self, xs: np.ndarray) -> np.ndarray:
        self.hs = self.lstm.forward(self.embed.forward(xs))
        return self.hs[:, -1, :]

    def backward(self, dh: np.ndarray) -> None:
        dhs = np.zeros_like(self.hs)
        dhs[:, -1, :] = dh
        self.embed.backward(self.lstm.backward(dhs))


class Decoder:
    """Embedding → TimeLSTM (stateful, ``h`` from the encoder) → TimeAffine."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.embed = TimeEmbedding(p["embed"]["W"])
        self.lstm = TimeLSTM(p["lstm"]["Wx"], p["lstm"]["Wh"], p["lstm"]["b"], stateful=True)
        self.affine = TimeAffine(p["affine"]["W"], p["affine"]["b"])
        self.layers = [self.embed, self.lstm, self.affine]

    def forward(self, xs: np.ndarray, h: np.ndarray) -> np.ndarray:
        self.lstm.set_state(h)
        return self.affine.forward(self.lstm.forward(self.embed.forward(xs)))

    def backward(self, dscore: np.ndarray) -> np.ndarray:
        self.embed.backward(self.lstm.backward(self.affine.backward(dscore)))
        return self.lstm.dh


class PeekyDecoder(Decoder):
    """The encoder's ``h`` repeated over the steps and put in front of the LSTM's input and
    the affine's input; its gradient is the sum over the steps of both, plus the LSTM's."""

    def forward(self, xs: np.ndarray, h: np.ndarray) -> np.ndarray:
        N, T = xs.shape
        self.lstm.set_state(h)
        hs = np.repeat(h, T, axis=0).reshape(N, T, h.shape[1])
        out = self.lstm.forward(np.concatenate((hs, self.embed.forward(xs)), axis=2))
        return self.affine.forward(np.concatenate((hs, out), axis=2))

    def backward(self, dscore: np.ndarray) -> np.ndarray:
        H = self.lstm.params[1].shape[0]
        dout = self.affine.backward(dscore)
        dhs0, dout = dout[:, :, :H], dout[:, :, H:]
        dout = self.lstm.backward(dout)
        dhs1, dembed = dout[:, :, :H], dout[:, :, H:]
        self.embed.backward(dembed)
        return self.lstm.dh + np.sum(dhs0 + dhs1, axis=1)


class Seq2seq:
    """Encoder → (Peeky)Decoder → TimeSoftmaxWithLoss; ``ts`` holds the start symbol first
    (the decoder reads ``ts[:, :-1]`` and is scored on ``ts[:, 1:]``, as the book's)."""

    def __init__(self, params: dict[str, Any], peeky: bool = False) -> None:
        self.encoder = Encoder(params["encoder"])
        self.decoder = (PeekyDecoder if peeky else Decoder)(params["decoder"])
        self.softmax = TimeSoftmaxWithLoss()
        layers = [*self.encoder.layers, *self.decoder.layers]
        self.params = [p for layer in layers for p in layer.params]
        self.grads = [g for layer in layers for g in layer.grads]

    def forward(self, xs: np.ndarray, ts: np.ndarray) -> float:
        h = self.encoder.forward(xs)
        return self.softmax.forward(self.decoder.forward(ts[:, :-1], h), ts[:, 1:])

    def backward(self, dout: float = 1.0) -> None:
        self.encoder.backward(self.decoder.backward(self.softmax.backward(dout)))


def clip_grads(grads: list[np.ndarray], max_norm: float) -> None:
    """The sequel's ``clip_grads``: scale every gradient by ``max_norm/(‖g‖ + 1e-6)`` when
    that is below 1 (in place, as the book's: these are the model's own buffers)."""
    total = np.sqrt(sum(float(np.sum(g ** 2)) for g in grads))
    rate = max_norm / (total + 1e-6)
    if rate < 1:
        for g in grads:
            g *= rate


class Adam:
    """The sequel's Adam: ``lr_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)``, ``m += (1 − β₁)(g − m)``,
    ``v += (1 − β₂)(g² − v)``, ``θ −= lr_t·m/(√v + 1e-7)``, in place."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m: list[np.ndarray] | None = None
        self.v: list[np.ndarray] | None = None

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.iter += 1
        lr_t = self.lr * np.sqrt(1 - self.beta2 ** self.iter) / (1 - self.beta1 ** self.iter)
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m += (1 - self.beta1) * (g - m)
            v += (1 - self.beta2) * (g ** 2 - v)
            p -= lr_t * m / (np.sqrt(v) + 1e-7)


def as_numpy(params: Any) -> Any:
    """fnnet's parameter pytree as fresh float32 NumPy arrays (same nesting)."""
    if isinstance(params, dict):
        return {k: as_numpy(v) for k, v in params.items()}
    return np.array(params, dtype=np.float32)


def with_start(t: np.ndarray, start_id: int) -> np.ndarray:
    """fnnet's labels ``(N, T)`` with the start symbol put back in front (the book's ``ts``)."""
    return np.concatenate([np.full((len(t), 1), start_id, t.dtype), t], axis=1)


def train(params: Any, x: np.ndarray, t: np.ndarray, indices: np.ndarray, *, start_id: int,
          peeky: bool = True, lr: float = 0.001,
          max_grad: float = 5.0) -> tuple[Any, float, np.ndarray]:
    """Steps over ``indices (steps, batch)``: forward, backward, clip, Adam — the book's
    ``Trainer.fit`` loop. Returns ``(params, seconds, losses)`` (``params`` copied first)."""
    params = as_numpy(params)
    model, optimizer = Seq2seq(params, peeky=peeky), Adam(lr)
    ts = with_start(t, start_id)
    losses = np.empty(len(indices))
    begin = time.perf_counter()
    for step, batch in enumerate(indices):
        losses[step] = model.forward(x[batch], ts[batch])
        model.backward()
        clip_grads(model.grads, max_grad)
        optimizer.update(model.params, model.grads)
    return params, time.perf_counter() - begin, losses


def gradient(params: Any, x: np.ndarray, t: np.ndarray, *, start_id: int,
             peeky: bool = True) -> tuple[float, Any]:
    """The loss and the gradients, in fnnet's layout (for checking against fnnet)."""
    params = as_numpy(params)
    model = Seq2seq(params, peeky=peeky)
    loss = model.forward(x, with_start(t, start_id))
    model.backward()
    enc, dec = model.encoder, model.decoder
    return loss, {
        "encoder": {"embed": {"W": enc.embed.grads[0]},
                    "lstm": dict(zip(("Wx", "Wh", "b"), enc.lstm.grads, strict=True))},
        "decoder": {"embed": {"W": dec.embed.grads[0]},
                    "lstm": dict(zip(("Wx", "Wh", "b"), dec.lstm.grads, strict=True)),
                    "affine": dict(zip(("W", "b"), dec.affine.grads, strict=True))}}
