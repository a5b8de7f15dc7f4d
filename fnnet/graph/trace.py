"""Tracing a function into the book's computational graph, with every edge's forward value
and gradient.

``trace_graph(f, *args)`` takes ``f``'s jaxpr (``jax.make_jaxpr``) and groups its equations
into the nodes a reader would draw:

* each call of one of fnnet's ops is **one node** (the ops run inside
  ``jax.named_scope(<op name>)``, see :mod:`fnnet.ops.table`), and so is each block of a
  ``jax.named_scope`` of your own (a layer-level figure: wrap each layer in a scope);
* a call of a jitted function (``jax.nn.log_softmax``, your own ``@jax.jit`` helper) is one
  node named after it; any other equation is one node (``×``, ``+``, ``exp``, ``dot`` …);
* equations that only move or retype values (``broadcast_in_dim``, ``reshape``,
  ``convert_element_type``, ``checkpoint_name``) join the node that consumes them;
* a value used by several nodes goes through a **branch** node (the sequel's Repeat node):
  the edge into it carries the sum of the gradients of the edges out of it.

Each edge carries the value it transports (forward, "above the edge" in the book's figures)
and the gradient of the output with respect to that value along that edge (backward, "below
the edge"): ``∂L/∂v`` with ``L = Σ⟨outputs, cotangent⟩`` (the cotangent defaults to ones: for a
scalar output, ``∂output/∂v``). The gradients come from one ``jax.grad`` of the re-evaluated
jaxpr with a zero offset added on every edge, so they are exactly what ``jax.grad`` computes —
through fnnet's hand rules where ``f`` uses them. Name an intermediate value with
:func:`name` (``jax.ad_checkpoint.checkpoint_name``) to label its edge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.extend.core import Literal

__all__ = ["Edge", "Graph", "Node", "name", "trace_graph"]

TRANSPARENT = frozenset({"convert_element_type", "broadcast_in_dim", "reshape", "squeeze",
                         "expand_dims", "copy", "copy_p", "name"})
"""Primitives that only move or retype values: drawn inside the node that consumes them."""

PRIMITIVE_LABELS = {"mul": "×", "add": "+", "sub": "−", "div": "÷", "neg": "−x", "exp": "exp",
                    "log": "log", "dot_general": "dot", "reduce_sum": "Σ", "logistic": "σ",
                    "tanh": "tanh", "max": "max", "min": "min", "integer_pow": "xⁿ",
                    "square": "x²", "sqrt": "√", "rsqrt": "1/√", "reduce_max": "max",
                    "transpose": "ᵀ", "pow": "xʸ", "abs": "|x|"}
"""How a primitive is labelled (others by their name)."""

OP_LABELS = {"add": "+", "mul": "×", "sum": "Sum", "repeat": "Repeat", "branch": "Branch",
             "matmul": "MatMul", "affine": "Affine", "sigmoid": "Sigmoid", "relu": "ReLU",
             "tanh": "tanh", "softmax": "Softmax", "softmax_cross_entropy": "Softmax\nwith Loss",
             "cross_entropy_error": "Cross\nEntropy", "mean_squared_error": "MSE",
             "conv2d": "Conv", "max_pool2d": "Pooling", "dropout": "Dropout",
             "batch_norm": "Batch\nNorm", "batch_norm_inference": "Batch\nNorm",
             "embedding": "Embedding", "sigmoid_cross_entropy": "Sigmoid\nwith Loss",
             "embedding_dot": "Embedding\nDot", "rnn": "RNN", "lstm": "LSTM", "gru": "GRU",
             "time_rnn": "TimeRNN", "time_lstm": "TimeLSTM", "time_gru": "TimeGRU",
             "time_affine": "TimeAffine", "time_softmax_cross_entropy": "TimeSoftmax\nwith Loss",
             "attention_weight": "Attention\nWeight", "weight_sum": "Weight\nSum",
             "time_attention": "Time\nAttention"}
"""How fnnet's ops are labelled: the book's names (ops not listed: by their own name)."""


def name(x: Any, label: str) -> Any:
    """``x`` itself, with its edge in :func:`trace_graph`'s figures labelled ``label``.

    >>> import jax.numpy as jnp
    >>> float(name(jnp.float32(200.0), "apple_price"))
    200.0
    """
    return checkpoint_name(x, label)


@dataclass(frozen=True)
class Node:
    """A node: ``kind`` is ``"input"``, ``"const"``, ``"op"``, ``"branch"`` or ``"output"``;
    ``label`` what the figure shows (``"×"``, ``"Affine"``, ``"apple"``); ``op`` what it is
    (an fnnet op or scope name, a primitive, ``jit:<name>``, an input's name)."""

    id: int
    kind: str
    label: str
    op: str


@dataclass(frozen=True, eq=False)
class Edge:
    """An edge from node ``source`` to node ``target`` carrying ``value`` forward and
    ``grad`` (``∂L/∂value`` along this edge; ``None`` for integer values) backward."""

    source: int
    target: int
    value: np.ndarray
    grad: np.ndarray | None
    name: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.value))


@dataclass(frozen=True, eq=False)
class Graph:
    """The traced graph: ``nodes`` and ``edges`` (see :func:`trace_graph`), the function's
    ``outputs`` and the ``cotangent`` its gradients are taken under."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    outputs: tuple[np.ndarray, ...]
    cotangent: tuple[np.ndarray, ...]

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def nodes_with(self, *, label: str | None = None, kind: str | None = None,
                   op: str | None = None) -> list[Node]:
        """The nodes with that label, kind and/or op."""
        return [n for n in self.nodes if (label is None or n.label == label)
                and (kind is None or n.kind == kind) and (op is None or n.op == op)]

    def edges_into(self, node_id: int) -> list[Edge]:
        return [e for e in self.edges if e.target == node_id]

    def edges_from(self, node_id: int) -> list[Edge]:
        return [e for e in self.edges if e.source == node_id]

    def edge(self, edge_name: str) -> Edge:
        """The (first) edge named ``edge_name`` (an input's name, or one given by
        :func:`name`)."""
        for e in self.edges:
            if e.name == edge_name:
                return e
        raise KeyError(f"no edge named {edge_name!r}; named edges: "
                       f"{sorted({e.name for e in self.edges if e.name})}")

    def format_table(self) -> str:
        """One line per edge: ``source → target  name  value  (grad …)``."""
        from fnnet.graph.layout import format_array

        lines = []
        for e in self.edges:
            src, dst = self.nodes[e.source], self.nodes[e.target]
            left = f"{_one_line(src.label) or src.kind} → {_one_line(dst.label) or dst.kind}"
            grad = "-" if e.grad is None else format_array(e.grad)
            lines.append(f"{left:28s} {e.name or '':14s} value {format_array(e.value):24s} "
                         f"grad {grad}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Nodes and edges as JSON-serialisable dicts (values and gradients as lists)."""
        return {"nodes": [dataclasses.asdict(n) for n in self.nodes],
                "edges": [{"source": e.source, "target": e.target, "name": e.name,
                           "value": np.asarray(e.value).tolist(),
                           "grad": None if e.grad is None else np.asarray(e.grad).tolist()}
                          for e in self.edges]}


def _one_line(label: str) -> str:
    return label.replace("\n", " ")


# --- grouping equations into nodes -------------------------------------------------------------


def _scope(eqn: Any) -> str:
    stack = str(eqn.source_info.name_stack)
    return stack.split("/")[0] if stack else ""


@dataclass
class _Group:
    kind: str        # "op" (an fnnet op), "scope", "jit", "prim"
    name: str
    eqns: list[int]
    closed: bool = False  # an fnnet op group has seen its custom_vjp_call


def _fnnet_ops() -> frozenset[str]:
    from fnnet.ops.table import OPS

    return frozenset(OPS)


def _group(eqns: Sequence[Any], outvars: set) -> tuple[list[int], list[_Group]]:
    """The group index of every equation, and the groups in order of their first equation
    (see the module docstring)."""
    fnnet_ops = _fnnet_ops()
    groups: list[_Group] = []
    group_of: list[int] = []
    produced_by: dict[Any, int] = {}
    for i, eqn in enumerate(eqns):
        scope = _scope(eqn)
        current = groups[-1] if groups else None
        if scope in fnnet_ops:
            reads_current = current is not None and any(
                produced_by.get(v) == len(groups) - 1 for v in eqn.invars
                if not isinstance(v, Literal))
            call = eqn.primitive.name == "custom_vjp_call"
            if current is not None and current.kind == "op" and current.name == scope and (
                    not current.closed or (reads_current and not call)):
                current.eqns.append(i)
            else:
                groups.append(_Group("op", scope, [i]))
            if call:
                groups[-1].closed = True
        elif scope:
            if current is not None and current.kind == "scope" and current.name == scope:
                current.eqns.append(i)
            else:
                groups.append(_Group("scope", scope, [i]))
        elif eqn.primitive.name in ("jit", "pjit"):
            groups.append(_Group("jit", str(eqn.params.get("name", "jit")), [i]))
        else:
            groups.append(_Group("prim", eqn.primitive.name, [i]))
        group_of.append(len(groups) - 1)
        for v in eqn.outvars:
            produced_by[v] = len(groups) - 1
    # Equations that only move or retype values join their one consumer (reverse order, so
    # chains of them collapse).
    consumers: dict[Any, set[int]] = {}
    for i, eqn in enumerate(eqns):
        for v in eqn.invars:
            if not isinstance(v, Literal):
                consumers.setdefault(v, set()).add(i)
    for i in reversed(range(len(eqns))):
        eqn = eqns[i]
        if groups[group_of[i]].kind != "prim" or eqn.primitive.name not in TRANSPARENT:
            continue
        users = {group_of[j] for v in eqn.outvars for j in consumers.get(v, ())}
        makers = {produced_by[v] for v in eqn.invars if not isinstance(v, Literal)
                  and v in produced_by}
        sources = [v for v in eqn.invars if not isinstance(v, Literal)]
        if len(users) == 1 and not any(v in outvars for v in eqn.outvars):
            group_of[i] = users.pop()
        elif len(makers) == 1 and len(sources) == len([v for v in sources if v in produced_by]):
            group_of[i] = makers.pop()  # e.g. a name on the output: joins its producer
    names = {g: groups[g] for g in set(group_of)}
    order = sorted(names)
    return [order.index(g) for g in group_of], [names[g] for g in order]


def _label(group: _Group, eqns: Sequence[Any]) -> tuple[str, str]:
    """``(label, op)`` of a group's node."""
    if group.kind == "op":
        return OP_LABELS.get(group.name, group.name), group.name
    if group.kind == "scope":
        return group.name, group.name
    if group.kind == "jit":
        return group.name, f"jit:{group.name}"
    eqn = eqns[group.eqns[0]]
    label = PRIMITIVE_LABELS.get(group.name, group.name)
    if group.name == "integer_pow":
        label = f"x^{eqn.params.get('y')}"
    literals = [v.val for v in eqn.invars if isinstance(v, Literal)]
    if literals and np.ndim(literals[0]) == 0:
        label += f" {float(literals[0]):.4g}"
    return label, group.name


# --- evaluation with an offset on every edge ---------------------------------------------------


def _bind(eqn: Any, invals: list[Any]) -> list[Any]:
    """Apply one equation, as ``jax.core.eval_jaxpr`` does (older JAX returned
    ``(subfuns, params)`` from ``get_bind_params``, newer JAX the params alone)."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: list[Any] = []
    if isinstance(bind_params, tuple):
        subfuns, bind_params = bind_params
    ctx = getattr(getattr(eqn, "ctx", None), "manager", None)
    with ctx if ctx is not None else contextlib.nullcontext():
        out = eqn.primitive.bind(*subfuns, *invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _inexact(v: Any) -> bool:
    return jnp.issubdtype(v.aval.dtype, jnp.inexact)


def _inline_jit(closed: Any) -> Any:
    """The jaxpr inside ``closed`` when ``closed`` is one call of a jitted function on
    exactly its own inputs (``f`` was ``jax.jit``-decorated)."""
    while len(closed.jaxpr.eqns) == 1:
        eqn = closed.jaxpr.eqns[0]
        if eqn.primitive.name not in ("jit", "pjit") or list(eqn.invars) != list(
                closed.jaxpr.invars) or list(eqn.outvars) != list(closed.jaxpr.outvars):
            break
        closed = eqn.params["jaxpr"]
    return closed


def _flat_names(f: Callable, args: tuple, names: Sequence[str] | None) -> list[str]:
    if names is None:
        try:
            params = list(inspect.signature(f).parameters)
        except (TypeError, ValueError):
            params = []
        names = [params[i] if i < len(params) else f"arg{i}" for i in range(len(args))]
    flat = []
    for arg_name, arg in zip(names, args, strict=True):
        paths = jax.tree_util.tree_flatten_with_path(arg)[0]
        for path, _ in paths:
            suffix = jax.tree_util.keystr(tuple(path), simple=True, separator="/")
            flat.append(f"{arg_name}/{suffix}" if suffix else arg_name)
    return flat


def trace_graph(f: Callable, *args: Any, cotangent: Any = None,
                names: Sequence[str] | None = None) -> Graph:
    """The computational graph of ``f(*args)`` with forward values and gradients on every
    edge (see the module docstring).

    Args:
      f: a JAX function (fnnet's ops, ``jax.numpy``); may be jitted.
      *args: its arguments (arrays or pytrees of arrays); floating ones get gradients.
      cotangent: the cotangent of the outputs (a pytree like ``f``'s output); default ones.
      names: names of the arguments (default: ``f``'s parameter names).

    Returns:
      A :class:`Graph`.

    >>> import jax.numpy as jnp
    >>> g = trace_graph(lambda x, y: x * y, jnp.float32(3.0), jnp.float32(5.0))
    >>> [(g.node(e.source).label, g.node(e.target).label, float(e.value), float(e.grad))
    ...  for e in g.edges]
    [('x', '×', 3.0, 5.0), ('y', '×', 5.0, 3.0), ('×', 'L', 15.0, 1.0)]
    """
    leaves, treedef = jax.tree.flatten(args)
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    input_names = _flat_names(f, args, names)

    def flat_f(*flat):
        return jax.tree.leaves(f(*jax.tree.unflatten(treedef, flat)))

    closed = _inline_jit(jax.make_jaxpr(flat_f)(*leaves))
    jaxpr, consts = closed.jaxpr, closed.consts
    outvars = [v for v in jaxpr.outvars]
    group_of, groups = _group(jaxpr.eqns, {v for v in outvars if not isinstance(v, Literal)})

    # The edges: (var, consumer) pairs; consumer = group index or "out".
    producer: dict[Any, tuple[str, int]] = {}
    for i, v in enumerate(jaxpr.invars):
        producer[v] = ("input", i)
    for i, v in enumerate(jaxpr.constvars):
        producer[v] = ("const", i)
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.outvars:
            producer[v] = ("group", group_of[i])
    uses: list[tuple[Any, Any]] = []
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if isinstance(v, Literal) or producer[v] == ("group", group_of[i]):
                continue
            if (v, group_of[i]) not in uses:
                uses.append((v, group_of[i]))
    for k, v in enumerate(outvars):
        if not isinstance(v, Literal):
            uses.append((v, ("out", k)))
    differentiable = [use for use in uses if _inexact(use[0])]
    offset_index = {use: k for k, use in enumerate(differentiable)}
    edge_names: dict[Any, str] = {}
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "name":
            edge_names[eqn.invars[0]] = edge_names[eqn.outvars[0]] = eqn.params["name"]

    def run(flat: list[Any], offsets: list[Any]):
        env: dict[Any, Any] = dict(zip(jaxpr.invars, flat, strict=True))
        env.update(zip(jaxpr.constvars, consts, strict=True))
        seen: dict[tuple[Any, Any], Any] = {}

        def read(v: Any, consumer: Any) -> Any:
            if isinstance(v, Literal):
                return v.val
            key = (v, consumer)
            if key in offset_index:
                if key not in seen:
                    seen[key] = env[v] + offsets[offset_index[key]]
                return seen[key]
            return env[v]

        for i, eqn in enumerate(jaxpr.eqns):
            invals = [read(v, group_of[i]) if isinstance(v, Literal) or
                      producer[v] != ("group", group_of[i]) else env[v] for v in eqn.invars]
            for v, value in zip(eqn.outvars, _bind(eqn, invals), strict=True):
                env[v] = value
        outs = [read(v, ("out", k)) for k, v in enumerate(outvars)]
        return outs, [env[v] for v, _ in uses]

    zeros = [jnp.zeros(u[0].aval.shape, u[0].aval.dtype) for u in differentiable]
    out_avals = [v.aval for v in outvars]
    if cotangent is None:
        cot = [jnp.ones(a.shape, a.dtype) for a in out_avals]
    else:
        cot = [jnp.asarray(c, a.dtype) for c, a in zip(jax.tree.leaves(cotangent), out_avals,
                                                        strict=True)]

    def total(offsets: list[Any]):
        outs, values = run(leaves, offsets)
        terms = [jnp.sum(o * c) for o, c in zip(outs, cot, strict=True)
                 if jnp.issubdtype(jnp.asarray(o).dtype, jnp.inexact)]
        loss = functools.reduce(jnp.add, terms) if terms else jnp.float32(0.0)
        return loss, (values, outs)

    # One compiled program for the whole graph (binding equation by equation eagerly would
    # compile every primitive on its own).
    grads, (used_values, outs0) = jax.jit(jax.grad(total, has_aux=True))(zeros)
    grad_of = dict(zip(differentiable, grads, strict=True))
    values = {use[0]: value for use, value in zip(uses, used_values, strict=True)}
    return _build(jaxpr, groups, uses, producer, values, grad_of, input_names, edge_names,
                  outs0, cot)


def _build(jaxpr, groups, uses, producer, values, grad_of, input_names, edge_names, outs,
           cot) -> Graph:
    nodes: list[Node] = []
    node_of: dict[Any, int] = {}

    def add(kind: str, label: str, op: str) -> int:
        nodes.append(Node(len(nodes), kind, label, op))
        return len(nodes) - 1

    for i, _ in enumerate(jaxpr.invars):
        node_of[("input", i)] = add("input", input_names[i], input_names[i])
    for i, _ in enumerate(jaxpr.constvars):
        node_of[("const", i)] = add("const", f"const{i}", f"const{i}")
    for g, group in enumerate(groups):
        label, op = _label(group, jaxpr.eqns)
        node_of[("group", g)] = add("op", label, op)
    single = len(jaxpr.outvars) == 1
    for k, v in enumerate(jaxpr.outvars):
        scalar = not isinstance(v, Literal) and v.aval.shape == ()
        label = ("L" if scalar else "out") if single else f"out{k}"
        node_of[("out", k)] = add("output", label, label)
    edges: list[Edge] = []
    by_var: dict[Any, list[tuple[Any, Any]]] = {}
    for use in uses:
        by_var.setdefault(use[0], []).append(use)
    for var, var_uses in by_var.items():
        source = node_of[producer[var]]
        value = np.asarray(values[var])
        label = edge_names.get(var) or (nodes[source].label if nodes[source].kind == "input"
                                        else None)

        def target_node(consumer: Any) -> int:
            return node_of[("out", consumer[1])] if isinstance(consumer, tuple) else \
                node_of[("group", consumer)]

        grads = [np.asarray(grad_of[u]) if u in grad_of else None for u in var_uses]
        if len(var_uses) == 1:
            edges.append(Edge(source, target_node(var_uses[0][1]), value, grads[0], label))
            continue
        branch = add("branch", "", "branch")
        total = None if grads[0] is None else np.sum(grads, axis=0)
        edges.append(Edge(source, branch, value, total, label))
        for use, grad in zip(var_uses, grads, strict=True):
            edges.append(Edge(branch, target_node(use[1]), value, grad, label))
    return Graph(tuple(nodes), tuple(edges), tuple(np.asarray(o) for o in outs),
                 tuple(np.asarray(c) for c in cot))
