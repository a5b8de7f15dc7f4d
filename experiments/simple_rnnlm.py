"""The sequel's chapter-5 experiment: SimpleRnnlm on the first 1 000 words of Penn Treebank.

The book's ``ch05/train_custom_loop.py``: the first 1 000 words (their own vocabulary, max id
+ 1), TimeEmbedding → TimeRNN → TimeAffine with D = H = 100, batch 10 × time 5, SGD lr 0.1,
no clipping, 100 epochs, the streams running on from epoch to epoch with the state carried;
its figure is the training perplexity of each epoch (the mean loss over the epoch's steps),
which falls from about the vocabulary size towards a few words. fnnet also reports the
perplexity of the same 1 000 words scored after each epoch with the state carried (eval
mode). Trained with the hand rules and with jax.grad side by side, same init.

Writes ``experiments/results/simple_rnnlm.json`` and ``simple_rnnlm.png``.

    PYTHONPATH=. python experiments/simple_rnnlm.py [--data-dir DIR] [--epochs 100]
"""

from __future__ import annotations

from pathlib import Path

import jax
from common import lm_corpus, lm_parser, write

from fnnet.nets import BOOK_RUNS, simple_rnnlm
from fnnet.train_lm import fit_lm, lm_optimizer


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for grads, h in result["runs"].items():
        style = "-" if grads == "manual" else "--"
        ax.plot(h["epoch"], h["train_ppl"], style, label=f"{grads}: training perplexity")
        ax.plot(h["epoch"], h["held_out_ppl"], style, alpha=0.6,
                label=f"{grads}: the {result['settings']['corpus_size']} words, scored")
    s = result["settings"]
    ax.set(xlabel="epoch", ylabel="perplexity", yscale="log",
           title=f"SimpleRnnlm on the first {s['corpus_size']} words\n({result['source']})")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    book = BOOK_RUNS["simple-rnnlm"]
    p = lm_parser(__doc__)
    p.add_argument("--epochs", type=int, default=book.epochs)
    p.add_argument("--corpus-size", type=int, default=book.corpus_size)
    args = p.parse_args(argv)
    corpus = lm_corpus(args)
    sizes = dict(wordvec_size=book.wordvec_size, hidden_size=book.hidden_size)
    epochs = 3 if args.quick else args.epochs
    if args.quick:
        sizes = dict(wordvec_size=8, hidden_size=8)
    ids = corpus["train"][:args.corpus_size]
    vocabulary = int(ids.max()) + 1
    params = None
    runs = {}
    for grads in ("manual",) if args.quick else ("manual", "autodiff"):
        net = simple_rnnlm(vocabulary, **sizes, time_size=book.time_size, grads=grads)
        params = net.init(jax.random.key(args.seed)) if params is None else params
        _, history = fit_lm(net, params, ids, ids, optimizer=lm_optimizer("sgd", book.lr),
                            key=jax.random.key(args.seed), batch_size=book.batch_size,
                            time_size=book.time_size, epochs=epochs, streams=book.streams,
                            held_out="train words", progress=not args.no_progress)
        runs[grads] = history.to_dict()
        print(f"{grads:>8}: training perplexity {history.train_ppl[0]:.1f} → "
              f"{history.train_ppl[-1]:.2f} over {epochs} epochs "
              f"({history.wall_s[-1]:.1f} s, compile {history.compile_s:.1f} s)")
    result = {"source": corpus["source"], "files": corpus["files"],
              "settings": {"corpus_size": len(ids), "vocabulary": vocabulary, **sizes,
                           "batch_size": book.batch_size, "time_size": book.time_size,
                           "lr": book.lr, "epochs": epochs, "streams": book.streams,
                           "seed": args.seed, "book_script": book.script},
              "runs": runs}
    write("simple_rnnlm", args, result, plot)
    return result


if __name__ == "__main__":
    main()
