"""Peer: PyTorch — ``nn.Sequential`` of ``nn.Linear`` + activation, ``nn.CrossEntropyLoss``
(batch mean) and ``torch.optim.SGD``, in eager mode, through ``torch.compile``, or with the
whole step (forward, backward, SGD update) captured once in a CUDA graph and replayed per
batch (``torch.cuda.graph``, PyTorch's "whole-network capture"; CUDA only).

Needs ``torch`` (an optional extra). Threads: ``torch.set_num_threads(threads)``, by default
the cores this process may use. The data and the index matrix become tensors once; each step
indexes its batch (``x[idx[i]]``), as a PyTorch script does with in-memory data.
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np
import torch
from torch import nn

from peers import PairParams, check_activation


def build_model(params: PairParams, activation: str) -> nn.Sequential:
    """``Linear → activation → … → Linear`` holding copies of ``params`` (``weight = Wᵀ``)."""
    check_activation(activation)
    modules: list[nn.Module] = []
    for i, (W, _) in enumerate(params):
        modules.append(nn.Linear(W.shape[0], W.shape[1]))
        if i < len(params) - 1:
            modules.append(nn.Sigmoid() if activation == "sigmoid" else nn.ReLU())
    model = nn.Sequential(*modules)
    load_params(model, params)
    return model


def load_params(model: nn.Sequential, params: PairParams) -> None:
    """Copy ``params`` into the model's Linear layers in place (compiled graphs stay valid)."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, (W, b) in zip(linears, params, strict=True):
            linear.weight.copy_(torch.tensor(W.T))
            linear.bias.copy_(torch.tensor(b))


def to_pairs(model: nn.Sequential) -> PairParams:
    """The model's Linear layers as ``[(W, b), …]`` NumPy arrays, ``W = weightᵀ``."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return [(linear.weight.detach().cpu().numpy().T.copy(), linear.bias.detach().cpu().numpy())
            for linear in linears]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(params: PairParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray, lr: float,
          activation: str, *, compile_model: bool = False, cuda_graph: bool = False,
          device: str = "cpu", threads: int | None = None) -> tuple[PairParams, float, float]:
    """Train with ``torch.optim.SGD(lr)``; see :mod:`peers` for the contract.

    ``compile_model=True`` wraps the model in ``torch.compile``; ``compile_s`` is then the
    first step (compile + run), else that of eager mode. Two warm-up steps run before the
    timed loop, after which the initial params are loaded back. ``cuda_graph=True`` (CUDA
    only) warms up on a side stream, captures one whole step reading its batch indices from
    a static tensor, and replays it per batch (copy the indices in, ``replay()``); its
    ``compile_s`` includes the capture. ``threads``: the intra-op threads (default: the
    usable cores).
    """
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    dev = torch.device(device)
    if cuda_graph and dev.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device; got device={device!r}")
    if cuda_graph and compile_model:
        raise ValueError("choose one of compile_model=True and cuda_graph=True")
    model = build_model(params, activation).to(dev)
    net = torch.compile(model) if compile_model else model
    loss_fn = nn.CrossEntropyLoss()
    x_all = torch.as_tensor(x).to(dev)
    t_all = torch.as_tensor(t).long().to(dev)
    idx = torch.as_tensor(indices).long().to(dev)

    def step(optimizer: torch.optim.Optimizer, batch: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x_all[batch]), t_all[batch])
        loss.backward()
        optimizer.step()
        return loss

    side = torch.cuda.Stream(dev) if cuda_graph else None  # capture wants a side-stream warm-up
    if side is not None:
        side.wait_stream(torch.cuda.current_stream(dev))
    warm_optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    start = time.perf_counter()
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
        step(warm_optimizer, idx[0])
        _sync(dev)
        compile_s = time.perf_counter() - start
        step(warm_optimizer, idx[1 % len(idx)])
    if side is not None:
        torch.cuda.current_stream(dev).wait_stream(side)
    # the timed optimiser: for the graph, the warmed one (any state it keeps exists before
    # the capture, not inside it); plain SGD keeps none, so both start alike
    optimizer = warm_optimizer if cuda_graph else torch.optim.SGD(model.parameters(), lr=lr)
    if cuda_graph:
        static_batch = idx[0].clone()
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)  # backward allocates .grad in the graph's pool
        begin = time.perf_counter()
        with torch.cuda.graph(graph):  # recorded, not run: the params are untouched
            loss = loss_fn(net(x_all[static_batch]), t_all[static_batch])
            loss.backward()
            optimizer.step()
        _sync(dev)
        compile_s += time.perf_counter() - begin
    load_params(model, params)  # in place: the captured graph still points at these tensors
    _sync(dev)
    start = time.perf_counter()
    for batch in idx:
        if cuda_graph:
            static_batch.copy_(batch)
            graph.replay()
        else:
            step(optimizer, batch)
    _sync(dev)
    seconds = time.perf_counter() - start
    return to_pairs(model), seconds, compile_s
