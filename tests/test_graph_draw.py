"""fnnet.graph: the apple graph carries the book's numbers (read from the graph data), every
edge's gradient is what jax.grad computes (hand rules included), fnnet's ops are one node
each, the figure is written as PNG/SVG/DOT, and the entry function of `fnnet graph`."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet.graph as fg
from fnnet import manual
from fnnet.graph.main import GraphSpecError


@pytest.fixture(scope="module")
def apple():
    return fg.trace_graph(*fg.example("apple"))


def test_the_apple_graph_carries_the_books_numbers(apple):
    forward = {"apple": 100, "apple_num": 2, "apple_price": 200, "orange": 150,
               "orange_num": 3, "orange_price": 450, "all_price": 650, "tax": 1.1, "price": 715}
    backward = {"apple": 2.2, "apple_num": 110, "orange": 3.3, "orange_num": 165,
                "apple_price": 1.1, "orange_price": 1.1, "all_price": 1.1, "tax": 650,
                "price": 1}
    for edge_name, value in forward.items():
        np.testing.assert_allclose(apple.edge(edge_name).value, value, rtol=1e-6)
        np.testing.assert_allclose(apple.edge(edge_name).grad, backward[edge_name], rtol=1e-6)
    assert sorted(n.label for n in apple.nodes_with(kind="op")) == ["+", "×", "×", "×"]
    assert len(apple.edges) == 9
    # the price node's inputs: 650 (from +) and the tax 1.1
    (times_tax,) = [n for n in apple.nodes_with(label="×")
                    if any(e.name == "tax" for e in apple.edges_into(n.id))]
    assert sorted(float(e.value) for e in apple.edges_into(times_tax.id)) == pytest.approx(
        [1.1, 650])


def _two_layer_args():
    return fg.example("two-layer")[1:]


def test_fnnets_ops_are_one_node_each_and_gradients_are_jax_grads():
    f, *args = fg.example("two-layer")
    graph = fg.trace_graph(f, *args)
    assert [n.op for n in graph.nodes_with(kind="op")] == [
        "affine", "sigmoid", "affine", "softmax_cross_entropy"]
    grads = jax.jit(jax.grad(f, argnums=(0, 1, 2, 3, 4)))(*args)
    for arg_name, grad in zip(["x", "W1", "b1", "W2", "b2"], grads, strict=True):
        np.testing.assert_allclose(graph.edge(arg_name).grad, grad, rtol=1e-6, atol=1e-7)
    assert graph.edge("t").grad is None  # integer labels: no gradient
    np.testing.assert_allclose(graph.outputs[0], f(*args), rtol=1e-6)


def test_two_calls_of_the_same_op_in_a_row_are_two_nodes():
    def f(x, W):
        return manual.sum(manual.matmul(manual.matmul(x, W), W))

    graph = fg.trace_graph(f, jnp.ones((2, 2)), jnp.eye(2) * 2)
    assert [n.op for n in graph.nodes_with(kind="op")] == ["matmul", "matmul", "sum"]


def test_a_value_used_twice_goes_through_a_branch_whose_gradients_add_up():
    def f(x, y):
        return jnp.sum(x * y + jnp.exp(x))

    x, y = jnp.array([0.5, -1.0]), jnp.array([2.0, 3.0])
    graph = fg.trace_graph(f, x, y)
    (branch,) = graph.nodes_with(kind="branch")
    (into,) = graph.edges_into(branch.id)
    out = graph.edges_from(branch.id)
    assert into.name == "x" and len(out) == 2
    np.testing.assert_allclose(into.grad, sum(e.grad for e in out), rtol=1e-6)
    np.testing.assert_allclose(into.grad, jax.grad(f)(x, y), rtol=1e-6)
    assert {n.label for n in graph.nodes_with(kind="op")} >= {"×", "exp", "+"}


def test_the_graph_shows_a_hand_rules_own_gradient_even_when_wrong():
    @jax.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))  # the factor 2 missing
    graph = fg.trace_graph(lambda x: jnp.sum(square(x)), jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(graph.edge("x").grad, [1.0, 3.0])


def test_named_scopes_jit_calls_and_names_group_the_nodes():
    @jax.jit
    def f(x, W):
        with jax.named_scope("layer1"):
            h = jnp.tanh(x @ W)
        return jnp.sum(fg.name(jax.nn.log_softmax(h), "logp"))

    graph = fg.trace_graph(f, jnp.ones((2, 3)), jnp.ones((3, 3)) * 0.1)
    labels = [n.label for n in graph.nodes_with(kind="op")]
    assert labels == ["layer1", "log_softmax", "Σ"]
    assert graph.edge("logp").shape == (2, 3)


def test_the_sequel_nodes_example_uses_the_six_nodes():
    graph = fg.trace_graph(*fg.example("sequel-nodes"))
    assert {n.op for n in graph.nodes_with(kind="op")} == {
        "add", "mul", "branch", "repeat", "sum", "matmul"}
    f, *args = fg.example("sequel-nodes")
    np.testing.assert_allclose(graph.edge("W").grad, jax.grad(f, argnums=2)(*args), rtol=1e-6)


def test_a_cotangent_scales_every_gradient(apple):
    f, *args = fg.example("apple")
    scaled = fg.trace_graph(f, *args, cotangent=jnp.float32(2.0))
    np.testing.assert_allclose(scaled.edge("tax").grad, 2 * apple.edge("tax").grad)


def test_draw_writes_png_svg_and_dot(tmp_path, apple):
    f, *args = fg.example("apple")
    graph = fg.draw(f, *args, path=tmp_path / "apple.png", title="apple")
    assert (tmp_path / "apple.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(graph, fg.Graph) and len(graph.edges) == len(apple.edges)
    fg.render(apple, tmp_path / "apple.svg")
    assert "<svg" in (tmp_path / "apple.svg").read_text()[:500]
    fg.render(apple, tmp_path / "apple.txt", fmt="dot")
    dot = (tmp_path / "apple.txt").read_text()
    assert dot.startswith("digraph fnnet {") and '<715<BR/><FONT COLOR="#c0392b">1</FONT>>' in dot
    assert '<1.1<BR/><FONT COLOR="#c0392b">650</FONT>>' in dot
    with pytest.raises(ValueError, match="fmt must be one of"):
        fg.render(apple, tmp_path / "apple.jpg")


def test_layout_puts_the_main_chain_on_one_row():
    graph = fg.trace_graph(*fg.example("two-layer"))
    pos = fg.layout(graph)
    chain = [n.id for n in graph.nodes_with(kind="op")] + [graph.nodes_with(kind="output")[0].id]
    assert len({pos[n][1] for n in chain}) == 1
    assert [pos[n][0] for n in chain] == sorted(pos[n][0] for n in chain)


# --- the entry function of `fnnet graph` -------------------------------------------------


def test_graph_main_draws_an_example_and_prints_its_edges(tmp_path):
    printed = []
    assert fg.graph_main("apple", out=str(tmp_path / "a.dot"), print_fn=printed.append) == 0
    assert "tax" in printed[0] and "650" in printed[0]
    assert printed[1] == f"wrote {tmp_path / 'a.dot'}"


def test_graph_main_traces_a_users_function_with_argument_values(tmp_path):
    source = tmp_path / "mine.py"
    source.write_text(textwrap.dedent("""
        import jax.numpy as jnp

        def f(x, w, scale=2.0):
            return scale * jnp.sum(x * w)

        def broken(x):
            raise RuntimeError("no")
    """))
    printed = []
    assert fg.graph_main(f"{source}:f", ["x=[1.0, 2.0]", "w=[3.0, 4.0]"],
                         out=str(tmp_path / "f.svg"), print_fn=printed.append) == 0
    assert (tmp_path / "f.svg").exists() and "x" in printed[0]
    assert fg.graph_main(f"{source}:broken", ["1.0"], print_fn=printed.append) == 1
    assert printed[-1] == "error: tracing " + f"{source}:broken raised RuntimeError: no"
    with pytest.raises(GraphSpecError, match=r"takes \(x, w, scale\)"):
        fg.graph_main(f"{source}:f", ["x=[1.0]"], print_fn=printed.append)
    with pytest.raises(GraphSpecError, match="has no 'g'"):
        fg.graph_main(f"{source}:g", print_fn=printed.append)


@pytest.mark.parametrize(("target", "args", "words"), [
    ("pear", (), "expected an example (apple, sequel-nodes, two-layer) or FILE.py:FUNC"),
    ("apple", ("x=1",), "takes no --arg"),
])
def test_graph_main_usage_errors(target, args, words):
    with pytest.raises(GraphSpecError, match=words.replace("(", r"\(").replace(")", r"\)")):
        fg.graph_main(target, args, print_fn=lambda _: None)


def test_parse_arg_reads_numbers_and_lists():
    assert fg.parse_arg("t=[0, 2]")[1].dtype == jnp.int32
    with pytest.raises(GraphSpecError, match="NAME=VALUE"):
        fg.parse_arg("x=ones(3)")


def test_the_readme_figures_script_draws_both_graphs(tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "experiments"))
    written = importlib.import_module("draw_graphs").main(["--out-dir", str(tmp_path),
                                                           "--format", "dot"])
    assert [p.name for p in written] == ["graph_apple.dot", "graph_two_layer.dot"]
    assert "Softmax\\nwith Loss" in written[1].read_text()
