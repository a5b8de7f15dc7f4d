"""``fnnet check-layer FILE.py:CLASS``: a book-style NumPy layer class checked as such code
breaks (:func:`fnnet.check_layer`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fnnet.cli import common

_DESCRIPTION = """\
Check a layer class written as in the book (forward/backward methods; parameters as W, b
with dW, db after backward, or as params/grads lists): its backward against float64 central
differences of its own forward, for every input and parameter; for a class fnnet knows by its
name (Sigmoid, Relu, Affine, MatMul, Softmax, SoftmaxWithLoss, SigmoidWithLoss, Embedding,
RNN, LSTM, Convolution, Pooling, or a name starting with one) also against fnnet's op. Then
what breaks such code: a second batch size, a class count other than 10, logits of +-1e3,
dout scaled by 2.5, and whether backward changes the caller's dout (a warning). Each problem
is one line: what was tried, what came out, what was expected, and a diagnosis where the
error has a recognisable shape.

A class fnnet knows is built with the book's constructor arguments at small random sizes; any
other class must construct without arguments and gets inputs of --shape. Exit status: 0 all
checks pass (warnings allowed), 1 a check fails, 2 a usage error (no such file or class, a
class that cannot be built)."""


def _shape(text: str) -> tuple[int, ...]:
    """``3,4`` as ``(3, 4)``: positive integers separated by commas."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, "
                                         f"e.g. 3,4; got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, "
                                         f"e.g. 3,4; got {text!r}")
    return shape


def add_parser(commands: Any) -> None:
    """The ``check-layer`` subcommand on ``commands`` (the subparsers of ``fnnet``)."""
    check = commands.add_parser(
        "check-layer", help="check a book-style NumPy layer class (FILE.py:CLASS)",
        description=_DESCRIPTION, formatter_class=_Formatter)
    check.add_argument("spec", metavar="FILE.py:CLASS",
                       help="the Python file and the layer class in it, e.g. layers.py:Affine")
    check.add_argument("--as", dest="known", default=None, metavar="NAME",
                       help="check it as the book's class NAME (e.g. SoftmaxWithLoss) whatever "
                            "its own name")
    check.add_argument("--shape", type=_shape, default=None, metavar="N,D",
                       help="input shape for a class fnnet does not know (default 3,4)")
    check.add_argument("--labels", choices=("int", "onehot"), default="int",
                       help="the labels a loss layer's forward(x, t) gets: class indices or "
                            "one-hot rows")
    check.add_argument("--seed", type=common.seed, default=0,
                       help="seeds the parameters, inputs, dout and the trials")
    check.add_argument("--no-trials", action="store_true",
                       help="only the gradient check at the first inputs (no second batch "
                            "size, class count, large logits or scaled dout)")
    check.add_argument("--json", type=Path, default=None, metavar="PATH",
                       help="also write the report as JSON")
    check.set_defaults(handler=run_check_layer)


class _Formatter(common.DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the description's paragraphs kept as written."""


def run_check_layer(args: argparse.Namespace) -> int:
    """The handler of ``fnnet check-layer`` (exit status: 1 when a check fails)."""
    from fnnet.check import LayerSpecError, check_layer_file
    from fnnet.results import environment, write_json

    common.check_writable("--json", args.json)
    try:
        report = check_layer_file(args.spec, name=args.known, shape=args.shape,
                                  labels=args.labels, seed=args.seed,
                                  trials=not args.no_trials)
    except LayerSpecError as error:
        raise common.UsageError(str(error)) from None
    print(report.format_table())
    if args.json is not None:
        write_json(args.json, {"settings": common.settings(args), "report": report.to_dict(),
                               "environment": environment()})
    if not report.ok:
        print(f"fnnet check-layer: {len(report.failures)} problem"
              f"{'s' * (len(report.failures) != 1)} in {report.layer}", file=sys.stderr)
        return common.EXIT_FAILURE
    return 0
