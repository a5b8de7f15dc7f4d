"""The sequel's chapter-6 Rnnlm: held-out perplexity by seed, with and without "lr ÷ 4".

``ch06/train_rnnlm.py``'s settings — D = H = 100, batch 20 × time 35, SGD lr 20, clipped at
0.25, the streams running on between epochs — for several seeds, each trained twice from
the same init: as ``train_rnnlm.py`` does (a constant learning rate) and with the book's
``train_better_rnnlm.py`` rule (the learning rate divided by 4 after an epoch whose held-out
perplexity is not the best so far). Recorded: every epoch's held-out perplexity and
learning rate, the best and the epoch it came at. Trained on PTB's train split when
``ptb.train.txt`` is found, else on the valid split with the test split held out (then the
rule, like the "best", reads the test perplexity: there is no third split); the JSON says
which.

Writes ``experiments/results/rnnlm_perplexity.{json,md,png}``.

    PYTHONPATH=. python experiments/rnnlm_perplexity.py [--seeds 5] [--epochs 8]
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from common import book_rnnlm, lm_corpus, lm_parser, write

from fnnet.nets import BOOK_RUNS
from fnnet.train_lm import fit_lm, lm_optimizer

RULES = {"constant lr": None, "lr ÷ 4": 4.0}
"""The two schedules: ``lr_decay`` of :func:`fnnet.train_lm.fit_lm`."""


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result["runs"]), figsize=(11, 4.5), sharey=True)
    for ax, (label, runs) in zip(np.atleast_1d(axes), result["runs"].items(), strict=True):
        for run in runs:
            ax.plot(run["epoch"], run["held_out_ppl"], marker="o", alpha=0.8,
                    label=f"seed {run['seed']} (best {run['best']:.1f})")
        ax.axhline(result["target"], color="grey", linestyle="--", linewidth=1)
        ax.set(xlabel="epoch", title=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set(ylabel=f"{result['held_out']} perplexity")
    fig.suptitle(f"Rnnlm, the book's settings, by seed ({result['source']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(result: dict) -> str:
    lines = [f"Rnnlm best {result['held_out']} perplexity within {result['settings']['epochs']}"
             f" epochs ({result['source']}; dashed line: {result['target']})", "",
             "| schedule | " + " | ".join(f"seed {r['seed']}" for r in
                                          next(iter(result['runs'].values()))) + " | median |",
             "|---|" + "---:|" * (len(next(iter(result["runs"].values()))) + 1)]
    for label, runs in result["runs"].items():
        cells = [f"{r['best']:.1f} (ep {r['best_epoch']})" for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {result['median_best'][label]:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    book = BOOK_RUNS["rnnlm"]
    p = lm_parser(__doc__)
    p.add_argument("--seeds", type=int, default=5, help="seeds --seed, --seed + 1, …")
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args(argv)
    corpus = lm_corpus(args)
    net, sizes, batch, time_size, epochs = book_rnnlm(args, corpus["vocabulary"], args.epochs,
                                                      quick_epochs=3)
    runs: dict[str, list[dict]] = {label: [] for label in RULES}
    for seed in range(args.seed, args.seed + args.seeds):
        params = net.init(jax.random.key(seed))
        for label, lr_decay in RULES.items():
            records: list[dict] = []
            fit_lm(net, params, corpus["train"], corpus["held_out"],
                   optimizer=lm_optimizer("sgd", book.lr, max_grad=book.max_grad),
                   key=jax.random.key(seed), batch_size=batch, time_size=time_size,
                   epochs=epochs, streams=book.streams, lr_decay=lr_decay,
                   held_out=corpus["held_out_name"], progress=not args.no_progress,
                   on_epoch=records.append)
            ppl = [r["held_out_ppl"] for r in records]
            best = int(np.argmin(ppl))
            runs[label].append({"seed": seed, "epoch": [r["epoch"] for r in records],
                                "held_out_ppl": ppl, "lr": [r["lr"] for r in records],
                                "best": ppl[best], "best_epoch": records[best]["epoch"]})
            print(f"seed {seed} {label:>11}: {corpus['held_out_name']} perplexity by epoch "
                  f"{[round(x, 1) for x in ppl]} (best {ppl[best]:.1f})", flush=True)
    result = {"source": corpus["source"], "files": corpus["files"],
              "held_out": corpus["held_out_name"], "target": 310.0,
              "settings": {"vocabulary": corpus["vocabulary"], **sizes, "batch_size": batch,
                           "time_size": time_size, "lr": book.lr, "max_grad": book.max_grad,
                           "epochs": epochs, "streams": book.streams,
                           "book_script": book.script},
              "runs": runs,
              "median_best": {label: float(np.median([r["best"] for r in rs]))
                              for label, rs in runs.items()}}
    print(table(result))
    path = write("rnnlm_perplexity", args, result, plot)
    path.with_suffix(".md").write_text(table(result))
    return result


if __name__ == "__main__":
    main()
