"""Peer: the sequel's chapter-6 ``Rnnlm`` in PyTorch — ``nn.Embedding`` → ``nn.LSTM``
(``batch_first``) → ``nn.Linear``, ``nn.CrossEntropyLoss`` (mean), ``clip_grad_norm_`` and
``torch.optim.SGD``, eager mode on the CPU; the LSTM state carried (detached) from batch to
batch, as truncated BPTT does.

Needs ``torch`` (an optional extra). Parameters come as fnnet's pytree; PyTorch's LSTM keeps
its gate blocks in the order i, f, g, o with weights ``(4H, D)`` and two biases, so the book's
f, g, i, o blocks are reordered and transposed (``bias_hh = 0``): the model starts where
fnnet's does.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

BOOK_TO_TORCH = (2, 0, 1, 3)
"""Torch's block k (i, f, g, o) is the book's block BOOK_TO_TORCH[k] (f, g, i, o)."""


def _torch_blocks(W: np.ndarray) -> torch.Tensor:
    """A book-layout ``(·, 4H)`` weight (or ``(4H,)`` bias) as torch's ``(4H, ·)``."""
    H = W.shape[-1] // 4
    blocks = [W[..., k * H:(k + 1) * H] for k in BOOK_TO_TORCH]
    return torch.tensor(np.concatenate(blocks, axis=-1).T.copy())


class Rnnlm(nn.Module):
    def __init__(self, params: dict) -> None:
        super().__init__()
        V, D = params["embedding"]["W"].shape
        H = params["lstm"]["Wh"].shape[0]
        self.embedding = nn.Embedding(V, D)
        self.lstm = nn.LSTM(D, H, batch_first=True)
        self.affine = nn.Linear(H, V)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor(np.asarray(params["embedding"]["W"])))
            self.lstm.weight_ih_l0.copy_(_torch_blocks(np.asarray(params["lstm"]["Wx"])))
            self.lstm.weight_hh_l0.copy_(_torch_blocks(np.asarray(params["lstm"]["Wh"])))
            self.lstm.bias_ih_l0.copy_(_torch_blocks(np.asarray(params["lstm"]["b"])))
            self.lstm.bias_hh_l0.zero_()
            self.affine.weight.copy_(torch.tensor(np.asarray(params["affine"]["W"]).T.copy()))
            self.affine.bias.copy_(torch.tensor(np.asarray(params["affine"]["b"])))
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        hs, state = self.lstm(self.embedding(xs), self.state)
        self.state = tuple(s.detach() for s in state)
        return self.affine(hs)


class Trainer:
    """``step(xs, ts) -> loss``: forward, backward, clip, SGD, as the book's trainer."""

    def __init__(self, params: dict, lr: float, max_grad: float | None,
                 threads: int | None = None) -> None:
        torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
        self.model = Rnnlm(params)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.loss_fn = nn.CrossEntropyLoss()
        self.max_grad = max_grad

    def step(self, xs: np.ndarray, ts: np.ndarray) -> float:
        xs, ts = torch.from_numpy(xs).long(), torch.from_numpy(ts).long()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(xs)
        loss = self.loss_fn(logits.reshape(-1, logits.shape[-1]), ts.reshape(-1))
        loss.backward()
        if self.max_grad is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad)
        self.optimizer.step()
        return loss.detach().item()
