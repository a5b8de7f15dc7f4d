"""Drawing a traced :class:`~fnnet.graph.trace.Graph` the way the book draws computational
graphs: data flowing left to right, a circle per operation (a rounded box for a named layer),
the forward value above each edge and the gradient below it (in red), an edge bent around a
node in its way. Positions come from :func:`fnnet.graph.layout.layout`. Drawing uses
matplotlib's object API only (``Figure`` and its own canvas: no pyplot, no global backend, no
system program), to PNG or SVG; :func:`to_dot` writes Graphviz text instead.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from fnnet.graph.layout import _COLUMN, _ROW, _radius, format_array, layout
from fnnet.graph.trace import Graph

__all__ = ["FORMATS", "format_array", "layout", "render", "to_dot"]

FORMATS = ("png", "svg", "dot")
GRAD_COLOR = "#c0392b"


def _boundary(center: tuple[float, float], size: tuple[float, float],
              toward: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from ``center`` toward ``toward`` leaves the node's box/circle."""
    dx, dy = toward[0] - center[0], toward[1] - center[1]
    length = np.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    w, h = size
    if abs(w - h) < 1e-9:  # circle
        t = w
    else:  # box
        t = min(w / abs(ux) if ux else np.inf, h / abs(uy) if uy else np.inf)
    return center[0] + ux * t, center[1] + uy * t


def _bend(graph_pos: dict[int, tuple[float, float]], sizes: dict[int, tuple[float, float]],
          source: int, target: int) -> float:
    """The ``arc3`` curvature of an edge: 0 (straight) unless the straight line passes
    through another node, then bent away from the main row."""
    (x1, y1), (x2, y2) = graph_pos[source], graph_pos[target]
    dx, dy = x2 - x1, y2 - y1
    length2 = dx * dx + dy * dy or 1.0
    for n, (x, y) in graph_pos.items():
        if n in (source, target):
            continue
        t = ((x - x1) * dx + (y - y1) * dy) / length2
        if 0.05 < t < 0.95:
            w, h = sizes[n]  # the closest point of the segment inside the node's box?
            if abs(x1 + t * dx - x) < w + 0.15 and abs(y1 + t * dy - y) < h + 0.15:
                # arc3 puts the control point at mid + rad·(dy, −dx): rad > 0 bends a
                # left-to-right edge downward; bend away from the row of that node.
                return 0.3 if (y1 + y2) / 2 <= y else -0.3
    return 0.0


def _draw_edge(ax: Any, e: Any, pos: dict[int, tuple[float, float]],
               sizes: dict[int, tuple[float, float]], arrow: Any) -> None:
    """An edge as an arrow (curved around nodes in its way), its value above and its
    gradient below, both along the edge at 45% of its length."""
    p0, p2 = pos[e.source], pos[e.target]
    rad = _bend(pos, sizes, e.source, e.target)
    mid = ((p0[0] + p2[0]) / 2, (p0[1] + p2[1]) / 2)
    control = (mid[0] + rad * (p2[1] - p0[1]), mid[1] - rad * (p2[0] - p0[0]))
    start = _boundary(p0, sizes[e.source], control if rad else p2)
    end = _boundary(p2, sizes[e.target], control if rad else p0)
    ax.add_patch(arrow(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.2,
                       color="black", zorder=1, shrinkA=0, shrinkB=0,
                       connectionstyle=f"arc3,rad={rad}"))
    # A point and the tangent of the quadratic Bézier start → control → end at t.
    mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    control = (mid[0] + rad * (end[1] - start[1]), mid[1] - rad * (end[0] - start[0]))
    t = 0.45
    point = [(1 - t) ** 2 * a + 2 * t * (1 - t) * c + t ** 2 * b
             for a, c, b in zip(start, control, end, strict=True)]
    dx, dy = [2 * (1 - t) * (c - a) + 2 * t * (b - c)
              for a, c, b in zip(start, control, end, strict=True)]
    length = np.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    if ny < 0:
        nx, ny = -nx, -ny
    angle = float(np.degrees(np.arctan2(dy, dx)))
    angle = angle - 180 if angle > 90 else angle + 180 if angle < -90 else angle
    style = dict(ha="center", rotation=angle, rotation_mode="anchor", fontsize=9, zorder=4)
    ax.text(point[0] + nx * 0.09, point[1] + ny * 0.09, format_array(e.value), va="bottom",
            **style)
    if e.grad is not None:
        ax.text(point[0] - nx * 0.09, point[1] - ny * 0.09, format_array(e.grad), va="top",
                color=GRAD_COLOR, **style)


def _figure(graph: Graph, title: str | None):
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
    except ImportError as e:  # the plot extra
        raise ImportError("drawing a graph needs matplotlib: pip install 'fnnet[plot]' (or "
                          "export DOT text with fmt='dot')") from e
    pos = layout(graph)
    sizes = {n.id: _radius(n.label, n.kind) for n in graph.nodes}
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    for e in graph.edges:  # a bent edge reaches half its bend beyond the chord
        rad = _bend(pos, sizes, e.source, e.target)
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        ys.append((y1 + y2) / 2 - rad * (x2 - x1) / 2)
    margin_x, margin_y = _COLUMN * 0.45, _ROW * 0.6
    width = max(xs) - min(xs) + 2 * margin_x
    height = max(ys) - min(ys) + 2 * margin_y + (0.5 if title else 0)
    fig = Figure(figsize=(max(4.0, width * 0.95), max(2.4, height * 0.95)))
    ax = fig.add_axes((0, 0, 1, 1 - 0.5 / height if title else 1))
    ax.set_xlim(min(xs) - margin_x, max(xs) + margin_x)
    ax.set_ylim(min(ys) - margin_y, max(ys) + margin_y)
    ax.set_aspect("equal")
    ax.axis("off")
    for n in graph.nodes:
        x, y = pos[n.id]
        w, h = sizes[n.id]
        if n.kind == "branch":
            ax.add_patch(Circle((x, y), w, color="black", zorder=3))
        elif n.kind in ("input", "output", "const"):
            ax.text(x, y, n.label, ha="center", va="center", fontsize=11,
                    fontweight="bold", zorder=3)
        elif abs(w - h) < 1e-9:
            ax.add_patch(Circle((x, y), w, facecolor="white", edgecolor="black", lw=1.4,
                                zorder=2))
            ax.text(x, y, n.label, ha="center", va="center", fontsize=15, zorder=3)
        else:
            ax.add_patch(FancyBboxPatch((x - w, y - h), 2 * w, 2 * h,
                                        boxstyle="round,pad=0.02,rounding_size=0.12",
                                        facecolor="white", edgecolor="black", lw=1.4,
                                        zorder=2))
            ax.text(x, y, n.label, ha="center", va="center", fontsize=10.5, zorder=3,
                    linespacing=1.1)
    for e in graph.edges:
        _draw_edge(ax, e, pos, sizes, FancyArrowPatch)
    if title:
        fig.suptitle(title, fontsize=11)
    ax.text(max(xs) + margin_x * 0.95, min(ys) - margin_y * 0.9,
            "forward value above each edge, gradient (red) below", ha="right", va="bottom",
            fontsize=8, color="#555555")
    return fig


def to_dot(graph: Graph, title: str | None = None) -> str:
    """The graph as Graphviz DOT text: value and (red) gradient on each edge's label."""
    lines = ["digraph fnnet {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    if title:
        lines.append(f'  label="{title}"; labelloc=t;')
    for n in graph.nodes:
        label = n.label.replace("\n", "\\n").replace('"', '\\"')
        shape = {"input": "plaintext", "output": "plaintext", "const": "plaintext",
                 "branch": "point"}.get(n.kind, "circle" if len(n.label) <= 2 else "box")
        lines.append(f'  n{n.id} [label="{label}", shape={shape}];')
    for e in graph.edges:
        text = html.escape(format_array(e.value))
        if e.grad is not None:
            text += f'<BR/><FONT COLOR="{GRAD_COLOR}">{html.escape(format_array(e.grad))}</FONT>'
        lines.append(f"  n{e.source} -> n{e.target} [label=<{text}>];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: Graph, path: str | Path, fmt: str | None = None,
           title: str | None = None) -> Path:
    """Write ``graph`` to ``path`` as ``fmt`` (``"png"``, ``"svg"``, ``"dot"``; default: from
    the suffix). Returns the path."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"render: fmt must be one of {FORMATS} (or a path ending in one); "
                         f"got {fmt or path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(to_dot(graph, title))
        return path
    fig = _figure(graph, title)
    fig.savefig(path, format=fmt, dpi=150)
    return path
