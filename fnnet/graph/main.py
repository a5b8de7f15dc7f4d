"""What ``fnnet graph`` runs: a named graph of :data:`fnnet.graph.EXAMPLES`, or a function
of your own as ``FILE.py:FUNC`` with its argument values, traced, printed edge by edge and
written as PNG, SVG or DOT."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from fnnet._load import SpecError, load_attribute
from fnnet.graph.examples import EXAMPLES
from fnnet.graph.render import render
from fnnet.graph.trace import trace_graph

__all__ = ["GraphSpecError", "graph_main", "parse_arg"]


class GraphSpecError(SpecError):
    """A graph target or argument that cannot be used (a usage error: exit status 2)."""


def parse_arg(text: str) -> tuple[str | None, Any]:
    """``"name=value"`` or ``"value"`` as ``(name or None, array)``: the value is a Python
    literal (a number or nested lists), floats become float32 arrays, integers int32.

    >>> parse_arg("x=[1, 2.5]")
    ('x', Array([1. , 2.5], dtype=float32))
    >>> parse_arg("3")
    (None, Array(3, dtype=int32))
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        key, value = None, text
    try:
        literal = ast.literal_eval(value.strip())
        array = np.asarray(literal)
    except (ValueError, SyntaxError, TypeError):
        raise GraphSpecError(f"--arg takes NAME=VALUE or VALUE with VALUE a number or a "
                             f"(nested) list, e.g. x=[1.0, 2.0]; got {text!r}") from None
    if array.dtype.kind == "f":
        return (key.strip() if key else None), jnp.asarray(array, jnp.float32)
    if array.dtype.kind in "iub":
        return (key.strip() if key else None), jnp.asarray(array, jnp.int32)
    raise GraphSpecError(f"--arg VALUE must be numbers; got {text!r}")


def _bind(f: Callable, spec: str, args: Sequence[str]) -> tuple[Any, ...]:
    positional, named = [], {}
    for text in args:
        key, value = parse_arg(text)
        if key is None:
            positional.append(value)
        else:
            named[key] = value
    try:
        bound = inspect.signature(f).bind(*positional, **named)
    except TypeError as e:
        params = ", ".join(inspect.signature(f).parameters)
        raise GraphSpecError(f"{spec} takes ({params}): give each with --arg NAME=VALUE "
                             f"({e})") from None
    bound.apply_defaults()
    return tuple(bound.args)


def graph_main(target: str, args: Sequence[str] = (), *, out: str | None = None,
               fmt: str | None = None, title: str | None = None,
               print_fn: Callable[[str], Any] = print) -> int:
    """Trace ``target`` (a name of :data:`EXAMPLES`, or ``FILE.py:FUNC`` called with
    ``args``, each ``NAME=VALUE`` or ``VALUE``), print its edges and, with ``out``, write
    the figure. Returns 0, or 1 when the function raised; a target or argument that cannot
    be used raises :class:`GraphSpecError` (the CLI's usage error, exit 2)."""
    if target in EXAMPLES:
        if args:
            raise GraphSpecError(f"the example {target!r} takes no --arg (its values are the "
                                 f"book's)")
        chosen = EXAMPLES[target]
        f, values, title = chosen.f, chosen.args(), title or chosen.title
    elif ":" in target:
        try:
            f = load_attribute(target, "FUNC")
        except SpecError as e:
            raise GraphSpecError(str(e)) from e
        if not callable(f):
            raise GraphSpecError(f"{target} is a {type(f).__name__}, not a function")
        values = _bind(f, target, args)
    else:
        raise GraphSpecError(f"expected an example ({', '.join(EXAMPLES)}) or FILE.py:FUNC; "
                             f"got {target!r}")
    try:
        graph = trace_graph(f, *values)
    except Exception as e:
        print_fn(f"error: tracing {target} raised {type(e).__name__}: {e}")
        return 1
    print_fn(graph.format_table())
    if out is not None:
        path = render(graph, out, fmt, title)
        print_fn(f"wrote {path}")
    return 0
