"""``fnnet graph NAME|FILE.py:FUNC``: a computational graph drawn with each edge's forward
value and gradient (:mod:`fnnet.graph`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fnnet.cli import common

FORMATS = ("png", "svg", "dot")
"""The figure formats (:data:`fnnet.graph.FORMATS`; repeated here so that ``fnnet --help``
imports no JAX)."""

_DESCRIPTION = """\
Trace a function, run it forward and backward, and draw its computational graph as the book
does: the operations as nodes (each of fnnet's ops, and each jax.named_scope block, as one
node), every edge labelled with the value it carries above and the gradient of the output
with respect to that value below (shape and norm for arrays of more than 3 entries). Prints
the edges, and with --out writes the figure: PNG or SVG (needs matplotlib: pip install
'fnnet[plot]'), or DOT text for Graphviz.

TARGET is one of the books' graphs -- apple (the first book's chapter 5: 2 apples at 100, 3
oranges at 150, 10% tax), sequel-nodes (add, mul, branch, repeat, sum, matmul), two-layer
(Affine, Sigmoid, Affine, Softmax-with-Loss) -- or FILE.py:FUNC, a function of your own,
called with the --arg values (NAME=VALUE or VALUE, VALUE a number or a nested list: floats
become float32 arrays, integers int32).

Exit status: 0 drawn, 1 the function raised, 2 a usage error."""


def add_parser(commands: Any) -> None:
    """The ``graph`` subcommand on ``commands`` (the subparsers of ``fnnet``)."""
    graph = commands.add_parser(
        "graph", help="draw a computational graph with forward values and gradients",
        description=_DESCRIPTION, formatter_class=_Formatter)
    graph.add_argument("target", metavar="TARGET",
                       help="apple, sequel-nodes, two-layer, or FILE.py:FUNC")
    graph.add_argument("--arg", dest="args", action="append", default=[],
                       metavar="NAME=VALUE", help="an argument of FUNC (repeat: one per "
                                                  "argument), e.g. --arg x=[1.0,2.0]")
    graph.add_argument("--out", type=Path, default=None, metavar="PATH",
                       help="write the figure here (format from the suffix, or --format)")
    graph.add_argument("--format", dest="fmt", choices=FORMATS, default=None,
                       help="png, svg or dot (default: the suffix of --out)")
    graph.add_argument("--title", default=None, help="a title over the figure")
    graph.set_defaults(handler=run_graph)


class _Formatter(common.DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the description's paragraphs kept as written."""


def run_graph(args: argparse.Namespace) -> int:
    """The handler of ``fnnet graph`` (exit status: 1 when the function raised)."""
    from fnnet.graph.main import GraphSpecError, graph_main

    if args.out is None:
        if args.fmt is not None:
            raise common.UsageError("--format needs --out PATH (where to write the figure)")
    else:
        fmt = args.fmt or args.out.suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise common.UsageError(f"--out {args.out}: give a path ending in .png, .svg or "
                                    f".dot, or --format")
        common.check_writable("--out", args.out)
        if fmt != "dot":
            try:
                import matplotlib  # noqa: F401
            except ImportError as error:
                raise common.UsageError(f"--out {args.out}: drawing {fmt} needs matplotlib: "
                                        f"pip install 'fnnet[plot]' (or --format dot)") from error
    try:
        return graph_main(args.target, args.args, out=args.out, fmt=args.fmt, title=args.title)
    except GraphSpecError as error:
        raise common.UsageError(str(error)) from None
