"""Chapter 4's training by numerical gradient: central differences over every parameter.

The book trains its ``TwoLayerNet`` first with ``numerical_gradient`` — for each parameter
entry ``θᵢ`` in turn, ``(L(θ + h·eᵢ) − L(θ − h·eᵢ)) / 2h`` — before chapter 5 replaces it by
backpropagation and times the two. Here that gradient is a real numerical one: the loss is
*evaluated* ``2P`` times (``P`` parameters), never differentiated.

* :func:`numerical_gradient` — the central differences of a loss at a parameter pytree, one
  compiled loop over the entries (``lax.map``, ``batch_size`` perturbed copies evaluated at
  once with ``vmap``); every evaluation builds new arrays, the parameters are never
  perturbed in place.
* :func:`numerically_differentiated` — a loss whose ``jax.grad`` (through a
  ``jax.custom_vjp``) is :func:`numerical_gradient` times the incoming cotangent, so the same
  training step, ``lax.scan`` epochs and :func:`fnnet.train.fit` run on it.
* :func:`numerical_model` — a :class:`fnnet.layers.Model` whose training gradients are
  numerical; ``fnnet.two_layer_net(..., grads="numerical")`` and ``fnnet train --grads
  numerical`` build one.

Step: ``hᵢ = ∛ε·max(1, |θᵢ|)`` (``ε`` the machine epsilon of the parameters' dtype: it
balances the O(h²) truncation error against the O(ε|L|/h) rounding error; 4.9e-3 in float32,
6.1e-6 in float64), divided by the step actually taken after rounding, ``(θᵢ + hᵢ) − (θᵢ −
hᵢ)``. The book's ``h = 1e-4`` suits its float64 NumPy arrays; in float32 it would leave
~2e-3 of rounding error in every entry. ``step=`` sets a fixed ``h`` instead.

Cost: ``2P`` forward passes per gradient — for the book's 784-50-10 net, 79 520 forward
passes of the batch where backpropagation needs one forward and one backward pass
(``experiments/numerical_gradient_training.py`` times them side by side).

Only the parameters get a gradient: the inputs' and labels' cotangents are zero (as the
book's ``numerical_gradient``, which differentiates with respect to the weights alone).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fnnet.layers import Model

__all__ = ["numerical_gradient", "numerical_model", "numerically_differentiated"]

BATCH_SIZE = 128
"""Perturbed parameter vectors evaluated at once (``lax.map``'s ``batch_size``)."""


def numerical_gradient(loss: Callable[..., jax.Array], params: Any, *args: Any,
                       step: float | None = None, batch_size: int = BATCH_SIZE) -> Any:
    """``∂L/∂θ`` by central differences over **every** entry of ``params`` (a pytree).

    ``gᵢ = (L(θ + hᵢeᵢ, *args) − L(θ − hᵢeᵢ, *args)) / ((θᵢ + hᵢ) − (θᵢ − hᵢ))`` with
    ``hᵢ = step`` or ``∛ε·max(1, |θᵢ|)`` (see the module docstring). Traceable (``jit``,
    ``vmap``); ``2·P`` evaluations of ``loss``, ``batch_size`` of them vmapped at a time.

    Args:
      loss: ``loss(params, *args) -> scalar``; only evaluated.
      params: a pytree of floating arrays (all of one dtype, as a net's).
      *args: passed to ``loss`` unchanged.
      step: a fixed ``h`` (the book's 1e-4 in float64), or None for the rounding-balanced one.
      batch_size: entries differenced at once (memory: ``2·batch_size`` copies of the
        parameter vector and of the forward pass's activations).

    Returns:
      A pytree like ``params``: the numerical gradient.

    >>> import jax.numpy as jnp
    >>> g = numerical_gradient(lambda p: jnp.sum(p["w"] ** 3), {"w": jnp.array([1.0, 2.0])})
    >>> [round(float(v), 2) for v in g["w"]]  # 3·w²
    [3.0, 12.0]
    """
    flat, unravel = ravel_pytree(params)
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        raise TypeError(f"numerical_gradient: params must be floating; got {flat.dtype}")
    if step is None:
        h = float(np.cbrt(np.finfo(flat.dtype).eps)) * jnp.maximum(1, jnp.abs(flat))
    else:
        if not step > 0:
            raise ValueError(f"numerical_gradient: step must be > 0; got {step}")
        h = jnp.full_like(flat, step)

    def central(entry: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        i, theta, h_i = entry
        up, down = theta + h_i, theta - h_i
        difference = (loss(unravel(flat.at[i].set(up)), *args)
                      - loss(unravel(flat.at[i].set(down)), *args))
        return (difference / (up - down)).astype(flat.dtype)

    indices = jnp.arange(flat.size)
    return unravel(jax.lax.map(central, (indices, flat, h), batch_size=batch_size))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def numerically_differentiated(loss: Callable[..., jax.Array], params: Any,
                               *args: Any) -> jax.Array:
    """``loss(params, *args)``, whose gradient with respect to ``params`` is
    :func:`numerical_gradient` (a ``jax.custom_vjp``: ``bwd`` returns ``g·numerical``, and
    zero cotangents for ``args``). ``loss`` must be hashable (a function defined once)."""
    return loss(params, *args)


def _forward(loss, params, *args):
    return loss(params, *args), (params, args)


def _backward(loss, residuals, g):
    params, args = residuals
    grads = numerical_gradient(loss, params, *args)
    return (jax.tree.map(lambda d: (g * d).astype(d.dtype), grads),
            *(None for _ in args))


numerically_differentiated.defvjp(_forward, _backward)


def numerical_model(model: Model) -> Model:
    """``model`` with numerical training gradients: ``loss`` and ``loss_and_state`` evaluate
    ``model``'s own loss and differentiate it by :func:`numerical_gradient` (the forward
    values are ``model``'s; build it with ``grads="autodiff"``, the plain-jnp ops).

    Nets with state (batch norm) are refused: their loss also returns the new running
    statistics, which central differences cannot carry. Dropout works: one step's mask is
    fixed by its key, the same for all ``2P`` evaluations.
    """
    if jax.tree.leaves(model.init_state()):
        raise ValueError("numerical gradients: the net has state (batch norm's running "
                         "statistics); use grads='manual' or 'autodiff' for it")

    def train_loss(params, x, t, key):
        return model.loss(params, x, t, key=key, train=True)

    def eval_loss(params, x, t, key):
        return model.loss(params, x, t, train=False)

    def loss(params, x, t, *, state=None, key=None, train=True):
        del state  # stateless (checked above)
        return numerically_differentiated(train_loss if train else eval_loss, params, x, t, key)

    def loss_and_state(params, state, x, t, *, key=None):
        return numerically_differentiated(train_loss, params, x, t, key), state

    return model._replace(loss=loss, loss_and_state=loss_and_state)
