"""The flag groups several commands take (data, net, optimiser, held-out split) and their
translation into fnnet objects (the net, the optimiser, the data as the net takes it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fnnet.cli.common import (
    UsageError,
    fraction,
    non_negative_float,
    open_fraction,
    positive_float,
    positive_int,
)

# --- flag groups ---------------------------------------------------------------------------


def add_split_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--train-size`` and ``--validation`` (the book's §6.5 split; train and sweep)."""
    split = parser.add_argument_group("held-out validation (the book's §6.5 split)")
    split.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                       help="use only the first N training examples (the book's §6.5: 500)")
    split.add_argument("--validation", type=open_fraction, default=None, metavar="FRACTION",
                       help="hold out int(N·FRACTION) of the training examples, shuffled with "
                            "the split seed, as a validation set (the book's §6.5: 0.2)")
    return split


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


def add_checkpoint_flags(group: Any, saved: str = "params, optimiser state") -> None:
    """``--checkpoint-dir``, ``--checkpoint-every`` and ``--resume`` on ``group`` (a parser or
    argument group); ``saved`` names what a checkpoint holds besides key, step and settings."""
    group.add_argument("--checkpoint-dir", type=Path, default=None,
                       help=f"save {saved}, RNG key, step and settings here")
    group.add_argument("--checkpoint-every", type=positive_int, default=1,
                       metavar="K", help="save every K epochs (and at the end, and on Ctrl-C)")
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest complete checkpoint in --checkpoint-dir")


def add_net_flags(parser: argparse.ArgumentParser,
                  extra_nets: dict[str, str] | None = None) -> argparse._ArgumentGroup:
    """The net and its shape options (train, gradcheck and sweep); ``extra_nets`` (name →
    help) are more ``--net`` choices (gradcheck's nets that bring their own batch)."""
    from fnnet.init import INITIALIZERS
    from fnnet.layers import ACTIVATIONS
    from fnnet.nets import BOOK_INIT, NETS

    extra_nets = extra_nets or {}
    more = "".join(f"; {name} = {summary}" for name, summary in extra_nets.items())
    model = parser.add_argument_group("model")
    model.add_argument("--net", choices=(*NETS, *extra_nets), default="two-layer",
                       help="two-layer = the book's TwoLayerNet; mlp = its MultiLayerNet "
                            "(MultiLayerNetExtend with --batchnorm/--dropout); simple-conv = "
                            "its chapter-7 SimpleConvNet; deep-conv = its chapter-8 "
                            "DeepConvNet (conv nets take the images as (1, H, W))" + more)
    model.add_argument("--hidden", type=positive_int, action="append", default=None,
                       metavar="SIZE",
                       help="hidden layer width; repeat for each layer of an mlp (default: 50; "
                            "two-layer and mlp only)")
    model.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                       help="the hidden layers' activation (conv nets: relu only)")
    model.add_argument("--init", choices=INITIALIZERS, default=None,
                       help="normal = N(0, 0.01²), xavier = N(0, 1/fan_in), he = N(0, "
                            "2/fan_in) (fan_in = C·FH·FW for kernels); default: the book's "
                            "for each net: " + ", ".join(f"{net} {init}" for net, init in
                                                         BOOK_INIT.items()))
    model.add_argument("--batchnorm", action="store_true",
                       help="batch norm after each hidden affine (two-layer and mlp)")
    model.add_argument("--dropout", type=fraction, default=None, metavar="RATE",
                       help="dropout after each hidden activation (two-layer and mlp; default "
                            "none), or deep-conv's dropout rate (default 0.5)")
    return model


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The net, its options, where its gradients come from and weight decay (train, sweep)."""
    from fnnet.layers import GRADS

    model = add_net_flags(parser)
    model.add_argument("--grads", choices=(*GRADS, "numerical"), default="manual",
                       help="manual = hand-derived custom_vjp rules, autodiff = jax.grad, "
                            "numerical = the book's chapter 4: central differences over every "
                            "parameter, 2 forward passes per parameter and step (two-layer "
                            "and mlp without --batchnorm; slow by design)")
    model.add_argument("--weight-decay", type=non_negative_float, default=0.0, metavar="λ",
                       help="the book's weight decay: ½·λ·ΣW² (weights, not biases) added to "
                            "the training loss")


def add_optimizer_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--optimizer``, ``--lr``, its hyperparameters and the batching (train and sweep)."""
    from fnnet.optim import CHOICES, HYPERPARAMETERS, OPTIMIZERS
    from fnnet.train import SAMPLINGS

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", metavar="NAME",
                     help="; ".join(f"{name}: {spec.summary}" for name, spec in
                                    OPTIMIZERS.items()))
    opt.add_argument("--lr", type=positive_float, default=None,
                     help="learning rate (default: 0.1 for sgd, 0.001 for adam, 0.01 for the "
                          "others, as in the book)")
    for name in HYPERPARAMETERS:
        takers = [o for o, spec in OPTIMIZERS.items() if name in spec.hyperparams]
        default = OPTIMIZERS[takers[0]].hyperparams[name]
        opt.add_argument(f"--{name.replace('_', '-')}", type=fraction, default=None,
                         help=f"in [0, 1), for {', '.join(takers)} (default: {default})")
    opt.add_argument("--nesterov-form", choices=CHOICES["form"], default=None,
                     help="for nesterov: dlfs1 = the first book's (θ moves with the old "
                          "velocity, then v is updated; = optax's nesterov), dlfs2 = the "
                          "sequel's (v first, θ with the new v) (default: dlfs1)")
    opt.add_argument("--batch-size", type=positive_int, default=100,
                     help="examples per training step")
    opt.add_argument("--sampling", choices=SAMPLINGS, default="shuffle",
                     help="shuffle = a permutation per epoch, last partial batch dropped; "
                          "replacement = the book's batches drawn with replacement")
    return opt


# --- flags into objects --------------------------------------------------------------------


def check_data_flags(args: argparse.Namespace) -> None:
    """``--data-dir`` and ``--no-download`` apply to the IDX datasets only (digits are
    bundled, the spiral generated): never silently ignored."""
    from fnnet.data import IDX_DATASETS

    if args.dataset in IDX_DATASETS:
        return
    for flag, given in (("--data-dir", args.data_dir is not None),
                        ("--no-download", args.no_download)):
        if given:
            raise UsageError(f"{flag} does not apply to --dataset {args.dataset} (nothing is "
                             f"read from files or downloaded for it)")


def check_batch_fits(args: argparse.Namespace, data: Any) -> None:
    """``--batch-size`` no larger than the training examples ``fit`` gets (after the
    ``--train-size`` cut and the ``--validation`` hold-out, which the message names)."""
    n = len(data.x_train)
    if args.batch_size <= n:
        return
    if args.validation is None:
        where = (f"the first --train-size {args.train_size}" if args.train_size is not None
                 else f"the {args.dataset} training set")
        raise UsageError(f"--batch-size {args.batch_size} is larger than {where} ({n} "
                         f"examples)")
    total = n + len(data.x_test)
    raise UsageError(f"--batch-size {args.batch_size} is larger than the {n} training "
                     f"example{'s' if n != 1 else ''} left after --validation {args.validation} "
                     f"holds out {len(data.x_test)} of {total}")


def net_options(args: argparse.Namespace) -> dict[str, Any]:
    """The builder options of ``--net`` from the net flags, each checked to apply to that net
    (``args.init`` and ``args.hidden`` are resolved to what is used, for the record)."""
    from fnnet.nets import BOOK_INIT, CONV_NETS

    args.init = args.init or BOOK_INIT[args.net]
    if getattr(args, "grads", None) == "numerical" and (args.net in CONV_NETS or args.batchnorm):
        raise UsageError(f"--grads numerical trains --net two-layer and mlp without batch norm "
                         f"(the book's chapter 4); not {args.net}"
                         f"{' --batchnorm' if args.batchnorm else ''}")
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


def net_line(args: argparse.Namespace, data: Any) -> str:
    """``two-layer 64-50-10 relu`` or ``simple-conv 1x28x28 -> 10``."""
    from fnnet.nets import CONV_NETS

    if args.net in CONV_NETS:
        return (f"{args.net} {'x'.join(map(str, data.x_train.shape[1:]))} -> "
                f"{data.num_classes}")
    extras = "".join([" batchnorm" if args.batchnorm else "",
                      f" dropout {args.dropout}" if args.dropout else ""])
    return (f"{args.net} {data.x_train.shape[1]}-{'-'.join(map(str, args.hidden))}-"
            f"{data.num_classes} {args.activation}{extras}")


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
    if getattr(args, "nesterov_form", None) is not None:
        given["form"] = args.nesterov_form
    takes = OPTIMIZERS[args.optimizer].hyperparams
    for name in given:
        if name not in takes:
            flags = ", ".join(_flag(h) for h in takes) or "only --lr"
            raise UsageError(f"{_flag(name)} does not apply to --optimizer "
                             f"{args.optimizer} (it takes {flags})")
    return given


def _flag(hyperparameter: str) -> str:
    """The CLI flag of an optimiser hyperparameter (``form`` is ``--nesterov-form``)."""
    return "--nesterov-form" if hyperparameter == "form" else \
        f"--{hyperparameter.replace('_', '-')}"


def model_from_args(args: argparse.Namespace, data: Any, options: dict[str, Any]):
    """The ``--net`` for ``data``'s example shape and classes, with the model flags
    (``options`` from :func:`net_options`)."""
    from fnnet.nets import build_net

    return build_net(args.net, data.x_train.shape[1:], data.num_classes, grads=args.grads,
                     weight_decay=args.weight_decay, **options)


def data_for_net(net: str, data: Any) -> Any:
    """``data`` with images ``(N, 1, H, W)`` for the conv nets, flat vectors otherwise."""
    from fnnet.nets import CONV_NETS

    return data.as_images() if net in CONV_NETS else data


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
