"""Where each node of a traced :class:`~fnnet.graph.trace.Graph` goes, and how edge values
are written.

Each node's column is its longest path from the inputs (an input sits one column before its
first consumer, as the book lets ``tax`` enter at the last node); the main chain of
operations (from the output back, through the latest-column operation feeding each, to the
first one's data input) lies on one row; the other nodes of a column go above and below it,
ordered by the mean row of their neighbours (three sweeps). Columns are as wide as the
widest node plus the longest edge label need.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fnnet.graph.trace import Graph

__all__ = ["format_array", "layout"]

_COLUMN, _ROW = 2.6, 1.5  # data units between columns / rows (at least)


def format_array(a: Any) -> str:
    """A value for an edge label: the number(s) when there are at most 3, else the shape
    and the norm (``2×4, norm 1.23``).

    >>> format_array(np.float32(2.2)), format_array(np.array([1.0, 2.5]))
    ('2.2', '[1, 2.5]')
    >>> format_array(np.ones((2, 4)))
    '2×4, norm 2.83'
    """
    a = np.asarray(a)
    if a.size == 1:
        value = a.reshape(-1)[0]
        return f"{value}" if np.issubdtype(a.dtype, np.integer) else f"{float(value):.4g}"
    if a.size <= 3 and a.ndim == 1:
        return "[" + ", ".join(f"{v}" if np.issubdtype(a.dtype, np.integer) else f"{v:.3g}"
                               for v in a.tolist()) + "]"
    shape = "×".join(map(str, a.shape))
    if not np.issubdtype(a.dtype, np.inexact):
        return f"{shape} {a.dtype.name}"
    return f"{shape}, norm {float(np.linalg.norm(a.astype(np.float64))):.3g}"


def _columns(graph: Graph) -> dict[int, int]:
    preds: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    succs: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        preds[e.target].append(e.source)
        succs[e.source].append(e.target)
    column: dict[int, int] = {}
    pending = [n.id for n in graph.nodes if not preds[n.id]]
    indegree = {n: len(p) for n, p in preds.items()}
    order = []
    while pending:
        n = pending.pop(0)
        order.append(n)
        column[n] = max((column[p] + 1 for p in preds[n]), default=0)
        for s in succs[n]:
            indegree[s] -= 1
            if indegree[s] == 0:
                pending.append(s)
    for n in reversed(order):  # sources one column before their first consumer
        if not preds[n] and succs[n]:
            column[n] = min(column[s] for s in succs[n]) - 1
    return column


def _spine(graph: Graph, column: dict[int, int]) -> set[int]:
    """The main chain: from the output back through, at each step, the operation feeding
    it from the latest column (the first such one on a tie; never a branch point, whose
    edges would run along the chain), and the first operation's data input."""
    preds: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        preds[e.target].append(e.source)
    outputs = [n.id for n in graph.nodes if n.kind == "output"]
    spine: set[int] = set()
    node = outputs[0] if outputs else None
    while node is not None and node not in spine:
        spine.add(node)
        inner = [p for p in preds[node] if graph.nodes[p].kind == "op"]
        if inner:
            node = max(inner, key=lambda p: column[p])
            continue
        # The first operation: its data input joins the chain (a plain argument before a
        # leaf of a parameter pytree such as params/affine1/W), as the book draws x.
        inputs = [p for p in preds[node] if graph.nodes[p].kind == "input"]
        inputs.sort(key=lambda p: ("/" in graph.nodes[p].label, p))
        if inputs:
            spine.add(inputs[0])
        node = None
    return spine


def _column_width(graph: Graph) -> float:
    """Room between columns for the widest node and the longest edge label."""
    half = max((_radius(n.label, n.kind)[0] for n in graph.nodes if n.kind == "op"),
               default=0.3)
    label = max((len(format_array(x)) for e in graph.edges
                 for x in (e.value, e.grad) if x is not None), default=4)
    return max(_COLUMN, 2 * half + 0.075 * label + 0.35)


def layout(graph: Graph) -> dict[int, tuple[float, float]]:
    """Node positions ``{id: (x, y)}`` (see the module docstring): the main chain of
    operations on one row, the other nodes above and below it by their neighbours' rows."""
    column = _columns(graph)
    spacing = _column_width(graph)
    neighbours: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        neighbours[e.target].append(e.source)
        neighbours[e.source].append(e.target)
    by_column: dict[int, list[int]] = {}
    for n in graph.nodes:
        by_column.setdefault(column.get(n.id, 0), []).append(n.id)
    spine = _spine(graph, column)
    row = {n: float(i) for nodes in by_column.values() for i, n in enumerate(nodes)}
    row.update({n: 0.0 for n in spine})
    for _ in range(3):
        for nodes in by_column.values():
            fixed = [n for n in nodes if n in spine]
            others = sorted((n for n in nodes if n not in spine),
                            key=lambda n: np.mean([row[m] for m in neighbours[n]] or [row[n]]))
            if not fixed:
                rows = [i - (len(others) - 1) / 2 for i in range(len(others))]
            else:
                above = sum(np.mean([row[m] for m in neighbours[n]] or [0]) < 0 for n in others)
                above = max(above, len(others) // 2) if len(others) > 1 else above
                rows = [float(i - above) for i in range(above)] + \
                    [float(i + 1) for i in range(len(others) - above)]
            for n, r in zip(others, rows, strict=True):
                row[n] = r
    low = min(column.values(), default=0)
    return {n: ((column[n] - low) * spacing, -row[n] * _ROW) for n in row}


def _radius(label: str, kind: str) -> tuple[float, float]:
    """Half width and half height of a node's shape."""
    if kind == "branch":
        return 0.06, 0.06
    if kind in ("input", "output", "const"):
        return 0.12 + 0.075 * len(label), 0.18
    lines = label.split("\n")
    width = max(len(line) for line in lines)
    if width <= 2 and len(lines) == 1:
        return 0.3, 0.3
    return max(0.35, 0.085 * width + 0.12), 0.16 + 0.13 * len(lines)
