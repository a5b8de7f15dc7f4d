"""The sequel's chapter-7 comparison: seq2seq learning to add, plain, with reversed questions,
and reversed + peeky — test exact-match accuracy per epoch, the three curves on one plot.

The book's settings: the generated addition set (45 000 / 5 000), word vectors 16, hidden
128, batch 128, Adam (lr 0.001) after clipping the gradients' norm at 5, 25 epochs. Each run
is ``fnnet seq2seq`` (the JSON records its command). Writes
``experiments/results/seq2seq_addition.json`` (rewritten after each run) and ``.png``; the
JSON records, for reversed + peeky, the accuracy at epoch 15, the first epoch reaching 95%
and the best within the run, and whether the curves are ordered as the book shows them.

    python experiments/seq2seq_addition.py             # ~3 × 25 epochs
    python experiments/seq2seq_addition.py --quick     # 1 000 problems, 2 epochs: smoke run
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seq2seq_runs import book_settings, first_epoch_reaching, parser, train_run

from fnnet.data import load_seq2seq
from fnnet.results import environment

RUNS = {"baseline": ("seq2seq", False), "reversed": ("seq2seq", True),
        "reversed + peeky": ("peeky", True)}


def plot(result: dict[str, Any], path: Path) -> None:
    """Test accuracy against the epoch, one line per run (the book's figure 7-25)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, run), marker in zip(result["runs"].items(), "os^", strict=False):
        h = run["history"]
        ax.plot(h["epoch"], [100 * a for a in h["test_acc"]], marker=marker, label=label)
    s = result["settings"]
    ax.set(xlabel="epoch", ylabel="test accuracy (exact match, %)", ylim=(0, 100),
           title=f"seq2seq on addition: D {s['wordvec_size']}, H {s['hidden_size']}, batch "
                 f"{s['batch_size']}, Adam {s['lr']}, clip {s['max_grad']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarise(runs: dict[str, Any]) -> dict[str, Any]:
    """The targets' figures from the runs done so far."""
    summary: dict[str, Any] = {label: {"best_test_acc": run["best_test_acc"],
                                       "best_epoch": run["best_epoch"],
                                       "final_test_acc": run["history"]["test_acc"][-1]}
                               for label, run in runs.items()}
    if "reversed + peeky" in runs:
        acc = runs["reversed + peeky"]["history"]["test_acc"]
        summary["peeky_acc_at_epoch_15"] = acc[14] if len(acc) >= 15 else None
        summary["peeky_first_epoch_at_95"] = first_epoch_reaching(acc, 0.95)
    if len(runs) == len(RUNS):
        best = [runs[label]["best_test_acc"] for label in RUNS]
        summary["ordered_as_the_book"] = best[0] < best[1] < best[2]
    return summary


def main(argv: list[str] | None = None) -> Path:
    p = parser(__doc__, epochs=25, quick="1 000 problems, 2 epochs")
    p.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    args = p.parse_args(argv)
    settings = book_settings(args, hidden_size=128, quick_epochs=2)
    stem = "seq2seq_addition_quick" if args.quick else "seq2seq_addition"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{stem}.json"
    runs: dict[str, Any] = {}
    for label in args.runs:
        net, reverse = RUNS[label]
        data = load_seq2seq("addition", reverse=reverse, size=settings["size"])
        runs[label], _, _ = train_run(net, data, settings, label=label,
                                      progress=not args.no_progress)
        result = {"settings": settings, "runs": runs, "summary": summarise(runs),
                  "environment": environment()}
        path.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, path.with_suffix(".png"))
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return path


if __name__ == "__main__":
    main()
