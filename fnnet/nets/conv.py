"""The book's convolutional nets: ``SimpleConvNet`` (chapter 7) and ``DeepConvNet``
(chapter 8), over ``(C, H, W)`` images."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from fnnet._checks import check_int
from fnnet.init import Initializer
from fnnet.layers import (
    Layer,
    Model,
    Shape,
    activation_layer,
    affine_layer,
    classifier,
    conv_layer,
    dropout_layer,
    flatten_layer,
    max_pool_layer,
    serial,
)


def simple_conv_net(
    input_shape: Shape = (1, 28, 28),
    num_classes: int = 10,
    *,
    filters: int = 30,
    kernel: int = 5,
    hidden: int = 100,
    weight_init: str | float | Initializer = "normal",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
    weight_decay: float = 0.0,
) -> Model:
    """The book's chapter-7 ``SimpleConvNet``: ``Conv (30 5×5, stride 1, pad 0) → ReLU →
    Pool 2×2 → Affine 100 → ReLU → Affine → Softmax-with-Loss``, over ``(C, H, W)`` images.

    Layers: ``conv1, relu1, pool1, flatten, affine1, relu2, affine2``; ``weight_init``
    defaults to the book's N(0, 0.01²).

    >>> import jax
    >>> net = simple_conv_net()
    >>> params = net.init(jax.random.key(0))
    >>> params["conv1"]["W"].shape, params["affine1"]["W"].shape
    ((30, 1, 5, 5), (4320, 100))
    """
    common = dict(weight_init=weight_init, grads=grads, dtype=dtype)
    network = serial(
        ("conv1", conv_layer(filters, kernel, **common)),
        ("relu1", activation_layer("relu", grads=grads)),
        ("pool1", max_pool_layer(2, grads=grads)),
        ("flatten", flatten_layer()),
        ("affine1", affine_layer(hidden, **common)),
        ("relu2", activation_layer("relu", grads=grads)),
        ("affine2", affine_layer(check_int("num_classes", num_classes, minimum=2), **common)),
    )
    return classifier(network, input_shape, grads=grads, weight_decay=weight_decay)


def deep_conv_net(
    input_shape: Shape = (1, 28, 28),
    num_classes: int = 10,
    *,
    filters: Sequence[int] = (16, 16, 32, 32, 64, 64),
    hidden: int = 50,
    dropout: float = 0.5,
    weight_init: str | float | Initializer = "he",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
    weight_decay: float = 0.0,
) -> Model:
    """The book's chapter-8 ``DeepConvNet``: six 3×3 convolutions (pad 1) with ReLU and a
    2×2 max pool after every second one, then ``Affine 50 → ReLU → Dropout → Affine →
    Softmax-with-Loss``; He initialisation.

    Layers: ``conv1, relu1, conv2, relu2, pool1, …, pool3, flatten, affine1, relu7,
    dropout1, affine2``. Training needs a key (dropout).
    """
    common = dict(weight_init=weight_init, grads=grads, dtype=dtype)
    layers: list[tuple[str, Layer]] = []
    for i, count in enumerate(filters, start=1):
        layers += [(f"conv{i}", conv_layer(count, 3, pad=1, **common)),
                   (f"relu{i}", activation_layer("relu", grads=grads))]
        if i % 2 == 0:
            layers.append((f"pool{i // 2}", max_pool_layer(2, grads=grads)))
    layers += [("flatten", flatten_layer()),
               ("affine1", affine_layer(hidden, **common)),
               (f"relu{len(filters) + 1}", activation_layer("relu", grads=grads)),
               ("dropout1", dropout_layer(dropout, grads=grads)),
               ("affine2", affine_layer(check_int("num_classes", num_classes, minimum=2),
                                        **common))]
    return classifier(serial(*layers), input_shape, grads=grads, weight_decay=weight_decay)
