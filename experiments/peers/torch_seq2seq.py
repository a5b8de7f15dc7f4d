"""Peer: the peeky seq2seq in PyTorch on the CPU — ``nn.Embedding``, ``nn.LSTM``
(``batch_first``), ``nn.Linear``, ``nn.functional.cross_entropy`` (mean over positions),
``torch.nn.utils.clip_grad_norm_`` (the book's clip: ``max_norm/(‖g‖ + 1e-6)`` when below 1)
and ``torch.optim.Adam``, in eager mode.

Needs ``torch`` (optional). The parameters come from fnnet's layout: PyTorch's LSTM gate
blocks are ``i, f, g, o`` where fnnet's (the book's) are ``f, g, i, o``, its weights are
transposed, and it has two biases (``b_ih = b``, ``b_hh = 0``). Its Adam puts ε = 1e-8 on
the bias-corrected √v̂ where the book's puts 1e-7 on √v: the same steps to ~1e-4 relative.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn


def _gates(W: np.ndarray) -> np.ndarray:
    """fnnet's ``(…, 4H)`` blocks f, g, i, o reordered to PyTorch's i, f, g, o."""
    f, g, i, o = np.split(np.asarray(W, np.float32), 4, axis=-1)
    return np.concatenate([i, f, g, o], axis=-1)


def _lstm(p: dict[str, Any]) -> nn.LSTM:
    D, H = p["Wx"].shape[0], p["Wh"].shape[0]
    lstm = nn.LSTM(D, H, batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(_gates(p["Wx"]).T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(_gates(p["Wh"]).T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(_gates(p["b"])))
        lstm.bias_hh_l0.zero_()
    return lstm


class PeekySeq2seq(nn.Module):
    """Encoder LSTM → its last ``h`` starts the decoder LSTM and is concatenated in front of
    the decoder's input and of the affine's input at every step."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        enc, dec = params["encoder"], params["decoder"]
        self.enc_embed = nn.Embedding.from_pretrained(
            torch.tensor(np.asarray(enc["embed"]["W"], np.float32)), freeze=False)
        self.dec_embed = nn.Embedding.from_pretrained(
            torch.tensor(np.asarray(dec["embed"]["W"], np.float32)), freeze=False)
        self.encoder, self.decoder = _lstm(enc["lstm"]), _lstm(dec["lstm"])
        W = np.asarray(dec["affine"]["W"], np.float32)
        self.affine = nn.Linear(*W.shape)
        with torch.no_grad():
            self.affine.weight.copy_(torch.from_numpy(W.T.copy()))
            self.affine.bias.copy_(torch.tensor(np.asarray(dec["affine"]["b"], np.float32)))

    def forward(self, x: torch.Tensor, decoder_in: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.encoder(self.enc_embed(x))  # h: (1, N, H)
        T = decoder_in.shape[1]
        h_every_step = h[0].unsqueeze(1).expand(-1, T, -1)
        ys = torch.cat([h_every_step, self.dec_embed(decoder_in)], dim=2)
        hs, _ = self.decoder(ys, (h, torch.zeros_like(h)))
        return self.affine(torch.cat([h_every_step, hs], dim=2))


def train(params: Any, x: np.ndarray, t: np.ndarray, indices: np.ndarray, *, start_id: int,
          lr: float = 0.001, max_grad: float = 5.0,
          threads: int | None = None) -> tuple[float, np.ndarray]:
    """Steps over ``indices (steps, batch)`` (forward, backward, clip, Adam); returns
    ``(seconds, losses)``."""
    if threads is not None:
        torch.set_num_threads(threads)
    model = PeekySeq2seq(params)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8)
    x_all, t_all = torch.from_numpy(np.asarray(x, np.int64)), torch.from_numpy(
        np.asarray(t, np.int64))
    start = torch.full((len(t), 1), start_id, dtype=torch.int64)
    decoder_all = torch.cat([start, t_all[:, :-1]], dim=1)
    batches = torch.from_numpy(np.asarray(indices, np.int64))
    losses = np.empty(len(indices))
    begin = time.perf_counter()
    for step, batch in enumerate(batches):
        logits = model(x_all[batch], decoder_all[batch])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           t_all[batch].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad)
        optimizer.step()
        losses[step] = loss.item()
    return time.perf_counter() - begin, losses
