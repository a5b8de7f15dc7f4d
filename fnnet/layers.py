"""Layers as pure ``(init, apply)`` pairs over parameter pytrees, and the book's networks.

A :class:`Layer` is two pure functions:

* ``init(key, input_size) -> (output_size, params)`` — ``params`` is a dict of arrays, or
  ``None`` for a layer without parameters;
* ``apply(params, x) -> y``.

:func:`serial` chains named layers; its params are a dict keyed by layer name, holding only
the layers that have parameters, e.g. ``{"affine1": {"W": …, "b": …}, "affine2": {…}}``.

The ``grads`` switch (``"manual"`` or ``"autodiff"``) picks the ops for a whole model: the
hand rules of :mod:`fnnet.manual` or the references of :mod:`fnnet.autodiff`. The forward
values and the parameter pytrees are the same, so params move freely between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnnet import autodiff, manual
from fnnet.init import get_initializer

Params = dict[str, Any]
GRADS = ("manual", "autodiff")
ACTIVATIONS = ("relu", "sigmoid", "tanh")


class Layer(NamedTuple):
    """A layer: ``init(key, input_size) -> (output_size, params)``, ``apply(params, x)``."""

    init: Callable[[jax.Array, int], tuple[int, Params | None]]
    apply: Callable[[Params | None, jax.Array], jax.Array]


class Model(NamedTuple):
    """A classifier as pure functions of a parameter pytree.

    ``init(key) -> params``; ``apply(params, x) -> logits``;
    ``loss(params, x, t) -> scalar`` (softmax cross-entropy, batch mean);
    ``accuracy(params, x, t) -> scalar`` (fraction of argmax hits). ``t`` is integer class
    indices ``(N,)`` or one-hot rows ``(N, C)``.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    loss: Callable[[Params, jax.Array, jax.Array], jax.Array]
    accuracy: Callable[[Params, jax.Array, jax.Array], jax.Array]


def ops_for(grads: str) -> ModuleType:
    """The op namespace for ``grads="manual"`` (hand rules) or ``"autodiff"`` (references)."""
    if grads == "manual":
        return manual
    if grads == "autodiff":
        return autodiff
    raise ValueError(f"grads must be one of {GRADS}; got {grads!r}")


def affine_layer(
    output_size: int,
    *,
    weight_init: str | float = "normal",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Affine layer ``y = x·W + b``: ``W`` from ``weight_init``, ``b = 0``."""
    _check_size("output_size", output_size)
    initializer = get_initializer(weight_init)
    affine = ops_for(grads).affine

    def init(key: jax.Array, input_size: int) -> tuple[int, Params]:
        W = initializer(key, (input_size, output_size), dtype)
        return output_size, {"W": W, "b": jnp.zeros((output_size,), dtype)}

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return affine(x, params["W"], params["b"])

    return Layer(init, apply)


def activation_layer(name: str, *, grads: str = "manual") -> Layer:
    """Elementwise activation (``"relu"``, ``"sigmoid"`` or ``"tanh"``) without parameters."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {name!r}")
    fn = getattr(ops_for(grads), name)
    return Layer(lambda key, input_size: (input_size, None), lambda params, x: fn(x))


def serial(*named_layers: tuple[str, Layer]) -> Layer:
    """Chain ``(name, layer)`` pairs; params are ``{name: params}`` for layers that have any."""
    names = [name for name, _ in named_layers]
    if len(set(names)) != len(names):
        raise ValueError(f"serial: layer names must be unique; got {names}")

    def init(key: jax.Array, input_size: int) -> tuple[int, Params]:
        params: Params = {}
        keys = jax.random.split(key, len(named_layers))
        size = input_size
        for layer_key, (name, layer) in zip(keys, named_layers, strict=True):
            size, layer_params = layer.init(layer_key, size)
            if layer_params is not None:
                params[name] = layer_params
        return size, params

    def apply(params: Params, x: jax.Array) -> jax.Array:
        for name, layer in named_layers:
            x = layer.apply(params.get(name), x)
        return x

    return Layer(init, apply)


def multi_layer_net(
    input_size: int,
    hidden_sizes: Sequence[int],
    output_size: int,
    *,
    activation: str = "relu",
    weight_init: str | float = "normal",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Model:
    """The book's ``MultiLayerNet``: ``(Affine → activation) × len(hidden_sizes) → Affine``.

    Layers are named ``affine1, <activation>1, affine2, …``; the loss is softmax
    cross-entropy over the last affine output (the book's Softmax-with-Loss layer).

    Args:
      input_size: features per example, D.
      hidden_sizes: width of each hidden layer (any depth, may be empty).
      output_size: number of classes, C ≥ 2.
      activation: ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
      weight_init: ``"normal"`` (std 0.01, the book's), ``"xavier"``, ``"he"``, or a float std.
      grads: ``"manual"`` (hand-derived custom_vjp rules) or ``"autodiff"`` (jax.grad).
      dtype: parameter dtype.
    """
    _check_size("input_size", input_size)
    for i, size in enumerate(hidden_sizes):
        _check_size(f"hidden_sizes[{i}]", size)
    _check_size("output_size", output_size, minimum=2)
    ops = ops_for(grads)
    layers: list[tuple[str, Layer]] = []
    for i, size in enumerate(hidden_sizes, start=1):
        layers.append((f"affine{i}", affine_layer(size, weight_init=weight_init, grads=grads,
                                                  dtype=dtype)))
        layers.append((f"{activation}{i}", activation_layer(activation, grads=grads)))
    layers.append((f"affine{len(hidden_sizes) + 1}",
                   affine_layer(output_size, weight_init=weight_init, grads=grads, dtype=dtype)))
    network = serial(*layers)

    def init(key: jax.Array) -> Params:
        return network.init(key, input_size)[1]

    def loss(params: Params, x: jax.Array, t: jax.Array) -> jax.Array:
        return ops.softmax_cross_entropy(network.apply(params, x), t)

    def accuracy(params: Params, x: jax.Array, t: jax.Array) -> jax.Array:
        predicted = jnp.argmax(network.apply(params, x), axis=-1)
        labels = t if jnp.issubdtype(jnp.asarray(t).dtype, jnp.integer) else jnp.argmax(t, -1)
        return jnp.mean(predicted == labels)

    return Model(init, network.apply, loss, accuracy)


def two_layer_net(
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    activation: str = "relu",
    weight_init: str | float = "normal",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Model:
    """The book's ``TwoLayerNet``: ``Affine → activation → Affine → Softmax-with-Loss``.

    Params: ``{"affine1": {"W": (D, H), "b": (H,)}, "affine2": {"W": (H, C), "b": (C,)}}``.
    See :func:`multi_layer_net` for the arguments.

    >>> import jax
    >>> net = two_layer_net(784, 50, 10)
    >>> params = net.init(jax.random.key(0))
    >>> params["affine1"]["W"].shape, params["affine2"]["b"].shape
    ((784, 50), (10,))
    """
    return multi_layer_net(input_size, [hidden_size], output_size, activation=activation,
                           weight_init=weight_init, grads=grads, dtype=dtype)


def _check_size(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
