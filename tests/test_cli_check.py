"""``fnnet check-layer`` and ``fnnet graph`` through ``fnnet.cli.main``: exit 0/1, usage
errors as one line with exit 2, the help, the JSON and figure files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from fnnet.cli import main

TESTS = Path(__file__).resolve().parent


def test_check_layer_passes_a_book_class_and_writes_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["check-layer", f"{TESTS / 'book2_layers.py'}:Affine", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "check_layer: Affine" in printed and printed.rstrip().endswith("OK")
    report = json.loads(out.read_text())
    assert report["report"]["ok"] and report["settings"]["spec"].endswith("book2_layers.py:Affine")
    assert [leaf["path"] for leaf in report["report"]["leaves"]] == ["dx", "dW", "db"]


def test_check_layer_exits_1_on_a_buggy_class_naming_the_problem(capsys):
    spec = f"{TESTS / 'buggy_layers.py'}:SoftmaxWithLossIgnoresDout"
    assert main(["check-layer", spec]) == 1
    captured = capsys.readouterr()
    assert "backward ignores dout (assumes dout = 1)" in captured.out
    assert captured.err == "fnnet check-layer: 1 problem in SoftmaxWithLossIgnoresDout\n"


def test_check_layer_as_a_book_class_and_for_an_unknown_class(capsys):
    spec = f"{TESTS / 'book_layers.py'}:MulLayer"
    assert main(["check-layer", spec, "--shape", "2,3", "--no-trials"]) == 0
    assert "dx    2x3" in capsys.readouterr().out
    assert main(["check-layer", f"{TESTS / 'book_layers.py'}:Sigmoid", "--as", "Sigmoid"]) == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["check-layer", "layers.py"], "expected FILE.py:CLASS, e.g. layers.py:Affine"),
    (["check-layer", f"{TESTS / 'book_layers.py'}:Nope"], "has no 'Nope'; it defines"),
    (["check-layer", f"{TESTS / 'buggy_layers.py'}:AffineTransposedDW", "--as", "Mine"],
     "the class to check as must be one of the book's classes fnnet knows"),
    (["check-layer", f"{TESTS / 'book_layers.py'}:MulLayer", "--shape", "3,x"],
     "must be positive integers separated by commas"),
    (["graph", "pear"], "expected an example (apple, sequel-nodes, two-layer) or FILE.py:FUNC"),
    (["graph", "apple", "--format", "dot"], "--format needs --out PATH"),
    (["graph", "apple", "--out", "figure.jpg"], "give a path ending in .png, .svg or .dot"),
    (["graph", "apple", "--arg", "x=1"], "takes no --arg"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert _exit_status(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith(f"fnnet {argv[0]}: ")


def _exit_status(argv: list[str]) -> int:
    """``main(argv)``, or the status argparse exits with on a flag it cannot parse."""
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def test_graph_draws_an_example_and_a_users_function(tmp_path, capsys):
    assert main(["graph", "apple", "--out", str(tmp_path / "apple.dot")]) == 0
    out = capsys.readouterr().out
    assert "tax" in out and "650" in out and f"wrote {tmp_path / 'apple.dot'}" in out
    assert "<715<BR/>" in (tmp_path / "apple.dot").read_text()
    source = tmp_path / "mine.py"
    source.write_text(textwrap.dedent("""
        import jax.numpy as jnp

        def f(x, w):
            return jnp.sum(jnp.tanh(x * w))

        def broken(x):
            return x.no_such_method()
    """))
    assert main(["graph", f"{source}:f", "--arg", "x=[1.0, 2.0]", "--arg", "w=[0.5, 0.25]",
                 "--out", str(tmp_path / "f.svg")]) == 0
    assert "<svg" in (tmp_path / "f.svg").read_text()[:500]
    assert main(["graph", f"{source}:broken", "--arg", "1.0"]) == 1
    assert "error: tracing" in capsys.readouterr().out


def test_help_explains_both_commands(capsys):
    for command, words in [("check-layer", "a class count other than 10"),
                           ("graph", "the gradient of the output")]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert words in " ".join(capsys.readouterr().out.split())
