"""The sequel's chapter-6 Rnnlm with and without gradient clipping.

``ch06/train_rnnlm.py``'s settings — D = H = 100, batch 20 × time 35, SGD lr 20, the
streams running on between epochs — once with the book's ``clip_grads`` at 0.25 and once
without, from the same init. Recorded: the training perplexity of every step (exp of its
loss; plotted as the book does, the mean over each 20 steps), the held-out perplexity after
each epoch, and where a run diverged (a non-finite loss stops it). Trained on PTB's train
split when ``ptb.train.txt`` is found, else on the valid split (scored on test); the JSON
says which.

Writes ``experiments/results/rnnlm_clipping.json`` and ``rnnlm_clipping.png``.

    PYTHONPATH=. python experiments/rnnlm_clipping.py [--data-dir DIR] [--epochs 4]
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from common import book_rnnlm, lm_corpus, lm_parser, write

from fnnet.nets import BOOK_RUNS
from fnnet.train import NonFiniteLossError
from fnnet.train_lm import fit_lm, lm_optimizer

EVAL_INTERVAL = 20
"""The book's ``eval_interval``: its curve is the mean perplexity of each 20 steps."""


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_steps, ax_epochs) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, run in result["runs"].items():
        ppl = np.exp(np.minimum(np.asarray(run["step_loss"], float), 50))
        k = result["settings"]["eval_interval"]
        means = [ppl[i:i + k].mean() for i in range(0, len(ppl) - k + 1, k)]
        ax_steps.plot(np.arange(1, len(means) + 1) * k, means, label=label)
        if run["diverged_at_step"] is not None:
            ax_steps.axvline(run["diverged_at_step"], color="red", alpha=0.4, linestyle="--")
        ax_epochs.plot(run["epoch"], run["held_out_ppl"], marker="o", label=label)
    ax_steps.set(xlabel="step", ylabel=f"training perplexity (mean of {k} steps)",
                 yscale="log", title="training")
    ax_epochs.set(xlabel="epoch", ylabel=f"{result['held_out']} perplexity", yscale="log",
                  title="held out")
    for ax in (ax_steps, ax_epochs):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(f"Rnnlm with and without gradient clipping\n({result['source']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    book = BOOK_RUNS["rnnlm"]
    p = lm_parser(__doc__)
    p.add_argument("--epochs", type=int, default=book.epochs)
    p.add_argument("--lr", type=float, default=book.lr)
    args = p.parse_args(argv)
    corpus = lm_corpus(args)
    net, sizes, batch, time_size, epochs = book_rnnlm(args, corpus["vocabulary"], args.epochs,
                                                      quick_epochs=2)
    params = net.init(jax.random.key(args.seed))
    runs = {}
    for label, max_grad in ((f"clipped at {book.max_grad}", book.max_grad),
                            ("not clipped", None)):
        records: list[dict] = []
        diverged = None
        try:
            fit_lm(net, params, corpus["train"], corpus["held_out"],
                   optimizer=lm_optimizer("sgd", args.lr, max_grad=max_grad),
                   key=jax.random.key(args.seed), batch_size=batch, time_size=time_size,
                   epochs=epochs, streams=book.streams, held_out=corpus["held_out_name"],
                   progress=not args.no_progress, on_epoch=records.append)
        except NonFiniteLossError as error:
            diverged = error.step
            print(f"{label}: {error}")
        runs[label] = {"epoch": [r["epoch"] for r in records],
                       "held_out_ppl": [r["held_out_ppl"] for r in records],
                       "step_loss": [x for r in records for x in r["step_losses"]],
                       "diverged_at_step": diverged, "max_grad": max_grad}
        best = min(runs[label]["held_out_ppl"], default=float("nan"))
        print(f"{label:>15}: {corpus['held_out_name']} perplexity by epoch "
              f"{[round(x, 1) for x in runs[label]['held_out_ppl']]} (best {best:.1f})")
    result = {"source": corpus["source"], "files": corpus["files"],
              "held_out": corpus["held_out_name"],
              "settings": {"vocabulary": corpus["vocabulary"], **sizes, "batch_size": batch,
                           "time_size": time_size, "lr": args.lr, "epochs": epochs,
                           "streams": book.streams, "seed": args.seed,
                           "eval_interval": EVAL_INTERVAL if not args.quick else 2,
                           "book_script": book.script},
              "runs": runs}
    write("rnnlm_clipping", args, result, plot)
    return result


if __name__ == "__main__":
    main()
