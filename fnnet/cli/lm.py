"""``fnnet lm``: train one of the sequel's recurrent language models on Penn Treebank and
report its perplexity."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from fnnet.cli import common, flags
from fnnet.cli.common import UsageError

# Settings that fix the trajectory: a resumed run must agree on them.
RESUME_KEYS = ("dataset", "train_split", "corpus_size", "net", "wordvec", "hidden", "dropout",
               "grads", "optimizer", "lr", "max_grad", "lr_decay", "batch_size", "time_size",
               "streams", "seed")
BOOK_FLAGS = ("wordvec", "hidden", "batch_size", "time_size", "lr", "max_grad", "epochs",
              "dropout", "lr_decay", "corpus_size", "streams")
"""The flags whose default is the book's run of ``--net`` (:data:`fnnet.nets.BOOK_RUNS`)."""


def add_parser(commands: Any) -> None:
    """The ``lm`` subcommand on ``commands`` (the subparsers of ``fnnet``)."""
    from fnnet.data.ptb import TRAIN_SPLITS
    from fnnet.layers import GRADS
    from fnnet.nets import BOOK_RUNS, LM_NETS
    from fnnet.optim import OPTIMIZERS
    from fnnet.precision import MATMUL_PRECISIONS

    def book(field: str) -> str:
        values = {name: getattr(run, field) for name, run in BOOK_RUNS.items()}
        return "the book's: " + ", ".join(f"{v if v is not None else 'none'} for {name}"
                                          for name, v in values.items())

    lm = commands.add_parser(
        "lm", help="train a recurrent language model on Penn Treebank (perplexity)",
        description="Train the sequel's SimpleRnnlm (chapter 5), Rnnlm or BetterRnnlm (chapter "
                    "6) with truncated BPTT: batch-size streams at evenly spaced offsets, "
                    "time-size words a step, the recurrent state carried from step to step "
                    "(--streams: between epochs too, or reset), gradients clipped by their "
                    "global norm, SGD. Every epoch "
                    "is one compiled program. Prints the held-out perplexity (every prediction "
                    "of the split, the state carried) after each epoch. Defaults are the book's "
                    "run of the --net.",
        formatter_class=common.DefaultsFormatter)
    data = lm.add_argument_group("data")
    data.add_argument("--dataset", choices=("ptb",), default="ptb",
                      help="Penn Treebank as the sequel reads it (<eos> at line ends)")
    data.add_argument("--data-dir", type=Path, default=None,
                      help="directory holding ptb.{train,valid,test}.txt (or a ptb/ folder "
                           "of them); searched before $FNNET_DATA and ~/.cache/fnnet/ptb")
    data.add_argument("--no-download", action="store_true", help="never download PTB files")
    data.add_argument("--train-split", choices=TRAIN_SPLITS, default="train",
                      help="train = train on ptb.train, score on valid each epoch and on test "
                           "at the end; valid = train on ptb.valid and score on test (for "
                           "machines without the train file)")
    data.add_argument("--corpus-size", type=common.positive_int, default=None, metavar="N",
                      help="train on the first N words only, with their own vocabulary (max id "
                           "+ 1), and score those N words (the book's chapter 5: 1000; "
                           f"default: {book('corpus_size')})")
    model = lm.add_argument_group("model")
    model.add_argument("--net", choices=LM_NETS, default="rnnlm",
                       help="simple-rnnlm = the book's SimpleRnnlm (TimeRNN); rnnlm = its Rnnlm "
                            "(TimeLSTM); better-rnnlm = its BetterRnnlm (2 LSTMs, dropout, "
                            "weight tying)")
    model.add_argument("--wordvec", type=common.positive_int, default=None, metavar="D",
                       help=f"word vector size ({book('wordvec_size')})")
    model.add_argument("--hidden", type=common.positive_int, default=None, metavar="H",
                       help=f"hidden size ({book('hidden_size')})")
    model.add_argument("--dropout", type=common.fraction, default=None, metavar="RATE",
                       help=f"better-rnnlm's dropout ({book('dropout')})")
    model.add_argument("--grads", choices=GRADS, default="manual",
                       help="manual = hand-derived rules (BPTT by hand), autodiff = jax.grad "
                            "through lax.scan of the plain cells")
    opt = lm.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", metavar="NAME",
                     help=f"one of {', '.join(OPTIMIZERS)} at their default hyperparameters")
    opt.add_argument("--lr", type=common.positive_float, default=None,
                     help=f"learning rate ({book('lr')})")
    opt.add_argument("--max-grad", type=common.non_negative_float, default=None,
                     metavar="NORM",
                     help="clip the gradients to this global norm, the book's clip_grads; 0: "
                          f"no clipping ({book('max_grad')})")
    opt.add_argument("--lr-decay", type=common.positive_float, default=None,
                     metavar="FACTOR",
                     help="divide the learning rate by FACTOR after an epoch whose held-out "
                          "perplexity is not the best so far; 1: never "
                          f"({book('lr_decay')})")
    opt.add_argument("--batch-size", type=common.positive_int, default=None,
                     help=f"streams per step ({book('batch_size')})")
    opt.add_argument("--time-size", type=common.positive_int, default=None,
                     help=f"words per stream per step ({book('time_size')})")
    opt.add_argument("--epochs", type=common.positive_int, default=None,
                     help=f"epochs in total ({book('epochs')})")
    opt.add_argument("--streams", choices=("restart", "continue"), default=None,
                     help="between epochs: restart = the streams start again at their offsets "
                          "from zero states; continue = they run on (wrapping around), the "
                          f"state carried ({book('streams')})")
    opt.add_argument("--seed", type=common.seed, default=0, help="seeds the init and dropout")
    run = lm.add_argument_group("run")
    run.add_argument("--eval-batch-size", type=common.positive_int, default=10,
                     help="streams of the perplexity evaluation (the book's eval_perplexity)")
    run.add_argument("--eval-time-size", type=common.positive_int, default=35,
                     help="words per evaluation chunk")
    run.add_argument("--device", choices=("cpu", "gpu"), default=None,
                     help="restrict to this kind of device (default: JAX's default device)")
    run.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="default",
                     help="float32 matmul precision (default: the backend's; TF32 on NVIDIA "
                          "GPUs)")
    flags.add_checkpoint_flags(run, "params, optimiser state (with the learning rate and the "
                                    "best perplexity)")
    run.add_argument("--out", type=Path, default=None,
                     help="write settings, per-epoch history and summary as JSON here")
    run.add_argument("--plot", type=Path, default=None,
                     help="write the perplexity curves as PNG here (needs matplotlib)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="do not use JAX's persistent compilation cache")
    lm.set_defaults(handler=run_lm)


def resolve_book_defaults(args: argparse.Namespace) -> None:
    """Fill the flags left at None with the book's run of ``--net`` (0 / 1 / none mean off:
    ``max_grad`` and ``lr_decay`` become None), checking the ones that do not apply."""
    from fnnet.nets import BOOK_RUNS

    run = BOOK_RUNS[args.net]
    if args.dropout is not None and args.net != "better-rnnlm":
        raise UsageError(f"--dropout applies to --net better-rnnlm only, not {args.net}")
    for flag in BOOK_FLAGS:
        if getattr(args, flag) is None:
            name = {"wordvec": "wordvec_size", "hidden": "hidden_size"}.get(flag, flag)
            setattr(args, flag, getattr(run, name))
    if args.max_grad == 0:
        args.max_grad = None
    if args.lr_decay is not None and args.lr_decay <= 1:
        if args.lr_decay < 1:
            raise UsageError(f"--lr-decay {args.lr_decay}: must be >= 1 (1: never decay)")
        args.lr_decay = None


def epoch_line(record: dict[str, Any], epochs: int, held_out: str) -> str:
    """One epoch of the log: step, learning rate, train and held-out perplexity, words/s."""
    decayed = "  (lr ÷)" if record["decayed"] else ""
    return (f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}  step {record['step']:>6}  "
            f"lr {record['lr']:.4g}  train ppl {record['train_ppl']:.2f}  {held_out} ppl "
            f"{record['held_out_ppl']:.2f}  {record['words_per_s']:,.0f} words/s{decayed}")


@common.training_command
def run_lm(args: argparse.Namespace, held: contextlib.ExitStack,
           clock: common.Clock) -> int:
    """The handler of ``fnnet lm`` (exit status)."""
    import jax

    from fnnet._progress import tqdm
    from fnnet.data import load_ptb
    from fnnet.nets import LM_NETS
    from fnnet.results import environment, write_json
    from fnnet.train import init_from_seed
    from fnnet.train_lm import fit_lm, lm_optimizer, perplexity, steps_per_epoch

    resolve_book_defaults(args)
    device = common.select_device(args.device)
    common.check_run_outputs(args, held)
    if device is not None:
        held.enter_context(jax.default_device(device))
    if not args.no_compile_cache:
        common.enable_compile_cache()
    with clock.part("data"):
        corpus = load_ptb(data_dir=args.data_dir, download=not args.no_download,
                          progress=not args.no_progress, train_split=args.train_split)
    train_ids, vocabulary = corpus.train, corpus.vocabulary_size
    held_out = "valid" if corpus.valid is not None else "test"
    held_out_ids = corpus.valid if corpus.valid is not None else corpus.test
    if args.corpus_size is not None:
        if args.corpus_size < 2:
            raise UsageError("--corpus-size must be >= 2 (one prediction)")
        train_ids = train_ids[:args.corpus_size]
        vocabulary = int(train_ids.max()) + 1
        held_out, held_out_ids = "train words", train_ids  # the other splits: other words
    try:
        steps_per_epoch(len(train_ids), args.batch_size, args.time_size)  # fail now
    except ValueError as error:
        raise UsageError(f"--batch-size/--time-size: {error}") from None
    settings = common.settings(args)
    if args.resume:
        common.check_resume_settings(args.checkpoint_dir, settings, RESUME_KEYS)
    options = {"dropout": args.dropout} if args.net == "better-rnnlm" else {}
    try:
        net = LM_NETS[args.net](vocabulary, args.wordvec, args.hidden,
                                time_size=args.time_size, grads=args.grads, **options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    optimizer = lm_optimizer(args.optimizer, args.lr, max_grad=args.max_grad)
    clip = f"clip {args.max_grad}" if args.max_grad is not None else "no clipping"
    decay = f", lr ÷ {args.lr_decay:g} when {held_out} ppl does not improve" \
        if args.lr_decay else ""
    steps = (len(train_ids) - 1) // (args.batch_size * args.time_size)
    where = (device or jax.devices()[0]).platform
    print(f"fnnet lm: ptb {args.train_split} split ({len(train_ids):,} words, vocabulary "
          f"{vocabulary:,}; {held_out} {len(held_out_ids):,} words), {args.net} "
          f"D={args.wordvec} H={args.hidden}, grads={args.grads}, {args.optimizer} lr "
          f"{args.lr:g}, {clip}{decay}, batch {args.batch_size} × time {args.time_size}, "
          f"streams {args.streams}, {args.epochs} epochs × {steps} steps on {where}",
          flush=True)
    print(common.data_line(corpus.files), flush=True)
    with clock.part("init"):
        params, key = jax.block_until_ready(init_from_seed(net, args.seed))
    records: list[dict[str, Any]] = []

    def report(record: dict[str, Any]) -> None:
        records.append(record)
        tqdm.write(epoch_line(record, args.epochs, held_out))

    def write_outputs(status: str, summary: dict[str, Any] | None, history: dict[str, Any],
                      error: str | None = None) -> None:
        if args.out is not None:
            write_json(args.out, {"status": status, "error": error, "settings": settings,
                                  "data": {"files": list(corpus.files), "held_out": held_out,
                                           "vocabulary": vocabulary},
                                  "summary": summary, "history": history,
                                  "environment": environment()})

    def train() -> tuple[Any, Any]:
        return fit_lm(
            net, params, train_ids, held_out_ids, optimizer=optimizer, key=key,
            batch_size=args.batch_size, time_size=args.time_size, epochs=args.epochs,
            lr_decay=args.lr_decay, held_out=held_out, eval_batch_size=args.eval_batch_size,
            eval_time_size=args.eval_time_size, streams=args.streams,
            checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
            resume=args.resume, settings=settings,
            progress=not args.no_progress, on_epoch=report,
            matmul_precision=args.matmul_precision)

    outcome = common.run_fit("lm", train, records=records, write_outputs=write_outputs,
                             checkpoint_dir=args.checkpoint_dir, covers=f"{args.epochs} epochs",
                             clock=clock)
    if isinstance(outcome, int):
        return outcome
    params, history = outcome
    last = history.last()
    best_epoch = history.epoch[history.held_out_ppl.index(min(history.held_out_ppl))]
    summary = {"held_out": held_out, "final_ppl": last["held_out_ppl"],
               "best_ppl": min(history.held_out_ppl), "best_epoch": best_epoch,
               "train_ppl": last["train_ppl"], "epochs": last["epoch"], "steps": last["step"],
               "train_s": history.trained_s,
               "words_per_s": (last["step"] - history.start_step) * args.batch_size
               * args.time_size / history.trained_s}
    if held_out == "valid":
        with clock.part("evaluation"):
            summary["test_ppl"] = perplexity(net, params, corpus.test,
                                             batch_size=args.eval_batch_size,
                                             time_size=args.eval_time_size)
    test = f"; test perplexity {summary['test_ppl']:.2f}" if "test_ppl" in summary else ""
    print(f"done: {summary['steps']} steps, {summary['train_s']:.1f} s training "
          f"({summary['words_per_s']:,.0f} words/s); {held_out} perplexity "
          f"{summary['final_ppl']:.2f} (best {summary['best_ppl']:.2f} at epoch "
          f"{best_epoch}){test}")
    if args.plot is not None:
        from fnnet.plots import plot_perplexity

        with clock.part("outputs"):
            plot_perplexity(history, args.plot,
                            title=f"ptb ({args.train_split}), {args.net}, {args.grads}")
    summary["time"] = clock.summary()
    summary["compile_s"], summary["programs"] = (summary["time"]["compile_s"],
                                                 summary["time"]["programs"])
    write_outputs("complete", summary, history.to_dict())
    print(clock.line())
    return 0
