"""The sequel's chapter-8 experiment: attention seq2seq learning to read dates — test
exact-match accuracy per epoch, and the attention map of a few test questions (which input
characters each output character reads).

The book's settings: the generated date set (45 000 / 5 000), questions reversed, word
vectors 16, hidden 256, batch 128, Adam (lr 0.001) after clipping the gradients' norm at 5,
10 epochs. The run is ``fnnet seq2seq --dataset date --net attention --reverse`` (the JSON
records the command). Writes ``experiments/results/seq2seq_dates.json`` and ``.png`` (the
accuracy curve) and ``seq2seq_dates_attention.png`` (the maps, questions shown un-reversed,
left to right).

    python experiments/seq2seq_dates.py              # 10 epochs
    python experiments/seq2seq_dates.py --quick      # 1 000 dates, 1 epoch: smoke run
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from seq2seq_runs import book_settings, first_epoch_reaching, parser, train_run

from fnnet.data import load_seq2seq
from fnnet.nets import seq2seq as nets
from fnnet.results import environment


def plot_accuracy(result: dict[str, Any], path: Path) -> None:
    """Test accuracy against the epoch (the book's figure 8-26, attention alone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, s = result["run"]["history"], result["settings"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(h["epoch"], [100 * a for a in h["test_acc"]], "o-", label="attention (test)")
    ax.plot(h["epoch"], [100 * a for a in h["train_acc"]], "s--", label="attention (train)")
    ax.set(xlabel="epoch", ylabel="accuracy (exact match, %)", ylim=(0, 101),
           title=f"attention seq2seq on dates: H {s['hidden_size']}, batch "
                 f"{s['batch_size']}, reversed questions")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_attention(maps: list[dict[str, Any]], path: Path) -> None:
    """One heat map per example: rows the generated characters, columns the question's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(5.5 * len(maps), 4.2), squeeze=False)
    for ax, example in zip(axes[0], maps, strict=True):
        weights = np.asarray(example["weights"])
        ax.imshow(weights, cmap="gray", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(example["question"])), list(example["question"]), fontsize=8)
        ax.set_yticks(range(len(example["guess"])), list(example["guess"]), fontsize=8)
        ax.set(xlabel="question", ylabel="output", title=repr(example["question"]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def attention_maps(config: nets.Seq2seqConfig, params: Any, data: Any,
                   rows: list[int]) -> list[dict[str, Any]]:
    """The attention weights of test questions ``rows``, columns in reading order (the
    questions are reversed for the net: the map is flipped back) and trailing padding cut."""
    import jax

    x = data.x_test[rows]
    ids, _, weights = jax.jit(lambda p, x: nets.generate(config, p, x))(params, x)
    maps = []
    for row, q, g, w in zip(rows, x, np.asarray(ids), np.asarray(weights), strict=True):
        question = data.question(q).rstrip()
        w = w[:, ::-1] if data.reverse else w
        maps.append({"row": row, "question": question, "guess": data.answer(g),
                     "answer": data.answer(data.t_test[row]),
                     "weights": np.round(w[:, :len(question)], 4).tolist()})
    return maps


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__, epochs=10, quick="1 000 dates, 1 epoch")
    p.add_argument("--examples", type=int, nargs="+", default=[0, 1, 2],
                   help="test rows whose attention is drawn")
    args = p.parse_args(argv)
    settings = book_settings(args, hidden_size=256, quick_epochs=1)
    data = load_seq2seq("date", reverse=True, size=settings["size"])
    run, params, config = train_run("attention", data, settings, label="attention",
                                    progress=not args.no_progress)
    acc = run["history"]["test_acc"]
    maps = attention_maps(config, params, data, args.examples)
    result = {"settings": settings, "run": run,
              "summary": {"best_test_acc": run["best_test_acc"], "best_epoch": run["best_epoch"],
                          "first_epoch_at_99": first_epoch_reaching(acc, 0.99),
                          "final_test_acc": acc[-1]},
              "attention": maps, "environment": environment()}
    stem = "seq2seq_dates_quick" if args.quick else "seq2seq_dates"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot_accuracy(result, path.with_suffix(".png"))
    plot_attention(maps, args.out_dir / f"{stem}_attention.png")
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {path}, {path.with_suffix('.png').name} and {stem}_attention.png")
    return path


if __name__ == "__main__":
    main()
