"""Peer: optax alone — the plain-JAX loss of :mod:`peers.plain_jax` with ``optax.sgd`` and
``optax.apply_updates``, ``jax.jit`` per step. No fnnet.
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
import optax

from peers import PairParams, check_activation
from peers.jax_common import train_per_step
from peers.plain_jax import Params, loss, to_dict, to_pairs


def train(params: PairParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray, lr: float,
          activation: str) -> tuple[PairParams, float, float]:
    """Train with ``optax.sgd(lr)``; see :mod:`peers` for the contract."""
    check_activation(activation)
    optimizer = optax.sgd(lr)
    loss_fn = partial(loss, activation=activation)

    @partial(jax.jit, donate_argnums=(0, 1))
    def update(params: Params, opt_state: optax.OptState, x: jax.Array, t: jax.Array):
        value, grads = jax.value_and_grad(loss_fn)(params, x, t)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    initial = to_dict(params)

    def fresh_carry() -> tuple[Params, optax.OptState]:
        device_params = jax.device_put(initial)
        return device_params, optimizer.init(device_params)

    (final, _), seconds, compile_s = train_per_step(update, fresh_carry, x, t, indices)
    return to_pairs(final), seconds, compile_s
