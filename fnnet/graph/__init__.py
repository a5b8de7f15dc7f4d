"""Computational graphs drawn the way the book draws them: operations as nodes, each edge
labelled with its forward value above and its gradient below.

* :func:`trace_graph` — the graph of ``f(*args)`` as data (:class:`Graph`: nodes, edges
  with values and gradients): what the tests and your own code read;
* :func:`draw` — trace and write it as PNG or SVG (matplotlib only) or DOT text;
* :data:`EXAMPLES` — the books' graphs by name (``apple``, ``sequel-nodes``, ``two-layer``);
* :func:`graph_main` — what ``fnnet graph`` runs.

(The graph *nodes* as ops with hand rules — add, mul, branch, repeat, sum — are
:mod:`fnnet.ops.graph`; this package draws graphs of any function.)

>>> import fnnet.graph
>>> g = fnnet.graph.trace_graph(*fnnet.graph.example("apple"))
>>> round(float(g.edge("price").value), 3), round(float(g.edge("tax").grad), 3)
(715.0, 650.0)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fnnet.graph.examples import EXAMPLES, Example
from fnnet.graph.layout import format_array, layout
from fnnet.graph.main import graph_main, parse_arg
from fnnet.graph.render import FORMATS, render, to_dot
from fnnet.graph.trace import Edge, Graph, Node, name, trace_graph

__all__ = ["EXAMPLES", "FORMATS", "Edge", "Example", "Graph", "Node", "draw", "example",
           "format_array", "graph_main", "layout", "name", "parse_arg", "render", "to_dot",
           "trace_graph"]


def example(example_name: str) -> tuple[Any, ...]:
    """``(f, *args)`` of a named graph of :data:`EXAMPLES`."""
    if example_name not in EXAMPLES:
        raise ValueError(f"example must be one of {tuple(EXAMPLES)}; got {example_name!r}")
    chosen = EXAMPLES[example_name]
    return (chosen.f, *chosen.args())


def draw(f: Callable, *args: Any, path: str | Path | None = None, fmt: str | None = None,
         cotangent: Any = None, names: Any = None, title: str | None = None) -> Graph:
    """Trace ``f(*args)`` (:func:`trace_graph`) and, with ``path``, write the figure there
    (``fmt`` ``"png"``, ``"svg"`` or ``"dot"``; default from the suffix). Returns the graph.
    """
    graph = trace_graph(f, *args, cotangent=cotangent, names=names)
    if path is not None:
        render(graph, path, fmt, title)
    return graph
