"""The books' computational graphs, as functions with their arguments: what
``fnnet graph NAME`` draws.

* ``apple`` — the first book's chapter-5 shopping graph: 2 apples at 100 and 3 oranges at
  150, plus 10% tax. Forward 200, 450, 650, 715; backward (∂price/∂·) 1.1 for each subtotal,
  2.2 and 110 for the apple's price and count, 3.3 and 165 for the orange's, 650 for the tax.
* ``sequel-nodes`` — the sequel's six nodes (add, mul, branch, repeat, sum, matmul) in one
  small graph.
* ``two-layer`` — one step of the first book's two-layer net at the layer level: Affine,
  Sigmoid, Affine, Softmax-with-Loss on a batch of 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from fnnet import manual
from fnnet.graph.trace import name

__all__ = ["EXAMPLES", "Example"]


@dataclass(frozen=True)
class Example:
    """A named graph: ``f(*args())``, titled ``title``."""

    f: Callable
    args: Callable[[], tuple[Any, ...]]
    title: str


def apple_orange(apple, apple_num, orange, orange_num, tax):
    """``(apple·apple_num + orange·orange_num)·tax``, with fnnet's Mul and Add nodes."""
    apple_price = name(manual.mul(apple, apple_num), "apple_price")
    orange_price = name(manual.mul(orange, orange_num), "orange_price")
    all_price = name(manual.add(apple_price, orange_price), "all_price")
    return name(manual.mul(all_price, tax), "price")


def _apple_args():
    return tuple(jnp.float32(v) for v in (100.0, 2.0, 150.0, 3.0, 1.1))


def sequel_nodes(x, y, W):
    """The sequel's six nodes: ``L = Σ (repeat(b₁, 3)·W) + Σ b₂`` with ``(b₁, b₂)`` the
    branch of ``b = (x + y)·y``."""
    a = name(manual.add(x, y), "a")
    b = name(manual.mul(a, y), "b")
    b1, b2 = manual.branch(b, 2)
    r = name(manual.repeat(b1, 3), "r")
    h = name(manual.matmul(r, W), "h")
    return manual.add(manual.sum(h), manual.sum(b2))


def _sequel_args():
    return (jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0]), jnp.array([[1.0, 0.0], [2.0, -1.0]]))


def two_layer_step(x, W1, b1, W2, b2, t):
    """One forward/backward step of the two-layer net: Affine → Sigmoid → Affine →
    Softmax-with-Loss (the batch-mean loss)."""
    h = name(manual.sigmoid(name(manual.affine(x, W1, b1), "a1")), "z1")
    return manual.softmax_cross_entropy(name(manual.affine(h, W2, b2), "a2"), t)


def _two_layer_args():
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.standard_normal((2, 3)), jnp.float32),
            jnp.asarray(0.5 * rng.standard_normal((3, 4)), jnp.float32),
            jnp.zeros(4, jnp.float32),
            jnp.asarray(0.5 * rng.standard_normal((4, 3)), jnp.float32),
            jnp.zeros(3, jnp.float32), jnp.array([0, 2]))


EXAMPLES: dict[str, Example] = {
    "apple": Example(apple_orange, _apple_args,
                     "Buying apples and oranges (the first book, chapter 5)"),
    "sequel-nodes": Example(sequel_nodes, _sequel_args,
                            "The sequel's nodes: add, mul, branch, repeat, sum, matmul"),
    "two-layer": Example(two_layer_step, _two_layer_args,
                         "One step of the two-layer net, layer by layer"),
}
"""The named graphs (``fnnet graph NAME``)."""
