"""``fnnet train``: train one of the book's nets and report its accuracy."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from fnnet.cli import common, flags
from fnnet.cli.common import UsageError

# Settings that fix the trajectory: a resumed run must agree on them.
RESUME_KEYS = ("dataset", "net", "hidden", "activation", "init", "batchnorm", "dropout",
               "weight_decay", "optimizer",
               "lr", "momentum", "beta1", "beta2", "decay_rate", "nesterov_form", "batch_size",
               "sampling",
               "seed", "precision", "train_size", "validation", "split_seed")


def add_parser(commands: Any) -> None:
    """The ``train`` subcommand on ``commands`` (the subparsers of ``fnnet``)."""
    from fnnet.precision import MATMUL_PRECISIONS, PRECISIONS

    train = commands.add_parser(
        "train", help="train one of the book's nets (TwoLayerNet, MultiLayerNet, "
                      "SimpleConvNet, DeepConvNet) and report accuracy",
        description="Train one of the book's nets (--net: TwoLayerNet, MultiLayerNet or "
                    "MultiLayerNetExtend, SimpleConvNet, DeepConvNet) with a jit-compiled, "
                    "scan-fused training loop. Prints one line per epoch (mean loss, "
                    "train/test accuracy, steps/s) and a final summary with where the time "
                    "went.",
        formatter_class=common.DefaultsFormatter)
    flags.add_data_flags(train)
    flags.add_model_flags(train)
    opt = flags.add_optimizer_flags(train)
    length = opt.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=common.positive_int, default=None,
                        help="number of epochs (default 20 when --steps is not given)")
    length.add_argument("--steps", type=common.positive_int, default=None,
                        help="number of steps instead (the last epoch may be partial)")
    opt.add_argument("--seed", type=common.seed, default=0,
                     help="seeds the init and the batch order")
    split = flags.add_split_flags(train)
    split.add_argument("--split-seed", type=common.seed, default=None,
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
    scale.add_argument("--devices", type=common.device_count, default=None, metavar="N|all",
                       help="data parallel over N devices (or all): params replicated, each "
                            "batch split across devices; --batch-size must divide by N")
    scale.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="multi-host: address of process 0 (jax.distributed.initialize)")
    scale.add_argument("--num-processes", type=common.positive_int, default=None, metavar="N",
                       help="multi-host: the number of processes in the run (one per host "
                            "or GPU), each started with the same command")
    scale.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="multi-host: this process's number, in [0, --num-processes); "
                            "process 0 runs on the --coordinator host and writes the outputs")
    scale.add_argument("--distributed-timeout", type=common.positive_int, default=60,
                       metavar="SECONDS",
                       help="multi-host: give up joining the coordinator after this long")
    ckpt = train.add_argument_group("checkpoints")
    flags.add_checkpoint_flags(ckpt)
    run.add_argument("--out", type=Path, default=None,
                     help="write settings, per-epoch history and summary as JSON here")
    run.add_argument("--plot", type=Path, default=None,
                     help="write loss and accuracy curves as PNG here (needs matplotlib: "
                          "pip install 'fnnet[plot]')")
    run.add_argument("--eval-train", type=common.positive_int, default=None, metavar="N",
                     help="evaluate the training loss and accuracy after each epoch on a fixed "
                          "sample of N training examples (default: all of them, exact; the "
                          "held-out set is always evaluated whole)")
    run.add_argument("--record-steps", action="store_true",
                     help="also record every step's training loss (--out history.step_loss; "
                          "--plot draws it: the book's figure 4-11)")
    run.add_argument("--log-every", type=common.positive_int, default=1, metavar="K",
                     help="print the per-epoch line every K epochs (and for the last)")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bar (one is drawn only when stderr is a terminal)")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="do not use JAX's persistent compilation cache "
                          "(~/.cache/fnnet/jax, or $FNNET_COMPILE_CACHE)")
    train.set_defaults(handler=run_train)


def plot_title(args: argparse.Namespace, data: Any) -> str:
    """``digits, two-layer 64-50-10 relu (init normal), grads=manual, sgd lr 0.1, batch
    100``: what the figure shows, enough to tell two figures apart."""
    extras = [f"weight decay {args.weight_decay:g}"] if args.weight_decay else []
    return (f"{args.dataset}, {flags.net_line(args, data)} (init {args.init}), "
            f"grads={args.grads}, {args.optimizer} lr {args.lr:g}, batch {args.batch_size}"
            + "".join(f", {e}" for e in extras))


def epoch_line(record: dict[str, Any], epochs: int, held_out: str = "test") -> str:
    """One epoch of the log: step, mean loss, train and held-out accuracy, steps/s."""
    return (f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}  step {record['step']:>6}  "
            f"loss {record['loss']:.4f}  train acc {record['train_acc']:.4f}  "
            f"{held_out} acc {record['test_acc']:.4f}  {record['steps_per_s']:,.0f} steps/s")


@common.training_command
def run_train(args: argparse.Namespace, held: contextlib.ExitStack,
              clock: common.Clock) -> int:
    """The handler of ``fnnet train`` (exit status)."""
    _start_distributed(args)
    import jax

    from fnnet._progress import tqdm
    from fnnet.data import load_dataset
    from fnnet.precision import with_precision
    from fnnet.results import environment, write_json
    from fnnet.train import epoch_plan, fit, init_from_seed

    flags.check_data_flags(args)
    options = flags.net_options(args)
    optimizer = flags.optimizer_from_args(args)
    device = common.select_device(args.device)
    if args.devices is not None and device is not None:
        raise UsageError("give --device or --devices, not both")
    common.check_device_count(args.devices)
    common.check_run_outputs(args, held, lock=jax.process_index() == 0)  # process 0 writes
    if args.checkpoint_dir is not None and jax.process_index() == 0:
        _check_fresh_checkpoint_dir(args)
    if not args.no_compile_cache:
        common.enable_compile_cache()
    with clock.part("data"):
        data = flags.data_for_net(args.net, load_dataset(args.dataset, data_dir=args.data_dir,
                                                         download=not args.no_download,
                                                         progress=not args.no_progress))
        data, test_set = flags.held_out_split(args, data)
    flags.check_batch_fits(args, data)
    if args.epochs is None and args.steps is None:
        args.epochs = 20
    plan = epoch_plan(len(data.x_train), args.batch_size, epochs=args.epochs, steps=args.steps)
    settings = common.settings(args)
    if "hidden" in options:  # the MLPs' size is the user's to choose (conv nets: the book's)
        common.check_memory([data.x_train.shape[1], *args.hidden, data.num_classes],
                            max(args.batch_size, min(2000, len(data.x_train))), 4, 6, device)
    if args.resume:
        common.check_resume_settings(args.checkpoint_dir, settings, RESUME_KEYS)
    net = with_precision(flags.model_from_args(args, data, options), args.precision)
    where = (f"{len(jax.devices()) if args.devices == 'all' else args.devices} devices"
             if args.devices is not None else (device or jax.devices()[0]).platform)
    sizes = (f"{len(data.x_train)} train / {len(data.x_test)} test" if test_set is None else
             f"{len(data.x_train)} train / {len(data.x_test)} validation / {len(test_set[0])} test")
    print(f"fnnet train: {args.dataset} ({sizes}), {flags.net_line(args, data)}, "
          f"grads={args.grads}, optimizer={args.optimizer} lr={args.lr}, batch "
          f"{args.batch_size}, {sum(plan)} steps on {where} ({args.precision})", flush=True)
    print(common.data_line(data.files), flush=True)
    with clock.part("init"):
        params, data_key = jax.block_until_ready(init_from_seed(net, args.seed))
    records: list[dict[str, Any]] = []

    def report(record: dict[str, Any]) -> None:
        records.append(record)
        if record["epoch"] % args.log_every == 0 or record["epoch"] == len(plan):
            tqdm.write(epoch_line(record, len(plan), "test" if test_set is None else "val"))

    def write_outputs(status: str, summary: dict[str, Any] | None, history: dict[str, Any],
                      error: str | None = None) -> None:
        if test_set is not None:  # fit's "test" set was the validation set
            history = {k.replace("test_", "val_"): v for k, v in history.items()}
        if args.out is not None and jax.process_index() == 0:
            write_json(args.out, {"status": status, "error": error, "settings": settings,
                                  "data": {"files": list(data.files)}, "summary": summary,
                                  "history": history, "environment": environment()})

    def train() -> tuple[Any, Any]:
        return fit(
            net, params, data, optimizer=optimizer,
            key=data_key, batch_size=args.batch_size, epochs=args.epochs if args.steps is None
            else None, steps=args.steps, sampling=args.sampling, device=device,
            devices=args.devices, checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every, resume=args.resume, settings=settings,
            progress=not args.no_progress, on_epoch=report, eval_train=args.eval_train,
            matmul_precision=args.matmul_precision, record_steps=args.record_steps)

    outcome = common.run_fit("train", train, records=records, write_outputs=write_outputs,
                             checkpoint_dir=args.checkpoint_dir, covers=f"{sum(plan)} steps",
                             clock=clock)
    if isinstance(outcome, int):
        return outcome
    params, history = outcome
    last = history.last()
    summary = {  # train_s and steps_per_s: this command's training (after a resume too)
        "test_acc": last["test_acc"], "train_acc": last["train_acc"],
        "test_loss": last["test_loss"], "steps": last["step"], "epochs": last["epoch"],
        "train_s": history.trained_s,
        "steps_per_s": (last["step"] - history.start_step) / history.trained_s,
        "train_eval_size": history.train_eval_size,
    }
    if args.resume and history.start_step and not history.resumed_epochs:
        print(f"note: {args.checkpoint_dir}'s checkpoint keeps no history (an older fnnet "
              f"wrote it): --out and --plot hold epochs {history.epoch[0]}-"
              f"{history.epoch[-1]} only")
    if test_set is not None:
        from fnnet.train import evaluate

        summary["val_acc"], summary["val_loss"] = summary["test_acc"], summary["test_loss"]
        with clock.part("evaluation"):
            summary["test_loss"], summary["test_acc"] = evaluate(net, params, *test_set,
                                                                 state=history.state)
        print(f"validation accuracy {summary['val_acc']:.4f}")
    sample = ("" if history.train_eval_size == len(data.x_train) else
              f" (on {history.train_eval_size} of {len(data.x_train)} examples)")
    print(f"done: {summary['steps']} steps, {summary['train_s']:.2f} s training "
          f"({summary['steps_per_s']:,.0f} steps/s); test accuracy {summary['test_acc']:.4f}, "
          f"train accuracy {summary['train_acc']:.4f}{sample}")
    if jax.process_index() == 0:
        if args.plot is not None:
            from fnnet.plots import plot_history

            with clock.part("outputs"):
                plot_history(history, args.plot, title=plot_title(args, data),
                             held_out="test" if test_set is None else "validation")
        summary["time"] = clock.summary()
        summary["compile_s"], summary["programs"] = (summary["time"]["compile_s"],
                                                     summary["time"]["programs"])
        write_outputs("complete", summary, history.to_dict())
    print(clock.line())
    return 0


def _check_fresh_checkpoint_dir(args: argparse.Namespace) -> None:
    """Before the data loads: a directory with checkpoints is another run's, unless resumed."""
    from fnnet.checkpoint import list_checkpoints

    found = list_checkpoints(args.checkpoint_dir)
    if found and not args.resume:
        raise UsageError(f"--checkpoint-dir {args.checkpoint_dir} already holds checkpoints "
                         f"(newest {found[-1].name}); add --resume to continue that run, or "
                         f"give an empty directory (a new run would overwrite and prune them)")


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
        raise common.JoinError(str(error)) from None
    if args.devices is None:
        args.devices = "all"
