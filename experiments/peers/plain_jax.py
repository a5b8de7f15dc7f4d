"""Peer: a plain-JAX training script — ``jax.value_and_grad`` of a hand-written ``jnp`` loss,
``jax.jit`` per step, params as a dict, the SGD update written inline. No fnnet, no optax.

Params are ``{"W1": …, "b1": …, "W2": …, …}``; the loss is the batch-mean softmax
cross-entropy through ``jax.nn.log_softmax``. ``compute_dtype="bfloat16"`` casts ``x`` and
the params to bfloat16 inside the loss (matmuls in bf16, params and gradients in float32).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from peers import PairParams, check_activation
from peers.jax_common import train_per_step

Params = dict[str, jax.Array]


def to_dict(params: PairParams) -> dict[str, np.ndarray]:
    """``[(W1, b1), …]`` → ``{"W1": W1, "b1": b1, …}``."""
    out = {}
    for i, (W, b) in enumerate(params, start=1):
        out[f"W{i}"], out[f"b{i}"] = W, b
    return out


def to_pairs(params: Params) -> PairParams:
    """``{"W1": …, "b1": …, …}`` → ``[(W1, b1), …]`` as NumPy arrays."""
    layers = len(params) // 2
    return [(np.asarray(params[f"W{i}"]), np.asarray(params[f"b{i}"]))
            for i in range(1, layers + 1)]


def predict(params: Params, x: jax.Array, activation: str) -> jax.Array:
    """Logits: ``(affine → activation) × (L − 1) → affine``."""
    act = jax.nn.sigmoid if activation == "sigmoid" else jax.nn.relu
    layers = len(params) // 2
    for i in range(1, layers):
        x = act(x @ params[f"W{i}"] + params[f"b{i}"])
    return x @ params[f"W{layers}"] + params[f"b{layers}"]


def loss(params: Params, x: jax.Array, t: jax.Array, activation: str,
         compute_dtype: str = "float32") -> jax.Array:
    """``L = −(1/N) Σₙ log softmax(f(x))ₙ,tₙ``, computed in float32 whatever ``compute_dtype``."""
    if compute_dtype != "float32":
        params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
        x = x.astype(compute_dtype)
    logp = jax.nn.log_softmax(predict(params, x, activation).astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))


def train(params: PairParams, x: np.ndarray, t: np.ndarray, indices: np.ndarray, lr: float,
          activation: str, *, compute_dtype: str = "float32"
          ) -> tuple[PairParams, float, float]:
    """Train with ``θ ← θ − lr·∇L`` per step; see :mod:`peers` for the contract."""
    check_activation(activation)
    loss_fn = partial(loss, activation=activation, compute_dtype=compute_dtype)

    @partial(jax.jit, donate_argnums=0)
    def update(params: Params, x: jax.Array, t: jax.Array) -> tuple[Params, jax.Array]:
        value, grads = jax.value_and_grad(loss_fn)(params, x, t)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), value

    initial = to_dict(params)
    (final,), seconds, compile_s = train_per_step(
        update, lambda: (jax.device_put(initial),), x, t, indices)
    return to_pairs(final), seconds, compile_s
