"""The README's computational graphs: the first book's chapter-5 apple graph and one step of
the two-layer net at the layer level, drawn by :mod:`fnnet.graph` from the code itself.

* ``graph_apple.png`` — :data:`fnnet.graph.EXAMPLES` ``"apple"``: forward 100, 2, 200, 150,
  3, 450, 650, 715 above the edges, backward 2.2, 110, 1.1, 3.3, 165, 1.1, 1.1, 650 below;
* ``graph_two_layer.png`` — ``fnnet.two_layer_net(64, 50, 10, activation="sigmoid").loss`` on
  the first 5 training digits (Affine → Sigmoid → Affine → Softmax-with-Loss, its parameters
  from ``init(key(0))``): each edge shows the shape and norm of the value and of its gradient.

Run ``python experiments/draw_graphs.py [--out-dir DIR] [--format png|svg|dot]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from common import RESULTS

import fnnet
import fnnet.graph as fg
from fnnet.data import load_dataset


def two_layer_graph() -> tuple[fg.Graph, str]:
    """The traced graph of one loss evaluation of the two-layer net on 5 digits."""
    data = load_dataset("digits", progress=False)
    x, t = jnp.asarray(data.x_train[:5], jnp.float32), jnp.asarray(data.t_train[:5])
    net = fnnet.two_layer_net(x.shape[1], 50, data.num_classes, activation="sigmoid")
    params = net.init(jax.random.key(0))
    title = (f"fnnet.two_layer_net({x.shape[1]}, 50, {data.num_classes}, "
             f"activation='sigmoid').loss on 5 digits")
    return fg.trace_graph(net.loss, params, x, t), title


def main(argv: Sequence[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--format", choices=fg.FORMATS, default="png")
    args = p.parse_args(argv)
    apple = fg.trace_graph(*fg.example("apple"))
    two_layer, title = two_layer_graph()
    written = [
        fg.render(apple, args.out_dir / f"graph_apple.{args.format}",
                  title=fg.EXAMPLES["apple"].title),
        fg.render(two_layer, args.out_dir / f"graph_two_layer.{args.format}", title=title),
    ]
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
