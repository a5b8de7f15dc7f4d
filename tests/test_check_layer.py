"""fnnet.check_layer: the books' correct layer classes pass (a warning where the book's own
code mutates dout or clips the loss); each documented bug, retyped in tests/buggy_layers.py,
is caught with the right diagnosis; the loader and the CLI entry function."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import fnnet
import tests.book2_layers as book2
import tests.book_layers as book1
import tests.buggy_layers as buggy
from fnnet.check import LayerSpecError, check_layer, check_layer_main, load_layer_class

TESTS = Path(__file__).parent
RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4))
W, B = RNG.standard_normal((4, 5)), RNG.standard_normal(5)
LOGITS = 2 * RNG.standard_normal((4, 10))
LABELS = RNG.integers(0, 10, size=4)
IDX = np.array([1, 4, 1, 0, 6, 4])  # 1 and 4 repeat
TABLE = RNG.standard_normal((7, 3))


def _correct():
    return {
        "book1 Sigmoid": (book1.Sigmoid(), (X,)),
        "book1 Affine": (book1.Affine(W.copy(), B.copy()), (X,)),
        "book1 MulLayer": (book1.MulLayer(), (X, RNG.standard_normal((3, 4)))),
        "book1 AddLayer": (book1.AddLayer(), (X, RNG.standard_normal((3, 4)))),
        "book2 MatMul": (book2.MatMul(W.copy()), (X,)),
        "book2 Affine": (book2.Affine(W.copy(), B.copy()), (X,)),
        "book2 Softmax": (book2.Softmax(), (LOGITS,)),
        "book2 SoftmaxWithLoss": (book2.SoftmaxWithLoss(), (LOGITS, LABELS)),
        "book2 SigmoidWithLoss": (book2.SigmoidWithLoss(),
                                  (RNG.standard_normal(6), RNG.integers(0, 2, 6))),
        "book2 Embedding": (book2.Embedding(TABLE.copy()), (IDX,)),
        "book2 RNN": (book2.RNN(RNG.standard_normal((3, 4)), RNG.standard_normal((4, 4)),
                                RNG.standard_normal(4)),
                      (RNG.standard_normal((2, 3)), RNG.standard_normal((2, 4)))),
        "book2 GRU": (book2.GRU(RNG.standard_normal((3, 6)), RNG.standard_normal((2, 6)),
                                RNG.standard_normal(6)),
                      (RNG.standard_normal((2, 3)), RNG.standard_normal((2, 2)))),
        "book2 EmbeddingDot": (book2.EmbeddingDot(TABLE.copy()),
                               (RNG.standard_normal((4, 3)), np.array([2, 5, 2, 0]))),
        "book2 LSTM": (book2.LSTM(RNG.standard_normal((3, 8)), RNG.standard_normal((2, 8)),
                                  RNG.standard_normal(8)),
                       (RNG.standard_normal((2, 3)), RNG.standard_normal((2, 2)),
                        RNG.standard_normal((2, 2)))),
    }


@pytest.mark.parametrize("name", list(_correct()))
def test_the_books_correct_classes_pass(name):
    layer, inputs = _correct()[name]
    report = check_layer(layer, *inputs)
    assert report.ok, report.format_table()
    # the books' losses clip log(y + 1e-7): a warning at logits of ±1e3, nothing else
    assert all(w.trial == "large logits" for w in report.warnings), report.format_table()
    assert not report.warnings or name.endswith("WithLoss")
    assert report.leaves and all(leaf.numerical.entries > 0 for leaf in report.leaves)
    if "MulLayer" not in name and "AddLayer" not in name:  # the others are fnnet ops
        assert report.op is not None, report.format_table()
        assert not any("could not be compared" in n or "has no op" in n for n in report.notes)
        assert all(leaf.autodiff is not None and leaf.autodiff.ok for leaf in report.leaves)


def test_the_books_relu_mutates_dout_a_warning_not_a_failure():
    report = check_layer(book1.Relu(), X)
    assert report.ok
    (warning,) = report.warnings
    assert warning.trial == "dout unchanged"
    assert "of 12 entries of dout changed in place" in warning.got
    assert "dout[mask] = 0" in warning.hint and warning.line.startswith("warn dout unchanged")


def test_the_books_clipped_loss_at_large_logits_is_a_warning():
    report = check_layer(book1.SoftmaxWithLoss(), LOGITS, LABELS)
    assert report.ok, report.format_table()
    (warning,) = report.warnings
    assert warning.trial == "large logits" and "clips log(y + 1e-7)" in warning.expected
    assert report.op == "fnnet.manual.softmax_cross_entropy"
    # the gradient matches fnnet's hand rule as well as central differences
    (dx,) = report.leaves
    assert dx.path == "dx" and dx.autodiff.ok and dx.numerical.ok


def test_parameters_are_the_callers_own_again_after_the_check():
    W1, B1 = W.copy(), B.copy()
    layer = book2.Affine(W1, B1)
    check_layer(layer, X)
    assert layer.params[0] is W1 and layer.params[1] is B1
    np.testing.assert_array_equal(W1, W)
    np.testing.assert_array_equal(B1, B)
    float32 = book1.Affine(W.astype(np.float32), B.astype(np.float32))
    assert check_layer(float32, X.astype(np.float32)).ok  # checked in float64 copies
    assert float32.W.dtype == np.float32


BUGS = {
    # fixture: (layer, inputs, trial, words in the problem line)
    "sigmoid 1/(1+log(-x))": (buggy.SigmoidLogTypo(), (X,), "forward",
                              "it computes 1/(1 + log(−x)): the published typo"),
    "sigmoid ignores dout": (buggy.SigmoidIgnoresDout(), (X,), "gradient",
                             "ignores the cotangent"),
    "softmax without the max": (buggy.SoftmaxNoMax(), (LOGITS,), "large logits",
                                "subtract the row max before exp"),
    "softmax over the whole batch": (buggy.SoftmaxWholeBatch(), (LOGITS,), "forward",
                                     "normalised over the whole batch, not per row"),
    "one-hot fixed at 10 classes": (buggy.SoftmaxWithLossFixed10(), (LOGITS, LABELS),
                                    "3 classes", "a class count fixed at 10"),
    "backward ignores dout": (buggy.SoftmaxWithLossIgnoresDout(), (LOGITS, LABELS),
                              "dout × 2.5", "backward ignores dout (assumes dout = 1)"),
    "divided by N twice": (buggy.SoftmaxWithLossTwiceDivided(), (LOGITS, LABELS), "gradient",
                           "4× too small, exactly 1/N (x.shape[0]) = 1/4: divided by the "
                           "batch size twice?"),
    "batch size fixed": (buggy.SoftmaxWithLossBatchFixed(), (LOGITS, LABELS), "batch size 6",
                         "right at batch size 4, wrong at 6: a batch size fixed"),
    "dW transposed": (buggy.AffineTransposedDW(W.copy(), B.copy()), (X,), "gradient",
                      "dW of shape (5, 4); expected shape (4, 5) — has shape (5, 4) where "
                      "(4, 5) is expected: transposed?"),
    "db not summed": (buggy.AffineUnsummedDb(W.copy(), B.copy()), (X,), "gradient",
                      "not summed over the axes the input was broadcast along"),
    "embedding overwrites repeats": (buggy.EmbeddingOverwrites(TABLE.copy()), (IDX,),
                                     "gradient", "repeated indices must accumulate"),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_documented_bug_is_caught_with_its_diagnosis(bug):
    layer, inputs, trial, words = BUGS[bug]
    report = check_layer(layer, *inputs)
    assert not report.ok
    lines = [p.line for p in report.failures if p.trial == trial]
    assert any(words in line for line in lines), report.format_table()
    assert f"FAIL {trial}: tried " in report.format_table()


def test_a_problem_line_says_what_was_tried_what_came_out_and_what_was_expected():
    report = check_layer(buggy.SoftmaxWithLossFixed10(), LOGITS, LABELS)
    (problem,) = [p for p in report.failures if p.trial == "3 classes"]
    assert problem.tried == "forward(x (4, 3), t (4,) ints in [1, 2])"
    assert problem.got.startswith("ValueError: operands could not be broadcast together")
    assert problem.expected == "an output"


def test_report_serialises_and_names_what_was_tried():
    report = check_layer(buggy.SoftmaxWithLossTwiceDivided(), LOGITS, LABELS)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["layer"] == "SoftmaxWithLossTwiceDivided"
    assert [t.split(":")[0] for t in data["trials"]] == [
        "gradient", "batch size 6", "3 classes", "large logits", "dout × 2.5"]
    assert any(n.startswith("SoftmaxWithLossTwiceDivided is checked as the book's "
                            "SoftmaxWithLoss") for n in data["notes"])
    assert report.format_table().splitlines()[-1].startswith("FAIL: ")


def test_bad_layers_and_inputs_raise():
    with pytest.raises(TypeError, match="must have a backward"):
        check_layer(object.__new__(type("OnlyForward", (), {"forward": lambda s, x: x})), X)
    with pytest.raises(TypeError, match=r"Affine\.forward takes 1 inputs"):
        check_layer(book1.Affine(W, B), X, X)
    with pytest.raises(TypeError, match="pass the inputs of forward"):
        check_layer(book1.Affine(W, B))


# --- loading FILE.py:CLASS and the entry function of `fnnet check-layer` -----------------


def test_load_layer_class_imports_the_file_with_its_folder_on_the_path():
    cls = load_layer_class(f"{TESTS / 'buggy_layers.py'}:EmbeddingOverwrites")
    assert cls.__name__ == "EmbeddingOverwrites" and callable(cls.backward)


@pytest.mark.parametrize(("spec", "words"), [
    ("layers.py", "expected FILE.py:CLASS"),
    ("no_such_file.py:Affine", "no such file"),
    (f"{TESTS / 'book_layers.py'}:Nope", "has no 'Nope'; it defines AddLayer, Affine"),
    (f"{TESTS / 'book_layers.py'}:softmax", "is a function, not a class"),
    (f"{TESTS / 'test_check_layer.py'}:Path", "Path has no forward() method"),
])
def test_load_layer_class_usage_errors_name_the_problem(spec, words):
    with pytest.raises(LayerSpecError, match=re.escape(words)):
        load_layer_class(spec)


def test_check_layer_main_returns_0_when_all_pass_1_otherwise():
    printed = []
    assert check_layer_main(f"{TESTS / 'book2_layers.py'}:Affine", print_fn=printed.append) == 0
    assert printed[0].splitlines()[-1] == "OK"
    assert check_layer_main(f"{TESTS / 'buggy_layers.py'}:SoftmaxWithLossFixed10",
                            print_fn=printed.append) == 1
    assert "a class count fixed at 10" in printed[1]


def test_check_layer_main_builds_unknown_classes_without_arguments_only(tmp_path):
    printed = []
    assert check_layer_main(f"{TESTS / 'book_layers.py'}:MulLayer", shape=(2, 3),
                            print_fn=printed.append) == 0
    source = tmp_path / "scale.py"
    source.write_text("class Scale:\n    def __init__(self, c):\n        self.c = c\n"
                      "    def forward(self, x):\n        return self.c * x\n"
                      "    def backward(self, dout):\n        return self.c * dout\n")
    with pytest.raises(LayerSpecError, match=r"needs constructor arguments \('c',\)"):
        check_layer_main(f"{source}:Scale", print_fn=printed.append)
    with pytest.raises(LayerSpecError, match="must be one of the book's classes fnnet knows"):
        check_layer_main(f"{source}:Scale", name="Mine", print_fn=printed.append)


def test_exported_lazily_from_fnnet():
    assert fnnet.check_layer is check_layer
