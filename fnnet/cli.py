"""The ``fnnet`` command (also ``python -m fnnet``).

``fnnet train`` trains the book's two-layer net (or a deeper MLP) with hand-derived or
automatic gradients, printing one line per epoch and a summary; ``--out`` and ``--plot``
save the history. Every failure is one line on stderr and an exit status:

* 0 done (also when a resumed run finds its checkpoint already covers the plan);
* 1 the data, a checkpoint or the disk failed (missing or corrupt files, a checkpoint
  directory locked by another run, a full disk: the message names the path), or a
  multi-host run could not join its coordinator in time; ``gradcheck``: out of tolerance;
* 2 a usage error: a bad flag value, or a model too large for the memory;
* 3 training diverged (a non-finite loss);
* 130 interrupted (Ctrl-C), at any point inside :func:`main` (a Ctrl-C while Python still
  imports the ``fnnet`` package itself, before ``main`` runs, is Python's own traceback);
  141 stdout was closed (``fnnet … | head -1``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_NON_FINITE = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by SIGPIPE
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # smallest normal float32: below it, --lr rounds away
SEED_MAX = 2**32 - 1  # jax.random.key keeps 32 bits of the seed without x64


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``fnnet train: error: …``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` except where the default is None (the help text says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)

    def _format_action(self, action: argparse.Action) -> str:
        """A flag without help text still shows its default (argparse skips it otherwise)."""
        if (action.help is None and action.option_strings and action.nargs != 0
                and action.default not in (None, argparse.SUPPRESS)):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


class UsageError(Exception):
    """A flag value that parses but makes no sense (reported as a usage error)."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _device_count(text: str) -> int | str:
    return text if text == "all" else _positive_int(text)


def _positive_float(text: str) -> float:
    value = float(text)
    if not FLOAT32_TINY <= value <= FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"must be a number in [{FLOAT32_TINY:.3g}, {FLOAT32_MAX:.3g}] (float32's normal "
            f"range), got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_MAX}], got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value <= FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 and <= {FLOAT32_MAX:.3g}, "
                                         f"got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def _open_fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text}")
    return value


def add_split_flags(parser: argparse.ArgumentParser) -> None:
    """``--train-size`` and ``--validation`` (the book's §6.5 split; train and sweep)."""
    split = parser.add_argument_group("held-out validation (the book's §6.5 split)")
    split.add_argument("--train-size", type=_positive_int, default=None, metavar="N",
                       help="use only the first N training examples (the book's §6.5: 500)")
    split.add_argument("--validation", type=_open_fraction, default=None, metavar="FRACTION",
                       help="hold out int(N·FRACTION) of the training examples, shuffled with "
                            "the split seed, as a validation set (the book's §6.5: 0.2)")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data-dir``, ``--no-download`` (shared by train and sweep)."""
    from fnnet.data import DATASETS

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default="digits",
                      help="digits is scikit-learn's bundled 8x8 set (no files needed); "
                           "mnist/fashion-mnist are read from IDX files (see --data-dir)")
    data.add_argument("--data-dir", type=Path, default=None,
                      help="directory holding the IDX files; searched before $FNNET_DATA, "
                           "~/.cache/fnnet/<name> and /usr/share/datasets/<name>")
    data.add_argument("--no-download", action="store_true",
                      help="never download missing MNIST/Fashion-MNIST files")


def add_net_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The net and its shape options (train, gradcheck and sweep)."""
    from fnnet.init import INITIALIZERS
    from fnnet.layers import ACTIVATIONS, NETS

    model = parser.add_argument_group("model")
    model.add_argument("--net", choices=NETS, default="two-layer",
                       help="two-layer = the book's TwoLayerNet; mlp = its MultiLayerNet "
                            "(MultiLayerNetExtend with --batchnorm/--dropout); simple-conv = "
                            "its chapter-7 SimpleConvNet; deep-conv = its chapter-8 "
                            "DeepConvNet (conv nets take the images as (1, H, W))")
    model.add_argument("--hidden", type=_positive_int, action="append", default=None,
                       metavar="SIZE",
                       help="hidden layer width; repeat for each layer of an mlp (default: 50; "
                            "two-layer and mlp only)")
    model.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                       help="the hidden layers' activation (conv nets: relu only)")
    model.add_argument("--init", choices=INITIALIZERS, default=None,
                       help="normal = N(0, 0.01²) (the book's), xavier = N(0, 1/fan_in), "
                            "he = N(0, 2/fan_in) (fan_in = C·FH·FW for kernels); default: he "
                            "for deep-conv, normal otherwise")
    model.add_argument("--batchnorm", action="store_true",
                       help="batch norm after each hidden affine (two-layer and mlp)")
    model.add_argument("--dropout", type=_fraction, default=None, metavar="RATE",
                       help="dropout after each hidden activation (two-layer and mlp; default "
                            "none), or deep-conv's dropout rate (default 0.5)")
    return model


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The net, its options, where its gradients come from and weight decay (train, sweep)."""
    from fnnet.layers import GRADS

    model = add_net_flags(parser)
    model.add_argument("--grads", choices=GRADS, default="manual",
                       help="manual = hand-derived custom_vjp rules, autodiff = jax.grad")
    model.add_argument("--weight-decay", type=_non_negative_float, default=0.0, metavar="λ",
                       help="the book's weight decay: ½·λ·ΣW² (weights, not biases) added to "
                            "the training loss")


def add_optimizer_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--optimizer``, ``--lr``, its hyperparameters and the batching (train and sweep)."""
    from fnnet.optim import HYPERPARAMETERS, OPTIMIZERS
    from fnnet.train import SAMPLINGS

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", metavar="NAME",
                     help="; ".join(f"{name}: {spec.summary}" for name, spec in
                                    OPTIMIZERS.items()))
    opt.add_argument("--lr", type=_positive_float, default=None,
                     help="learning rate (default: 0.1 for sgd, 0.001 for adam, 0.01 for the "
                          "others, as in the book)")
    for name in HYPERPARAMETERS:
        takers = [o for o, spec in OPTIMIZERS.items() if name in spec.hyperparams]
        default = OPTIMIZERS[takers[0]].hyperparams[name]
        opt.add_argument(f"--{name.replace('_', '-')}", type=_fraction, default=None,
                         help=f"in [0, 1), for {', '.join(takers)} (default: {default})")
    opt.add_argument("--batch-size", type=_positive_int, default=100,
                     help="examples per training step")
    opt.add_argument("--sampling", choices=SAMPLINGS, default="shuffle",
                     help="shuffle = a permutation per epoch, last partial batch dropped; "
                          "replacement = the book's batches drawn with replacement")
    return opt


def build_parser() -> argparse.ArgumentParser:
    from fnnet.data import DATASETS
    from fnnet.precision import MATMUL_PRECISIONS, PRECISIONS

    parser = _Parser(prog="fnnet", description=(
        "Train and check the 'Deep Learning from Scratch' networks, whose backward rules are "
        "written by hand (jax.custom_vjp) and checked against jax.grad."))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a two-layer net or MLP and report accuracy",
        description="Train the book's two-layer net (or an MLP) with a jit-compiled, scan-fused "
                    "training loop. Prints one line per epoch (mean loss, train/test accuracy, "
                    "steps/s) and a final summary.",
        formatter_class=_DefaultsFormatter)
    add_data_flags(train)
    add_model_flags(train)
    opt = add_optimizer_flags(train)
    length = opt.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive_int, default=None,
                        help="number of epochs (default 20 when --steps is not given)")
    length.add_argument("--steps", type=_positive_int, default=None,
                        help="number of steps instead (the last epoch may be partial)")
    opt.add_argument("--seed", type=_seed, default=0, help="seeds the init and the batch order")
    add_split_flags(train)
    train.add_argument("--split-seed", type=_seed, default=None,
                       help="seeds the --validation split (default: --seed); validation "
                            "accuracy is reported each epoch in place of the test accuracy, "
                            "and the test set is evaluated once at the end")
    run = train.add_argument_group("run")
    run.add_argument("--device", choices=("cpu", "gpu"), default=None,
                     help="restrict to this kind of device (default: JAX's default device)")
    run.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="default",
                     help="float32 matmul precision: default = the backend's (TF32 on NVIDIA "
                          "GPUs, ~1e-3 relative error), high = bf16x3, highest = full float32 "
                          "(CPUs: float32 always)")
    run.add_argument("--precision", choices=PRECISIONS, default="fp32",
                     help="bf16 = float32 master params and optimiser state, matmuls and "
                          "activations in bfloat16")
    scale = train.add_argument_group("many devices and hosts")
    scale.add_argument("--devices", type=_device_count, default=None, metavar="N|all",
                       help="data parallel over N devices (or all): params replicated, each "
                            "batch split across devices; --batch-size must divide by N")
    scale.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="multi-host: address of process 0 (jax.distributed.initialize)")
    scale.add_argument("--num-processes", type=_positive_int, default=None)
    scale.add_argument("--process-id", type=int, default=None)
    scale.add_argument("--distributed-timeout", type=_positive_int, default=60,
                       metavar="SECONDS",
                       help="multi-host: give up joining the coordinator after this long")
    ckpt = train.add_argument_group("checkpoints")
    ckpt.add_argument("--checkpoint-dir", type=Path, default=None,
                      help="save params, optimiser state, RNG key, step and settings here")
    ckpt.add_argument("--checkpoint-every", type=_positive_int, default=1, metavar="K",
                      help="save every K epochs (and at the end, and on Ctrl-C)")
    ckpt.add_argument("--resume", action="store_true",
                      help="continue from the newest complete checkpoint in --checkpoint-dir")
    run.add_argument("--out", type=Path, default=None,
                     help="write settings, per-epoch history and summary as JSON here")
    run.add_argument("--plot", type=Path, default=None,
                     help="write loss and accuracy curves as PNG here (needs matplotlib: "
                          "pip install 'fnnet[plot]')")
    run.add_argument("--log-every", type=_positive_int, default=1, metavar="K",
                     help="print the per-epoch line every K epochs (and for the last)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="do not use JAX's persistent compilation cache "
                          "(~/.cache/fnnet/jax, or $FNNET_COMPILE_CACHE)")
    train.set_defaults(handler=_train)

    check = commands.add_parser(
        "gradcheck", help="compare manual, autodiff and numerical gradients per parameter",
        description="The book's chapter-5 gradient check, done properly: for every parameter "
                    "leaf of the net, the hand-derived gradient against jax.grad of the "
                    "reference and against central differences (in float64), on real samples. "
                    "Exits 1 if any leaf is out of tolerance.",
        formatter_class=_DefaultsFormatter)
    add_net_flags(check)
    check.add_argument("--dataset", choices=DATASETS, default="digits")
    check.add_argument("--data-dir", type=Path, default=None,
                       help="directory holding the IDX files (see fnnet train --help)")
    check.add_argument("--no-download", action="store_true",
                       help="never download missing MNIST/Fashion-MNIST files")
    check.add_argument("--batch-size", type=_positive_int, default=3,
                       help="number of real training samples in the checked batch")
    check.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="dtype of params and both backward passes (the numerical "
                            "reference is always float64)")
    check.add_argument("--max-entries", type=_positive_int, default=64,
                       help="entries per leaf checked numerically (a seeded random subset)")
    check.add_argument("--seed", type=_seed, default=0)
    check.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                       help="float32 matmul precision of the three gradients; highest on every "
                            "device, so GPUs' TF32 does not make correct rules look wrong")
    check.add_argument("--json", type=Path, default=None, metavar="PATH",
                       help="also write the report as JSON")
    check.set_defaults(handler=_gradcheck)
    from fnnet.sweep_cli import add_sweep_parser

    add_sweep_parser(commands)
    return parser


def _select_device(kind: str | None):
    import jax

    if kind is None:
        return None
    try:
        return jax.devices(kind)[0]
    except RuntimeError as error:
        raise UsageError(
            f"--device {kind}: JAX sees no {kind} device (it has {jax.devices()}); for NVIDIA "
            f"GPUs install a CUDA build of JAX, e.g. pip install 'jax[cuda12]'") from error


def compile_cache_dir() -> Path:
    """``$FNNET_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/fnnet/jax`` (an absolute path; an
    empty or relative one is ignored, as the XDG spec says), else ``~/.cache/fnnet/jax``."""
    if os.environ.get("FNNET_COMPILE_CACHE"):
        return Path(os.environ["FNNET_COMPILE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "fnnet" / "jax"


def enable_compile_cache() -> Path | None:
    """Use JAX's persistent compilation cache so a second run skips compiling the steps.

    Returns the cache directory (:func:`compile_cache_dir`), or ``None`` after one line on
    stderr when it cannot be created or written (JAX would otherwise warn at every step).
    """
    import jax

    try:
        directory = compile_cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except (OSError, RuntimeError) as error:  # RuntimeError: no home directory
        print(f"fnnet: compile cache off: {error}", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def net_options(args: argparse.Namespace) -> dict[str, Any]:
    """The builder options of ``--net`` from the net flags, each checked to apply to that net
    (``args.init`` and ``args.hidden`` are resolved to what is used, for the record)."""
    from fnnet.layers import CONV_NETS

    args.init = args.init or ("he" if args.net == "deep-conv" else "normal")
    options: dict[str, Any] = {"weight_init": args.init}
    if args.net in CONV_NETS:
        for flag, given in (("--hidden", args.hidden), ("--batchnorm", args.batchnorm),
                            ("--activation", args.activation != "relu"),
                            ("--dropout", args.dropout is not None and args.net != "deep-conv")):
            if given:
                raise UsageError(f"{flag} does not apply to --net {args.net} (the book's layers "
                                 f"are fixed; see --help)")
        if args.dropout is not None:
            options["dropout"] = args.dropout
        return options
    args.hidden = args.hidden or [50]
    if args.net == "two-layer" and len(args.hidden) != 1:
        raise UsageError(f"--net two-layer takes exactly one --hidden; got {len(args.hidden)} "
                         f"({args.hidden}); use --net mlp for more layers")
    return options | dict(hidden=args.hidden, activation=args.activation,
                          batchnorm=args.batchnorm, dropout=args.dropout or 0.0)


def _net_line(args: argparse.Namespace, data: Any) -> str:
    """``two-layer 64-50-10 relu`` or ``simple-conv 1x28x28 -> 10``."""
    from fnnet.layers import CONV_NETS

    if args.net in CONV_NETS:
        return (f"{args.net} {'x'.join(map(str, data.x_train.shape[1:]))} -> "
                f"{data.num_classes}")
    extras = "".join([" batchnorm" if args.batchnorm else "",
                      f" dropout {args.dropout}" if args.dropout else ""])
    return (f"{args.net} {data.x_train.shape[1]}-{'-'.join(map(str, args.hidden))}-"
            f"{data.num_classes} {args.activation}{extras}")


def _epoch_line(record: dict[str, Any], epochs: int, held_out: str = "test") -> str:
    return (f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}  step {record['step']:>6}  "
            f"loss {record['loss']:.4f}  train acc {record['train_acc']:.4f}  "
            f"{held_out} acc {record['test_acc']:.4f}  {record['steps_per_s']:,.0f} steps/s")


# Settings that fix the trajectory: a resumed run must agree on them.
RESUME_KEYS = ("dataset", "net", "hidden", "activation", "init", "batchnorm", "dropout",
               "weight_decay", "optimizer",
               "lr", "momentum", "beta1", "beta2", "decay_rate", "batch_size", "sampling",
               "seed", "precision", "train_size", "validation", "split_seed")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("handler", "process_setup")}


def _check_resume_settings(directory: Path, settings: dict[str, Any]) -> None:
    from fnnet import checkpoint

    for path in reversed(checkpoint.list_checkpoints(directory)):
        try:
            saved = checkpoint.read_settings(path)
            break
        except checkpoint.CheckpointError:
            continue  # corrupt: fit's restore_latest reports it and falls back too
    else:
        return
    changed = [f"--{k.replace('_', '-')} {saved.get(k)!r} → {settings[k]!r}"
               for k in RESUME_KEYS if saved.get(k) != settings[k]]
    if changed:
        raise UsageError(f"--resume: {path} was written with other settings ("
                         f"{'; '.join(changed)}); use them or another --checkpoint-dir")


def _check_writable(flag: str, path: Path | None, *, directory: bool = False) -> None:
    """Fail before training, not after it, when an output cannot be written."""
    if path is None:
        return
    folder = path if directory else path.parent
    if directory and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a directory")
    if not directory and path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, expected a file path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot create {folder}: {error.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: {folder} is not writable")


def _check_coordinator(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--coordinator {address}: expected HOST:PORT with a port in "
                         f"1..65535 (e.g. host0:1234)")


def _start_distributed(args: argparse.Namespace) -> None:
    multi = (args.coordinator, args.num_processes, args.process_id)
    if all(v is None for v in multi):
        return
    if any(v is None for v in multi):
        raise UsageError("multi-host needs all of --coordinator, --num-processes, --process-id")
    _check_coordinator(args.coordinator)
    if not 0 <= args.process_id < args.num_processes:
        raise UsageError(f"--process-id {args.process_id}: must be in [0, "
                         f"{args.num_processes}) for --num-processes {args.num_processes}")
    from fnnet.parallel import DistributedError, initialize_distributed

    print(f"fnnet train: process {args.process_id} of {args.num_processes}: waiting up to "
          f"{args.distributed_timeout} s for the coordinator {args.coordinator}", flush=True)
    try:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                               timeout_s=args.distributed_timeout)
    except DistributedError as error:
        raise _JoinError(str(error)) from None
    if args.devices is None:
        args.devices = "all"


def optimizer_from_args(args: argparse.Namespace):
    """The ``--optimizer`` with ``--lr`` (resolved to its default when not given, and stored
    back in ``args``) and the hyperparameter flags that were given."""
    from fnnet.optim import default_learning_rate, get_optimizer

    if args.lr is None:
        args.lr = default_learning_rate(args.optimizer)
    return get_optimizer(args.optimizer, args.lr, **hyperparams_from_args(args))


def hyperparams_from_args(args: argparse.Namespace) -> dict[str, float]:
    """The optimiser hyperparameter flags that were given, each checked to apply to
    ``--optimizer``."""
    from fnnet.optim import HYPERPARAMETERS, OPTIMIZERS

    given = {name: getattr(args, name) for name in HYPERPARAMETERS
             if getattr(args, name) is not None}
    takes = OPTIMIZERS[args.optimizer].hyperparams
    for name in given:
        if name not in takes:
            flags = ", ".join(f"--{h.replace('_', '-')}" for h in takes) or "only --lr"
            raise UsageError(f"--{name.replace('_', '-')} does not apply to --optimizer "
                             f"{args.optimizer} (it takes {flags})")
    return given


def model_from_args(args: argparse.Namespace, data: Any, options: dict[str, Any]):
    """The ``--net`` for ``data``'s example shape and classes, with the model flags
    (``options`` from :func:`net_options`)."""
    from fnnet.layers import build_net

    return build_net(args.net, data.x_train.shape[1:], data.num_classes, grads=args.grads,
                     weight_decay=args.weight_decay, **options)


def data_for_net(net: str, data: Any) -> Any:
    """``data`` with images ``(N, 1, H, W)`` for the conv nets, flat vectors otherwise."""
    from fnnet.layers import CONV_NETS

    return data.as_images() if net in CONV_NETS else data


class _JoinError(Exception):
    """A multi-host run could not join its coordinator (exit status 1)."""


def _estimated_bytes(sizes: list[int], batch: int, itemsize: int, copies: int) -> int:
    """Memory a dense net of layer ``sizes`` needs: ``copies`` copies of the parameters
    (params, gradients, optimiser state, the updated params…) plus the activations of a
    batch (each layer's output and its gradient) — a lower bound, in bytes."""
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    activations = 2 * batch * sum(sizes)
    return itemsize * (copies * params + activations)


def _available_bytes(device: Any = None) -> tuple[int, str] | None:
    """The device's memory limit (GPU) or the host's physical memory, and its name."""
    import jax

    device = device or jax.devices()[0]
    with contextlib.suppress(Exception):
        limit = (device.memory_stats() or {}).get("bytes_limit")
        if limit:
            return int(limit), f"{device.platform} device memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None


def _check_memory(sizes: list[int], batch: int, itemsize: int, copies: int,
                  device: Any = None) -> None:
    """A usage error, before anything is built, when the model cannot fit in memory."""
    needed = _estimated_bytes(sizes, batch, itemsize, copies)
    available = _available_bytes(device)
    if available is not None and needed > available[0]:
        raise UsageError(f"the model {'-'.join(map(str, sizes))} needs about "
                         f"{needed / 2**30:,.1f} GiB (parameters, gradients, optimiser state "
                         f"and activations at batch {batch}), more than the "
                         f"{available[0] / 2**30:,.1f} GiB of {available[1]}; use smaller "
                         f"--hidden sizes")


def _data_line(files: tuple[str, ...]) -> str:
    return f"data: {', '.join(files) if files else 'in memory'}"


def _train(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as held:
        return _run_training(args, held)


def _run_training(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    _start_distributed(args)
    import jax
    from tqdm.auto import tqdm

    from fnnet.data import load_dataset
    from fnnet.precision import with_precision
    from fnnet.train import NonFiniteLossError, epoch_plan, fit

    options = net_options(args)
    optimizer = optimizer_from_args(args)
    device = _select_device(args.device)
    if args.devices is not None and device is not None:
        raise UsageError("give --device or --devices, not both")
    if args.resume and args.checkpoint_dir is None:
        raise UsageError("--resume needs --checkpoint-dir")
    if args.plot is not None:
        _require_matplotlib()
    _check_writable("--out", args.out)
    _check_writable("--plot", args.plot)
    _check_writable("--checkpoint-dir", args.checkpoint_dir, directory=True)
    if args.checkpoint_dir is not None and jax.process_index() == 0:
        from fnnet.checkpoint import lock_directory

        held.enter_context(lock_directory(args.checkpoint_dir))  # until training has ended
    if not args.no_compile_cache:
        enable_compile_cache()
    data = data_for_net(args.net, load_dataset(args.dataset, data_dir=args.data_dir,
                                               download=not args.no_download,
                                               progress=not args.no_progress))
    data, test_set = held_out_split(args, data)
    if args.batch_size > len(data.x_train):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the {args.dataset} "
                         f"training set ({len(data.x_train)} examples)")
    if args.epochs is None and args.steps is None:
        args.epochs = 20
    plan = epoch_plan(len(data.x_train), args.batch_size, epochs=args.epochs, steps=args.steps)
    settings = _settings(args)
    if "hidden" in options:  # the MLPs' size is the user's to choose (conv nets: the book's)
        _check_memory([data.x_train.shape[1], *args.hidden, data.num_classes],
                      max(args.batch_size, min(1000, len(data.x_train))), 4, 6, device)
    if args.resume:
        _check_resume_settings(args.checkpoint_dir, settings)
    net = with_precision(model_from_args(args, data, options), args.precision)
    init_key, data_key = jax.random.split(jax.random.key(args.seed))
    where = (f"{len(jax.devices()) if args.devices == 'all' else args.devices} devices"
             if args.devices is not None else (device or jax.devices()[0]).platform)
    sizes = (f"{len(data.x_train)} train / {len(data.x_test)} test" if test_set is None else
             f"{len(data.x_train)} train / {len(data.x_test)} validation / {len(test_set[0])} test")
    print(f"fnnet train: {args.dataset} ({sizes}), {_net_line(args, data)}, grads={args.grads}, "
          f"optimizer={args.optimizer} lr={args.lr}, batch {args.batch_size}, "
          f"{sum(plan)} steps on {where} ({args.precision})", flush=True)
    print(_data_line(data.files), flush=True)
    records: list[dict[str, Any]] = []

    def report(record: dict[str, Any]) -> None:
        records.append(record)
        if record["epoch"] % args.log_every == 0 or record["epoch"] == len(plan):
            tqdm.write(_epoch_line(record, len(plan), "test" if test_set is None else "val"))

    def write_outputs(status: str, summary: dict[str, Any] | None, history: dict[str, Any],
                      error: str | None = None) -> None:
        if test_set is not None:  # fit's "test" set was the validation set
            history = {k.replace("test_", "val_"): v for k, v in history.items()}
        if args.out is not None and jax.process_index() == 0:
            _write_json(args.out, {"status": status, "error": error, "settings": settings,
                                   "data": {"files": list(data.files)}, "summary": summary,
                                   "history": history, "environment": _environment()})

    def partial_history() -> dict[str, Any]:
        return {name: [r[name] for r in records] for name in records[0]} if records else {}

    try:
        params, history = fit(
            net, net.init(init_key), data, optimizer=optimizer,
            key=data_key, batch_size=args.batch_size, epochs=args.epochs if args.steps is None
            else None, steps=args.steps, sampling=args.sampling, device=device,
            devices=args.devices, checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every, resume=args.resume, settings=settings,
            progress=not args.no_progress, on_epoch=report,
            matmul_precision=args.matmul_precision)
    except NonFiniteLossError as error:
        print(f"fnnet train: error: {error}", file=sys.stderr)
        write_outputs("diverged", None, partial_history(), str(error))
        return EXIT_NON_FINITE
    except KeyboardInterrupt:
        saved = f"; checkpoint in {args.checkpoint_dir}" if args.checkpoint_dir else ""
        print(f"fnnet train: interrupted{saved}", file=sys.stderr)
        write_outputs("interrupted", None, partial_history())
        return EXIT_INTERRUPTED
    if not history.epoch:
        print(f"done: the checkpoint in {args.checkpoint_dir} already covers all "
              f"{sum(plan)} steps")
        write_outputs("already-complete", None, history.to_dict())
        return 0
    last = history.last()
    summary = {
        "test_acc": last["test_acc"], "train_acc": last["train_acc"],
        "test_loss": last["test_loss"], "steps": last["step"], "epochs": last["epoch"],
        "train_s": last["wall_s"], "compile_s": history.compile_s,
        "steps_per_s": (last["step"] - history.start_step) / last["wall_s"],
    }
    if test_set is not None:
        from fnnet.train import evaluate

        summary["val_acc"], summary["val_loss"] = summary["test_acc"], summary["test_loss"]
        summary["test_loss"], summary["test_acc"] = evaluate(net, params, *test_set,
                                                             state=history.state)
        print(f"validation accuracy {summary['val_acc']:.4f}")
    print(f"done: {summary['steps']} steps, {summary['train_s']:.2f} s training "
          f"({summary['steps_per_s']:,.0f} steps/s; compile {summary['compile_s']:.2f} s); "
          f"test accuracy {summary['test_acc']:.4f}, train accuracy {summary['train_acc']:.4f}")
    if jax.process_index() != 0:
        return 0
    write_outputs("complete", summary, history.to_dict())
    if args.plot is not None:
        plot_history(history, args.plot, title=f"{args.dataset}, {args.net}, {args.grads}")
    return 0


def held_out_split(args: argparse.Namespace, data: Any) -> tuple[Any, Any]:
    """``--train-size`` and ``--validation`` applied to ``data``: ``(data for fit, test set)``.

    With ``--validation`` the validation set takes the test slot of the data ``fit`` sees (it
    is what each epoch reports) and the real ``(x_test, t_test)`` is returned apart, to be
    evaluated once; without it the test set is None. The split is
    :func:`fnnet.sweep.validation_split` seeded by ``--split-seed`` (default ``--seed``), as
    ``fnnet sweep`` makes it.
    """
    from fnnet.sweep import validation_split

    if args.train_size is not None and args.train_size > len(data.x_train):
        raise UsageError(f"--train-size {args.train_size} is larger than the {args.dataset} "
                         f"training set ({len(data.x_train)} examples)")
    if args.validation is None:
        n = args.train_size or len(data.x_train)
        return data._replace(x_train=data.x_train[:n], t_train=data.t_train[:n]), None
    seed = getattr(args, "split_seed", None)
    (x, t), (x_val, t_val) = validation_split(
        data.x_train, data.t_train, fraction=args.validation, train_size=args.train_size,
        seed=args.seed if seed is None else seed)
    return (data._replace(x_train=x, t_train=t, x_test=x_val, t_test=t_val),
            (data.x_test, data.t_test))


def _gradcheck(args: argparse.Namespace) -> int:
    from fnnet.gradcheck import gradcheck_model

    options = net_options(args)
    _check_writable("--json", args.json)
    from fnnet.data import INPUT_SIZES, NUM_CLASSES

    if "hidden" in options:
        # float64 params, two gradients, and the numerical check's 2 x 32 perturbed copies.
        _check_memory([INPUT_SIZES[args.dataset], *args.hidden, NUM_CLASSES], args.batch_size,
                      8, 70)
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
    print(report.format_table())
    if args.json is not None:
        _write_json(args.json, {"settings": _settings(args), "report": report.to_dict(),
                                "environment": _environment()})
    if not report.ok:
        print(f"fnnet gradcheck: out of tolerance: {', '.join(report.failures)}",
              file=sys.stderr)
        return 1
    return 0


def _environment() -> dict[str, str]:
    import jax

    device = jax.devices()[0]
    return {"jax": jax.__version__, "python": platform.python_version(),
            "platform": device.platform, "device": device.device_kind}


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (a reader sees the old file or the new one, never a part;
    an error names ``path``)."""
    from fnnet.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise UsageError("--plot needs matplotlib: pip install 'fnnet[plot]'") from error


def plot_history(history: Any, path: Path, *, title: str = "") -> None:
    """Loss and accuracy per epoch (against steps) as a two-panel PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history.step, history.loss, label="train (mean over epoch)")
    ax_loss.plot(history.step, history.test_loss, label="test")
    ax_loss.set(xlabel="step", ylabel="softmax cross-entropy", title="loss")
    ax_acc.plot(history.step, history.train_acc, label="train")
    ax_acc.plot(history.step, history.test_acc, label="test")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    from fnnet.atomic import atomic_write

    try:
        atomic_write(path, lambda file: fig.savefig(file, dpi=100, format="png"))
    finally:
        plt.close(fig)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush does
    not fail again (the recipe of the Python docs, 'Note on SIGPIPE')."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _one_line_warnings(command: str) -> None:
    """Show skipped-checkpoint notices as ``fnnet <command>: warning: …`` (no source line)."""
    from fnnet.checkpoint import CorruptCheckpointWarning

    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CorruptCheckpointWarning):
            print(f"fnnet {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fnnet`` console script; returns the exit status (see the module
    docstring). Ctrl-C at any point, JAX's import included, exits 130 with one line."""
    command = "fnnet"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        command = f"fnnet {args.command}"
        if argv is None and getattr(args, "process_setup", None) is not None:
            args.process_setup()  # fnnet is the program: process-wide setup is its to do
        with warnings.catch_warnings():
            _one_line_warnings(args.command)
            return _run(args, command)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace, command: str) -> int:
    from fnnet.checkpoint import CheckpointError
    from fnnet.data import DatasetError

    try:
        return args.handler(args)
    except BrokenPipeError:
        raise
    except (DatasetError, CheckpointError, OSError, _JoinError) as error:  # data, disk, hosts
        print(f"{command}: error: {error}", file=sys.stderr)
        return 1
    except (UsageError, ValueError) as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
