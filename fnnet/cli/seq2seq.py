"""``fnnet seq2seq``: the sequel's encoder–decoders learn to add (chapter 7) and to read dates
(chapter 8)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from fnnet.cli import common, flags
from fnnet.cli.common import UsageError

# Settings that fix the trajectory: a resumed run must agree on them.
RESUME_KEYS = ("dataset", "net", "reverse", "size", "data_seed", "wordvec_size",
               "hidden_size", "lr", "max_grad", "batch_size", "seed")
DEFAULT_EPOCHS = {"addition": 25, "date": 10}
"""The book's epochs: 25 for addition (chapter 7), 10 for dates (chapter 8)."""


def add_parser(commands: Any) -> None:
    """The ``seq2seq`` subcommand on ``commands`` (the subparsers of ``fnnet``)."""
    from fnnet.data.seq2seq import DEFAULT_SEED, DEFAULT_SIZE, SEQ2SEQ_DATASETS
    from fnnet.layers import GRADS
    from fnnet.nets.seq2seq import SEQ2SEQ_NETS

    s2s = commands.add_parser(
        "seq2seq", help="train the sequel's seq2seq nets on addition or dates",
        description="Train the sequel's encoder-decoder (chapter 7: seq2seq, peeky; chapter "
                    "8: attention) on its generated addition or date set, with the book's "
                    "defaults (word vectors 16, hidden 128 — 256 for dates —, batch 128, "
                    "Adam, gradients clipped at norm 5). Prints one line per epoch with the "
                    "exact-match accuracy of greedy generation and a few decoded test "
                    "questions marked right or wrong.",
        formatter_class=common.DefaultsFormatter)
    data = s2s.add_argument_group("data")
    data.add_argument("--dataset", choices=SEQ2SEQ_DATASETS, default="addition",
                      help="addition = a+b, a, b in [0, 999]; date = dates in human forms "
                           "to ISO (both generated, no files)")
    data.add_argument("--reverse", action="store_true",
                      help="reverse the questions (the book's trick)")
    data.add_argument("--size", type=common.positive_int, default=DEFAULT_SIZE,
                      help="problems generated; the last tenth is the test set")
    data.add_argument("--data-seed", type=common.seed, default=DEFAULT_SEED,
                      help="seeds the generator")
    model = s2s.add_argument_group("model")
    model.add_argument("--net", choices=SEQ2SEQ_NETS, default="seq2seq",
                       help="seq2seq = the encoder's last h starts the decoder; peeky = it "
                            "also enters every decoder step; attention = the decoder attends "
                            "over all encoder states")
    model.add_argument("--wordvec-size", type=common.positive_int, default=16,
                       help="size of each character's embedding (the book's 16)")
    model.add_argument("--hidden-size", type=common.positive_int, default=None,
                       help="LSTM units (default: 128 for addition, 256 for date)")
    model.add_argument("--grads", choices=GRADS, default="manual",
                       help="manual = hand-derived custom_vjp rules, autodiff = jax.grad")
    opt = s2s.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=common.positive_int, default=None,
                     help="default: 25 for addition, 10 for date (the book's)")
    opt.add_argument("--batch-size", type=common.positive_int, default=128,
                     help="problems per Adam step (the book's 128)")
    opt.add_argument("--lr", type=common.positive_float, default=0.001,
                     help="the book's Adam's learning rate")
    opt.add_argument("--max-grad", type=common.positive_float, default=5.0,
                     help="clip the gradients' global norm to this (the book's clip_grads)")
    opt.add_argument("--seed", type=common.seed, default=0,
                     help="seeds the init and the batch order")
    run = s2s.add_argument_group("run")
    run.add_argument("--examples", type=int, default=3, metavar="K",
                     help="decoded test questions shown after each epoch (0: none)")
    run.add_argument("--ask", action="append", default=None, metavar="QUESTION",
                     help="a question of your own to answer after training (repeatable)")
    run.add_argument("--eval-train", type=common.positive_int, default=5000, metavar="N",
                     help="training accuracy each epoch on a fixed sample of N training "
                          "problems (the test set is always evaluated whole)")
    run.add_argument("--device", choices=("cpu", "gpu"), default=None,
                     help="restrict to this kind of device (default: JAX's default device)")
    run.add_argument("--out", type=Path, default=None,
                     help="write settings, per-epoch history, examples and summary as JSON")
    run.add_argument("--plot", type=Path, default=None,
                     help="write loss and accuracy curves as PNG here (needs matplotlib)")
    run.add_argument("--log-every", type=common.positive_int, default=1, metavar="K",
                     help="print the per-epoch line every K epochs (and for the last)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="do not use JAX's persistent compilation cache")
    ckpt = s2s.add_argument_group("checkpoints")
    flags.add_checkpoint_flags(ckpt)
    s2s.set_defaults(handler=run_seq2seq)


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One epoch of the log: step, mean loss, train and test exact-match accuracy, steps/s."""
    return (f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}  step {record['step']:>6}  "
            f"loss {record['loss']:.4f}  train acc {record['train_acc']:.4f}  "
            f"test acc {record['test_acc']:.4f}  {record['steps_per_s']:,.0f} steps/s")


def example_lines(data: Any, x: Any, t: Any, ids: Any) -> list[dict[str, Any]]:
    """Decoded questions as records: question, answer, generated answer, right."""
    return [{"question": data.question(q).rstrip(), "answer": data.answer(a).rstrip(),
             "guess": data.answer(g).rstrip(), "right": bool((a == g).all())}
            for q, a, g in zip(x, t, ids, strict=True)]


def format_example(example: dict[str, Any], width: int) -> str:
    """``  right  582+84   = 666`` or ``  wrong  3+17     = 21  (answer 20)``."""
    mark = "right" if example["right"] else "wrong"
    wrong = "" if example["right"] else f"  (answer {example['answer']})"
    guess = example["guess"] or "(blank)"
    return f"  {mark}  {example['question']:<{width}} = {guess}{wrong}"


def _check_args(args: argparse.Namespace, held: contextlib.ExitStack) -> None:
    if args.examples < 0:
        raise UsageError(f"--examples must be >= 0; got {args.examples}")
    common.check_run_outputs(args, held)
    test_size = args.size // 10
    if test_size < 1 or args.size - test_size < args.batch_size:
        raise UsageError(f"--size {args.size}: its training set ({args.size - test_size} "
                         f"problems, the first nine tenths) must hold a batch of "
                         f"--batch-size {args.batch_size} and its test set at least one")


@common.training_command
def run_seq2seq(args: argparse.Namespace, held: contextlib.ExitStack,
                clock: common.Clock) -> int:
    """The handler of ``fnnet seq2seq`` (exit status)."""
    import jax
    import numpy as np
    import optax

    from fnnet._progress import tqdm
    from fnnet.data.seq2seq import QUESTION_LENGTHS, VOCABULARIES, encode_questions
    from fnnet.nets import seq2seq as nets
    from fnnet.optim import adam, clip_grads
    from fnnet.results import environment, write_json
    from fnnet.train import fit, init_from_seed

    _check_args(args, held)
    asked = None
    if args.ask:
        try:
            asked = encode_questions(args.ask, VOCABULARIES[args.dataset],
                                     QUESTION_LENGTHS[args.dataset], reverse=args.reverse)
        except ValueError as error:
            raise UsageError(f"--ask: {error}") from None
    device = common.select_device(args.device)
    if not args.no_compile_cache:
        common.enable_compile_cache()
    args.epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    settings = common.settings(args)
    if args.resume:
        common.check_resume_settings(args.checkpoint_dir, settings, RESUME_KEYS)
    with clock.part("data"):
        from fnnet.data import load_seq2seq

        data = load_seq2seq(args.dataset, reverse=args.reverse, size=args.size,
                            seed=args.data_seed)
    config = nets.config_for(args.net, data, wordvec_size=args.wordvec_size,
                             hidden_size=args.hidden_size, grads=args.grads)
    net = nets.build(config)
    optimizer = optax.chain(clip_grads(args.max_grad), adam(args.lr))
    steps = args.epochs * (len(data.x_train) // args.batch_size)
    where = (device or jax.devices()[0]).platform
    print(f"fnnet seq2seq: {args.dataset}{' reversed' if args.reverse else ''} "
          f"({len(data.x_train)} train / {len(data.x_test)} test, vocabulary "
          f"{len(data.vocab)}), {args.net} (D {config.wordvec_size}, H {config.hidden_size}), "
          f"grads={args.grads}, Adam lr {args.lr}, clip {args.max_grad}, batch "
          f"{args.batch_size}, {steps} steps on {where}", flush=True)
    print(common.data_line(data.files), flush=True)
    with clock.part("init"):
        params, data_key = jax.block_until_ready(init_from_seed(net, args.seed))
    decode = jax.jit(lambda params, x: nets.generate(config, params, x)[0])
    shown = slice(0, min(args.examples, len(data.x_test)))
    width = max((len(data.question(q).rstrip()) for q in data.x_test[shown]), default=0)
    records: list[dict[str, Any]] = []
    examples: list[list[dict[str, Any]]] = []

    def report(record: dict[str, Any]) -> None:
        records.append(record)
        if record["epoch"] % args.log_every == 0 or record["epoch"] == args.epochs:
            tqdm.write(epoch_line(record, args.epochs))

    def show_examples(record: dict[str, Any], params: Any, state: Any) -> None:
        if not args.examples:
            return
        with clock.part("examples"):
            ids = np.asarray(decode(params, data.x_test[shown]))
            examples.append(example_lines(data, data.x_test[shown], data.t_test[shown], ids))
        if record["epoch"] % args.log_every == 0 or record["epoch"] == args.epochs:
            for example in examples[-1]:
                tqdm.write(format_example(example, width))

    def write_outputs(status: str, summary: dict[str, Any] | None, history: dict[str, Any],
                      error: str | None = None) -> None:
        if args.out is not None:
            write_json(args.out, {"status": status, "error": error, "settings": settings,
                                  "data": {"files": list(data.files),
                                           "vocabulary": data.vocab.chars},
                                  "summary": summary, "history": history,
                                  "examples": examples, "environment": environment()})

    def train() -> tuple[Any, Any]:
        return fit(
            net, params, data, optimizer=optimizer, key=data_key, batch_size=args.batch_size,
            epochs=args.epochs, device=device, checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every, resume=args.resume, settings=settings,
            progress=not args.no_progress, on_epoch=report, on_epoch_params=show_examples,
            eval_train=args.eval_train)

    outcome = common.run_fit("seq2seq", train, records=records, write_outputs=write_outputs,
                             checkpoint_dir=args.checkpoint_dir, covers=f"{steps} steps",
                             clock=clock)
    if isinstance(outcome, int):
        return outcome
    params, history = outcome
    last = history.last()
    best = int(np.argmax(history.test_acc))
    summary = {
        "test_acc": last["test_acc"], "train_acc": last["train_acc"],
        "test_loss": last["test_loss"], "best_test_acc": history.test_acc[best],
        "best_epoch": history.epoch[best], "steps": last["step"], "epochs": last["epoch"],
        "train_s": history.trained_s,  # this command's training (after a resume too)
        "steps_per_s": (last["step"] - history.start_step) / history.trained_s,
        "train_eval_size": history.train_eval_size,
    }
    print(f"done: {summary['steps']} steps, {summary['train_s']:.2f} s training "
          f"({summary['steps_per_s']:,.0f} steps/s); test exact-match accuracy "
          f"{summary['test_acc']:.4f} (best {summary['best_test_acc']:.4f} at epoch "
          f"{summary['best_epoch']}), train {summary['train_acc']:.4f} (on "
          f"{history.train_eval_size} problems)")
    if asked is not None:
        with clock.part("examples"):
            ids = np.asarray(decode(params, asked))
        summary["asked"] = {question: data.answer(row).rstrip()
                            for question, row in zip(args.ask, ids, strict=True)}
        for question, answer in summary["asked"].items():
            print(f"ask: {question} = {answer or '(blank)'}")
    if args.plot is not None:
        from fnnet.plots import plot_history

        with clock.part("outputs"):
            plot_history(history, args.plot, title=f"{args.dataset}"
                         f"{' reversed' if args.reverse else ''}, {args.net}, {args.grads} "
                         f"(accuracy: exact match)")
    summary["time"] = clock.summary()
    write_outputs("complete", summary, history.to_dict())
    print(clock.line())
    return 0
