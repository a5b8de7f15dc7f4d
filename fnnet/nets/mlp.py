"""The book's fully connected nets: ``TwoLayerNet`` (chapters 4–5) and ``MultiLayerNet`` /
``MultiLayerNetExtend`` (chapter 6: any depth, batch norm, dropout, weight decay)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from fnnet._checks import check_int
from fnnet.init import Initializer, resolve
from fnnet.layers import (
    ACTIVATIONS,
    Layer,
    Model,
    activation_layer,
    affine_layer,
    batch_norm_layer,
    classifier,
    dropout_layer,
    ops_for,
    serial,
)


def multi_layer_net(
    input_size: int,
    hidden_sizes: Sequence[int],
    output_size: int,
    *,
    activation: str = "relu",
    weight_init: str | float | Initializer = "he",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
    weight_decay: float = 0.0,
    batchnorm: bool = False,
    dropout: float = 0.0,
) -> Model:
    """The book's ``MultiLayerNet``: ``(Affine → activation) × len(hidden_sizes) → Affine``,
    or its ``MultiLayerNetExtend`` with ``batchnorm`` and ``dropout``:
    ``(Affine → BatchNorm → activation → Dropout) × len(hidden_sizes) → Affine``.

    Layers are named ``affine1, [batchnorm1,] <activation>1, [dropout1,] affine2, …``; the
    loss is softmax cross-entropy over the last affine output (the book's Softmax-with-Loss
    layer).

    Args:
      input_size: features per example, D.
      hidden_sizes: width of each hidden layer (any depth, may be empty).
      output_size: number of classes, C ≥ 2.
      activation: ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
      weight_init: ``"he"`` (the default, as the book's ``MultiLayerNet``:
        ``weight_init_std='relu'``), ``"xavier"``, ``"normal"`` (std 0.01, the book's
        ``TwoLayerNet``'s, which leaves a deep ReLU net at chance), a float std, or an
        initializer ``(key, shape, dtype) -> array`` (see :mod:`fnnet.init`).
      grads: ``"manual"`` (hand-derived custom_vjp rules), ``"autodiff"`` (jax.grad) or
        ``"numerical"`` (chapter 4: central differences over every parameter, the forward
        pass of ``"autodiff"``; see :mod:`fnnet.numerical`; not with ``batchnorm``).
      dtype: parameter dtype.
      weight_decay: λ of the book's weight decay, ``½·λ·ΣW²`` added to the training loss
        (see :func:`classifier`).
      batchnorm: a :func:`batch_norm_layer` after each hidden affine (the model has state).
      dropout: a :func:`dropout_layer` of this rate after each hidden activation (0: none;
        training then needs a key).
    """
    input_size = check_int("input_size", input_size)
    hidden_sizes = [check_int(f"hidden_sizes[{i}]", size) for i, size in enumerate(hidden_sizes)]
    output_size = check_int("output_size", output_size, minimum=2)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
    if grads == "numerical":
        from fnnet.numerical import numerical_model

        if batchnorm:
            raise ValueError("grads='numerical' cannot train batch norm (its running "
                             "statistics are state); use grads='manual' or 'autodiff'")
        return numerical_model(multi_layer_net(
            input_size, hidden_sizes, output_size, activation=activation,
            weight_init=weight_init, grads="autodiff", dtype=dtype, weight_decay=weight_decay,
            dropout=dropout))
    ops_for(grads)  # fail early on a bad grads value
    weight_init = resolve(weight_init)
    layers: list[tuple[str, Layer]] = []
    for i, size in enumerate(hidden_sizes, start=1):
        layers.append((f"affine{i}", affine_layer(size, weight_init=weight_init, grads=grads,
                                                  dtype=dtype)))
        if batchnorm:
            layers.append((f"batchnorm{i}", batch_norm_layer(grads=grads, dtype=dtype)))
        layers.append((f"{activation}{i}", activation_layer(activation, grads=grads)))
        if dropout:
            layers.append((f"dropout{i}", dropout_layer(dropout, grads=grads)))
    layers.append((f"affine{len(hidden_sizes) + 1}",
                   affine_layer(output_size, weight_init=weight_init, grads=grads, dtype=dtype)))
    return classifier(serial(*layers), (input_size,), grads=grads, weight_decay=weight_decay)


def two_layer_net(
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    activation: str = "relu",
    weight_init: str | float | Initializer = "normal",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
    weight_decay: float = 0.0,
) -> Model:
    """The book's ``TwoLayerNet``: ``Affine → activation → Affine → Softmax-with-Loss``.

    Params: ``{"affine1": {"W": (D, H), "b": (H,)}, "affine2": {"W": (H, C), "b": (C,)}}``.
    See :func:`multi_layer_net` for the arguments; ``weight_init`` defaults to the book's
    ``TwoLayerNet``'s ``N(0, 0.01²)``.

    >>> import jax
    >>> net = two_layer_net(784, 50, 10)
    >>> params = net.init(jax.random.key(0))
    >>> params["affine1"]["W"].shape, params["affine2"]["b"].shape
    ((784, 50), (10,))
    """
    return multi_layer_net(input_size, [hidden_size], output_size, activation=activation,
                           weight_init=weight_init, grads=grads, dtype=dtype,
                           weight_decay=weight_decay)
