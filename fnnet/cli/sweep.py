"""``fnnet sweep``: the book's random hyperparameter search (§6.5), all trials in one program.

Exit statuses as ``fnnet train`` (0 done, 1 data/disk, 2 usage, 130 Ctrl-C); a trial that
diverges is reported as such and does not stop the sweep.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from fnnet.cli import common, flags
from fnnet.cli.common import UsageError

BOOK_LR = "1e-6:1e-2"
BOOK_WEIGHT_DECAY = "1e-8:1e-4"


def _range(low_limit: float, what: str):
    """An argparse type for ``LO:HI`` (log-uniform) or one number (fixed)."""

    def parse(text: str) -> tuple[float, float]:
        from fnnet.sweep import log_range

        parts = text.split(":")
        try:
            if len(parts) not in (1, 2) or not all(p.strip() for p in parts):
                raise ValueError
            bounds = [float(p) for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected LO:HI (log-uniform) or one number, got {text!r}") from None
        low, high = bounds[0], bounds[-1]
        if not all(low_limit <= b <= common.FLOAT32_MAX for b in bounds):
            raise argparse.ArgumentTypeError(
                f"bounds must be in [{low_limit:.3g}, {common.FLOAT32_MAX:.3g}], got {text}")
        try:
            return log_range(what, (low, high))
        except ValueError as error:  # argparse names the flag already
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{what}: ")) from None

    return parse


def _as_range(parser: argparse.ArgumentParser, flag: str, type_, default: str, help: str) -> None:
    """Turn a flag made by a shared builder (``--lr``, ``--weight-decay``) into a range flag."""
    action = parser._option_string_actions[flag]
    action.type, action.default, action.metavar, action.help = type_, default, "LO:HI", help


def add_parser(commands: Any) -> None:
    """The ``sweep`` subcommand on ``commands`` (the subparsers of ``fnnet``)."""
    sweep = commands.add_parser(
        "sweep", help="random hyperparameter search: many models trained at once (jax.vmap)",
        description="The book's §6.5 search: train --trials models with learning rates and "
                    "weight decays drawn log-uniformly, many at once in one vmapped program "
                    "(--max-parallel at a time, sharded over --devices), judge them on a "
                    "held-out validation set and report the test set alongside. Defaults are "
                    "the book's ranges. Without --max-parallel, --devices or --sequential the "
                    "sweep chooses: it trains the first trial alone and, from its compile and "
                    "training times, trains the rest one at a time or in chunks, whichever "
                    "it predicts faster, compile included (the 'plan:' line says which).",
        formatter_class=common.DefaultsFormatter)
    flags.add_data_flags(sweep)
    flags.add_model_flags(sweep)
    opt = flags.add_optimizer_flags(sweep)
    _as_range(sweep, "--lr", _range(common.FLOAT32_TINY, "--lr"), BOOK_LR,
              "learning rate: LO:HI draws 10^U(log10 LO, log10 HI) per trial; one number "
              "fixes it")
    _as_range(sweep, "--weight-decay", _range(0.0, "--weight-decay"), BOOK_WEIGHT_DECAY,
              "λ of the book's ½·λ·ΣW²: LO:HI log-uniform per trial; one number fixes it "
              "(0: none)")
    opt.add_argument("--epochs", type=common.positive_int, default=50,
                     help="epochs every trial trains (the book's §6.5: 50)")
    search = sweep.add_argument_group("search")
    search.add_argument("--trials", type=common.positive_int, default=100,
                        help="number of trials (models)")
    search.add_argument("--seed", type=common.seed, default=0,
                        help="seeds the trials' draws, their own seeds and the split")
    flags.add_split_flags(sweep)
    sweep.set_defaults(validation=0.2)
    search.add_argument("--max-parallel", type=common.positive_int, default=None, metavar="K",
                        help="train at most K trials at once (default: all on a GPU; on a "
                             "CPU, 4 per device, the fastest for the book's §6.5 search on a "
                             "2-core CPU); giving it skips the choice of plan")
    search.add_argument("--sequential", action="store_true",
                        help="one trial at a time through the same code (the baseline)")
    search.add_argument("--devices", type=common.device_count, default=None, metavar="N|all",
                        help="shard the trials over N devices (default: all, at most one "
                             "per trial; on a CPU, JAX is given one device per core, up to 8, "
                             "unless XLA_FLAGS or JAX_NUM_CPU_DEVICES says otherwise); giving "
                             "it skips the choice of plan")
    run = sweep.add_argument_group("run")
    run.add_argument("--out", type=Path, default=None,
                     help="JSON: settings, every trial (η, λ, seed, accuracies, curves, and "
                          "the fnnet train arguments reproducing it), model-steps/s")
    run.add_argument("--plot", type=Path, default=None,
                     help="PNG: validation curves of the best trials (the book's figure "
                          "6-24) and η × λ coloured by validation accuracy")
    run.add_argument("--eval-train", type=common.positive_int, default=None, metavar="N",
                     help="evaluate each trial's training loss and accuracy on a fixed sample "
                          "of N training examples each epoch (default: all of them)")
    run.add_argument("--top", type=common.positive_int, default=10,
                     help="rows of the table of best trials (and panels of --plot, up to 20)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="do not use JAX's persistent compilation cache")
    sweep.set_defaults(handler=run_sweep, process_setup=split_cpu)


def _bounds_text(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"{low:g}" if low == high else f"{low:g}:{high:g} (log-uniform)"


def train_args(args: argparse.Namespace, trial: Any) -> list[str]:
    """The ``fnnet train`` arguments that train ``trial`` alone, as the sweep trained it."""
    from fnnet.optim import HYPERPARAMETERS

    argv = ["--dataset", args.dataset]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    argv += ["--net", args.net, *[a for h in args.hidden or () for a in ("--hidden", str(h))],
             "--activation", args.activation, "--init", args.init, "--grads", args.grads,
             "--optimizer", args.optimizer, "--lr", repr(trial.lr),
             "--weight-decay", repr(trial.weight_decay)]
    if args.batchnorm:
        argv.append("--batchnorm")
    if args.dropout is not None:
        argv += ["--dropout", repr(args.dropout)]
    for name in HYPERPARAMETERS:
        if getattr(args, name) is not None:
            argv += [f"--{name.replace('_', '-')}", repr(getattr(args, name))]
    if args.nesterov_form is not None:
        argv += ["--nesterov-form", args.nesterov_form]
    argv += ["--batch-size", str(args.batch_size), "--sampling", args.sampling,
             "--epochs", str(args.epochs), "--seed", str(trial.seed)]
    if args.train_size is not None:
        argv += ["--train-size", str(args.train_size)]
    return [*argv, "--validation", repr(args.validation), "--split-seed", str(args.seed)]


def _finite(values: Any) -> Any:
    """Floats for JSON, NaN/inf as null."""
    if isinstance(values, list | tuple):
        return [_finite(v) for v in values]
    value = float(values)
    return value if math.isfinite(value) else None


def split_cpu() -> None:
    """The command's process-wide setup (run by ``fnnet`` as a program, not by ``main(argv)``
    inside another program): JAX gets one CPU device per core, so trials run one core each."""
    from fnnet.parallel import one_cpu_device_per_core

    one_cpu_device_per_core()


def run_sweep(args: argparse.Namespace) -> int:
    """The handler of ``fnnet sweep`` (exit status)."""
    from fnnet.compiles import count_compilations

    with count_compilations() as compiles:
        return _run_sweep(args, common.Clock(compiles))


def _run_sweep(args: argparse.Namespace, clock: common.Clock) -> int:
    import jax

    from fnnet.data import load_dataset
    from fnnet.results import environment, write_json
    from fnnet.sweep import best_trials, chunk_plan, default_max_parallel, sample_trials, sweep

    options = flags.net_options(args)
    flags.check_data_flags(args)
    adaptive = args.max_parallel is None and args.devices is None and not args.sequential
    if args.sequential:
        if args.max_parallel not in (None, 1):
            raise UsageError("--sequential trains one trial at a time; leave out "
                             f"--max-parallel {args.max_parallel}")
        if args.devices not in (None, 1):
            raise UsageError("--sequential trains one trial at a time on one device; "
                             f"leave out --devices {args.devices}")
        args.max_parallel = 1
    given = flags.hyperparams_from_args(args)
    available = jax.devices()
    if args.devices is None:  # every device, but not more than one per trial of a chunk
        count = 1 if args.sequential else min(len(available), args.trials,
                                              args.max_parallel or args.trials)
    else:
        count = len(available) if args.devices == "all" else args.devices
    if count > len(available):
        raise UsageError(f"--devices {args.devices}: JAX sees only {len(available)} "
                         f"devices ({available})")
    devices = count if count > 1 else None
    platform = available[0].platform
    max_parallel = args.max_parallel or default_max_parallel(platform, count)
    if max_parallel is not None and max_parallel < count:
        raise UsageError(f"--max-parallel {max_parallel} is less than --devices {count}: "
                         f"each device trains whole trials")
    chunks, size = chunk_plan(args.trials, max_parallel, count)
    if args.plot is not None:
        common.require_matplotlib()
    common.check_writable("--out", args.out)
    common.check_writable("--plot", args.plot)
    if not args.no_compile_cache:
        common.enable_compile_cache()
    with clock.part("data"):
        data = flags.data_for_net(args.net, load_dataset(args.dataset, data_dir=args.data_dir,
                                                         download=not args.no_download,
                                                         progress=not args.no_progress))
        args.split_seed = args.seed
        split, test_set = flags.held_out_split(args, data)
    if args.batch_size > len(split.x_train):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the training "
                         f"part of the split ({len(split.x_train)} examples)")
    if "hidden" in options:  # the MLPs' size is the user's to choose (conv nets: the book's)
        common.check_memory([split.x_train.shape[1], *args.hidden, data.num_classes],
                            size * max(args.batch_size, min(2000, len(split.x_train))), 4,
                            6 * size)
    model = flags.model_from_args(_with(args, weight_decay=0.0), split, options)
    trials = sample_trials(args.trials, lr=args.lr, weight_decay=args.weight_decay,
                           seed=args.seed)
    steps = len(split.x_train) // args.batch_size
    where = f"{count} {platform} device{'s' * (count > 1)}"
    how = (f"the first trial alone, then the rest one at a time or in chunks of {size} on "
           f"{where}, whichever is predicted faster" if adaptive and size > 1 else
           f"{chunks} chunk{'s' * (chunks > 1)} of {size} on {where}")
    print(f"fnnet sweep: {args.dataset} ({len(split.x_train)} train / {len(split.x_test)} "
          f"validation / {len(test_set[0])} test), {flags.net_line(args, split)}, "
          f"grads={args.grads}, optimizer={args.optimizer}, "
          f"lr {_bounds_text(args.lr)}, weight decay {_bounds_text(args.weight_decay)}; "
          f"{args.trials} trials × {args.epochs} epochs × {steps} steps: {how}", flush=True)
    print(common.data_line(data.files), flush=True)
    result = sweep(model, trials, (split.x_train, split.t_train), (split.x_test, split.t_test),
                   epochs=args.epochs, optimizer=args.optimizer, hyperparams=given,
                   test=test_set, batch_size=args.batch_size, sampling=args.sampling,
                   max_parallel=max_parallel, devices=devices, adaptive=adaptive,
                   eval_train=args.eval_train, progress=not args.no_progress)
    clock.add("training", result.train_s)
    summary = {"trials": args.trials, "epochs": args.epochs, "steps_per_epoch": steps,
               "model_steps": result.model_steps, "train_s": result.train_s,
               "model_steps_per_s": result.model_steps_per_s, "chunks": result.chunks,
               "chunk_size": result.chunk_size, "max_parallel": max_parallel,
               "devices": result.plan["devices"], "available_devices": len(available),
               "platform": platform, "plan": result.plan,
               "diverged": int(result.diverged.sum()),
               "best": int(result.ranking()[0])}
    print(format_table(best_trials(result, args.top)))
    print(f"plan: {_plan_text(result.plan, platform)}")
    print(f"done: {args.trials} trials, {result.model_steps} model steps in "
          f"{result.train_s:.2f} s of training and per-epoch evaluation "
          f"({result.model_steps_per_s:,.0f} model-steps/s)"
          + (f"; {summary['diverged']} diverged" if summary["diverged"] else ""))
    if args.plot is not None:
        from fnnet.plots import plot_sweep

        with clock.part("outputs"):
            plot_sweep(result, args.plot, count=min(args.top, 20),
                       title=f"{args.dataset}, {flags.net_line(args, split)}, "
                             f"{args.optimizer}, {args.trials} trials")
    if args.out is not None:
        records = []
        for k, trial in enumerate(trials):
            records.append({
                "index": k, "lr": trial.lr, "weight_decay": trial.weight_decay,
                "seed": trial.seed, "val_acc": _finite(result.val_acc()[k]),
                "val_loss": _finite(result.curves["val_loss"][k, -1]),
                "test_acc": _finite(result.test_acc[k]),
                "test_loss": _finite(result.test_loss[k]), "diverged": bool(result.diverged[k]),
                "curves": {name: _finite(result.curves[name][k].tolist())
                           for name in result.curves},
                "train_args": train_args(args, trial)})
        settings = common.settings(args)  # lr, weight_decay: [low, high]
        summary["time"] = clock.summary()
        summary["compile_s"], summary["wall_s"] = (summary["time"]["compile_s"],
                                                   summary["time"]["wall_s"])
        write_json(args.out, {
            "status": "complete", "settings": settings,
            "data": {"files": list(data.files), "train": len(split.x_train),
                     "validation": len(split.x_test), "test": len(test_set[0])},
            "summary": summary, "trials": records, "environment": environment()})
    print(clock.line())
    return 0


def _plan_text(plan: dict[str, Any], platform: str) -> str:
    """How the trials were trained, and, when the sweep chose, by which prediction."""
    where = f"{plan['devices']} {platform} device{'s' * (plan['devices'] > 1)}"
    text = ("one trial at a time" if plan["mode"] == "sequential" else
            f"chunks of {plan['chunk_size']} trials on {where}")
    if "predicted_vmapped_s" in plan:
        text += (f" (chosen after the first trial: the rest predicted "
                 f"{plan['predicted_sequential_s']:.2f} s one at a time, "
                 f"{plan['predicted_vmapped_s']:.2f} s in chunks, compile included)")
    return text


def _with(args: argparse.Namespace, **changes: Any) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def format_table(rows: list[Any]) -> str:
    """The best trials as a text table (rank, trial, accuracies, η, λ, seed)."""
    lines = [f"{'rank':>4}  {'trial':>5}  {'val acc':>7}  {'test acc':>8}  {'lr':>9}  "
             f"{'weight decay':>12}  {'seed':>10}"]
    for rank, row in enumerate(rows, start=1):
        note = "  diverged" if row.diverged else ""
        lines.append(f"{rank:>4}  {row.index:>5}  {row.val_acc:>7.4f}  {row.test_acc:>8.4f}  "
                     f"{row.trial.lr:>9.3e}  {row.trial.weight_decay:>12.3e}  "
                     f"{row.trial.seed:>10}{note}")
    return "\n".join(lines)
