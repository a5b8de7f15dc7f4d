"""Peer implementations for ``experiments/benchmark.py``: the same network trained without fnnet.

Every peer module exposes one function with the same contract, so the harness treats all
implementations (fnnet's included) alike::

    train(params, x, t, indices, lr, activation) -> (final_params, seconds, compile_s)

* ``params``: the initial parameters as a list of ``(W, b)`` NumPy float32 pairs, one per
  affine layer, ``W`` of shape ``(fan_in, fan_out)`` (fnnet's layout). Never modified.
* ``x``: float32 ``(N, D)`` training inputs; ``t``: int32 ``(N,)`` class indices.
* ``indices``: int ``(steps, batch_size)``; step ``i`` trains on ``x[indices[i]]``.
* ``lr``: the SGD learning rate; ``activation``: ``"sigmoid"`` or ``"relu"`` (hidden layers).

It returns the final parameters in the same ``[(W, b), …]`` NumPy layout, the wall-clock
seconds of the timed run over all steps (synchronised at the end), and ``compile_s``: the
time spent before it compiling and warming up (pure compile time where it can be separated,
else the first call). The loss is softmax cross-entropy, batch mean, as in fnnet.

Modules: :mod:`numpy_book` (the book's layer classes), :mod:`torch_nn` (PyTorch eager and
``torch.compile``; needs torch), :mod:`plain_jax` (``jax.grad`` + ``jax.jit``),
:mod:`optax_only` (the plain-JAX loss with ``optax.sgd``). :mod:`jax_common` holds the per-step
loop shared by every jit-per-step JAX row, fnnet's included, so that they are timed alike.
"""

from __future__ import annotations

import numpy as np

PairParams = list[tuple[np.ndarray, np.ndarray]]
"""Parameters as ``[(W1, b1), (W2, b2), …]``, ``W`` of shape ``(fan_in, fan_out)``."""

ACTIVATIONS = ("sigmoid", "relu")
"""Hidden-layer activations every peer supports."""


def check_activation(activation: str) -> None:
    """Raise ``ValueError`` unless ``activation`` is one of :data:`ACTIVATIONS`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
