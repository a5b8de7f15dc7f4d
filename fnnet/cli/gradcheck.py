"""``fnnet gradcheck``: the book's chapter-5 gradient check of a whole net, per leaf."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fnnet.cli import common, flags


def add_parser(commands: Any) -> None:
    """The ``gradcheck`` subcommand on ``commands`` (the subparsers of ``fnnet``)."""
    from fnnet.data import DATASETS
    from fnnet.nets import SAMPLED_NETS
    from fnnet.precision import MATMUL_PRECISIONS

    check = commands.add_parser(
        "gradcheck", help="compare manual, autodiff and numerical gradients per parameter",
        description="The book's chapter-5 gradient check, done properly: for every parameter "
                    "leaf of the net, the hand-derived gradient against jax.grad of the "
                    "reference and against central differences (in float64), on real samples "
                    "(the nets over word ids: on a batch they draw themselves). Each leaf is "
                    "ok, FAIL, zero (a gradient zero by construction, within the stated "
                    "absolute tolerance) or not checked (nothing numerically "
                    "comparable). Exits 1 if any leaf is out of tolerance.",
        formatter_class=common.DefaultsFormatter)
    model = flags.add_net_flags(check, {name: f"{spec.summary} (no --dataset)"
                                        for name, spec in SAMPLED_NETS.items()})
    for flag, option, meaning in SAMPLED_FLAGS:
        model.add_argument(flag, type=common.positive_int, default=None, dest=option,
                           help=f"{meaning} (nets over word ids; default: the net's small "
                                f"check size)")
    check.add_argument("--dataset", choices=DATASETS, default="digits",
                       help="the training set the checked samples are drawn from")
    check.add_argument("--data-dir", type=Path, default=None,
                       help="directory holding the IDX files (see fnnet train --help)")
    check.add_argument("--no-download", action="store_true",
                       help="never download missing MNIST/Fashion-MNIST files")
    check.add_argument("--batch-size", type=common.positive_int, default=3,
                       help="number of real training samples in the checked batch")
    check.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="dtype of params and both backward passes (the numerical "
                            "reference is always float64)")
    check.add_argument("--max-entries", type=common.positive_int, default=64,
                       help="entries per leaf checked numerically (a seeded random subset)")
    check.add_argument("--seed", type=common.seed, default=0,
                       help="seeds the sample choice, the init, the dropout mask and the "
                            "numerically checked entries")
    check.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                       help="float32 matmul precision of the three gradients; highest on every "
                            "device, so GPUs' TF32 does not make correct rules look wrong")
    check.add_argument("--json", type=Path, default=None, metavar="PATH",
                       help="also write the report as JSON")
    check.set_defaults(handler=run_gradcheck)


SAMPLED_FLAGS = (("--vocab-size", "vocabulary_size", "vocabulary size V"),
                 ("--wordvec", "wordvec_size", "word vector size D"),
                 ("--time-size", "time_size", "time steps T of the batch"))
"""The size flags of the nets that bring their own batch: (flag, builder keyword, meaning);
``--hidden`` (one value) and ``--dropout`` map to ``hidden_size`` and ``dropout``."""


def sampled_net_options(args: argparse.Namespace) -> dict[str, Any]:
    """The builder options a :data:`fnnet.nets.SAMPLED_NETS` net gets from the flags given,
    each checked to apply to it (the rest stay at its check sizes)."""
    from fnnet.nets import SAMPLED_NETS

    takes = SAMPLED_NETS[args.net].options
    for flag, given in (("--init", args.init is not None), ("--batchnorm", args.batchnorm),
                        ("--activation", args.activation != "relu"),
                        ("--dataset", args.dataset != "digits"),
                        ("--data-dir", args.data_dir is not None),
                        ("--no-download", args.no_download)):
        if given:
            raise common.UsageError(f"{flag} does not apply to --net {args.net} (it brings its "
                                    f"own batch)" if flag.startswith(("--data", "--no"))
                                    else f"{flag} does not apply to --net {args.net}")
    if args.hidden is not None and len(args.hidden) != 1:
        raise common.UsageError(f"--net {args.net} takes one --hidden; got {args.hidden}")
    given = {flag: (option, getattr(args, option)) for flag, option, _ in SAMPLED_FLAGS}
    given["--hidden"] = ("hidden_size", args.hidden[0] if args.hidden else None)
    given["--dropout"] = ("dropout", args.dropout)
    options = {}
    for flag, (option, value) in given.items():
        if value is None:
            continue
        if option not in takes:
            raise common.UsageError(f"{flag} does not apply to --net {args.net} (it takes "
                                    f"{', '.join(sorted(takes))})")
        options[option] = value
    return options


def run_gradcheck(args: argparse.Namespace) -> int:
    """The handler of ``fnnet gradcheck`` (exit status: 1 when a leaf is out of tolerance)."""
    from fnnet.compiles import count_compilations

    with count_compilations() as compiles:
        return _run_gradcheck(args, common.Clock(compiles))


def _run_gradcheck(args: argparse.Namespace, clock: common.Clock) -> int:
    from fnnet.data import CLASSES, INPUT_SIZES
    from fnnet.gradcheck import gradcheck_model
    from fnnet.nets import SAMPLED_NETS

    common.check_writable("--json", args.json)
    if args.net in SAMPLED_NETS:
        return _run_sampled(args, clock)
    for flag, option, _ in SAMPLED_FLAGS:
        if getattr(args, option) is not None:
            raise common.UsageError(f"{flag} applies to the nets over word ids "
                                    f"({', '.join(SAMPLED_NETS)}), not --net {args.net}")
    flags.check_data_flags(args)
    options = flags.net_options(args)
    if "hidden" in options:
        # float64 params, two gradients, and the numerical check's 2 x 32 perturbed copies.
        common.check_memory([INPUT_SIZES[args.dataset], *args.hidden, CLASSES[args.dataset]],
                            args.batch_size, 8, 70)
    with clock.part("check"):  # data, init and the three gradients, less their compiling
        report = gradcheck_model(
            net=args.net, dataset=args.dataset, batch_size=args.batch_size, dtype=args.dtype,
            seed=args.seed, data_dir=None if args.data_dir is None else str(args.data_dir),
            max_entries=args.max_entries, download=not args.no_download,
            matmul_precision=args.matmul_precision, **options)
    shape = (f"{'-'.join(map(str, args.hidden))} hidden, {args.activation}, "
             if "hidden" in options else "")
    extras = "".join([", batchnorm" if args.batchnorm else "",
                      f", dropout {args.dropout} (a fixed key)" if args.dropout else ""])
    print(f"fnnet gradcheck: {args.net} ({shape}init {args.init}{extras}) on "
          f"{args.batch_size} {args.dataset} samples, {args.dtype}")
    return _report(args, report, clock)


def _run_sampled(args: argparse.Namespace, clock: common.Clock) -> int:
    from fnnet.gradcheck import gradcheck_model
    from fnnet.nets import SAMPLED_NETS

    options = sampled_net_options(args)
    with clock.part("check"):
        report = gradcheck_model(net=args.net, batch_size=args.batch_size, dtype=args.dtype,
                                 seed=args.seed, max_entries=args.max_entries,
                                 matmul_precision=args.matmul_precision, **options)
    sizes = ", ".join(f"{k} {v}" for k, v in {**SAMPLED_NETS[args.net].options,
                                               **options}.items())
    print(f"fnnet gradcheck: {args.net} ({sizes}) on a batch of {args.batch_size} sampled by "
          f"the net (seed {args.seed}), {args.dtype}")
    return _report(args, report, clock)


def _report(args: argparse.Namespace, report: Any, clock: common.Clock) -> int:
    from fnnet.results import environment, write_json

    print(report.format_table())
    if args.json is not None:
        write_json(args.json, {"settings": common.settings(args), "report": report.to_dict(),
                               "time": clock.summary(), "environment": environment()})
    print(clock.line())
    if not report.ok:
        print(f"fnnet gradcheck: out of tolerance: {', '.join(report.failures)}",
              file=sys.stderr)
        return common.EXIT_FAILURE
    return 0
