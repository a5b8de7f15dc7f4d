"""The book's §6.5 hyperparameter search on Fashion-MNIST, all trials in one vmapped program.

Settings as the book: 100 trials, learning rate 10^U(−6, −2), weight decay 10^U(−8, −4), the
6-layer 100-unit MLP (five hidden layers of 100, ReLU, He init: the book's MultiLayerNet
default weight_init_std="relu"), 500
training examples of which 20% are held out for validation, 50 epochs of batch 100, SGD.

    python experiments/hyperparameter_search.py                 # the sweep + the timing
    python experiments/hyperparameter_search.py --no-sequential # the sweep only

Writes ``experiments/results/hyperparameter_search.json`` (every trial; ``fnnet sweep --out``)
and ``.png`` (the book's figure 6-24 and lr × weight decay), then runs the same trials
``--sequential`` (one at a time through the same code) and writes the side-by-side timing to
``experiments/results/hyperparameter_search-timing.json`` and ``.md``. Compilation is timed
apart (``compile_s``); ``train_s`` is the training epochs, ``wall_s`` the whole sweep
(evaluation included).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fnnet.cli import _environment, _write_json, main

RESULTS = Path(__file__).resolve().parent / "results"
BOOK = ["--dataset", "fashion-mnist", "--net", "mlp", *["--hidden", "100"] * 5,
        "--activation", "relu", "--init", "he", "--optimizer", "sgd",
        "--lr", "1e-6:1e-2", "--weight-decay", "1e-8:1e-4", "--train-size", "500",
        "--validation", "0.2", "--epochs", "50", "--batch-size", "100", "--seed", "0",
        "--no-progress", "--no-compile-cache", "--top", "20"]


def run(label: str, flags: list[str], out: Path, plot: Path | None = None) -> dict:
    argv = ["sweep", *BOOK, "--trials", str(ARGS.trials), *flags, "--out", str(out)]
    if plot is not None:
        argv += ["--plot", str(plot)]
    print(f"== {label}: fnnet {' '.join(argv)}", flush=True)
    status = main(argv)
    if status:
        sys.exit(status)
    return json.loads(out.read_text())


def row(label: str, result: dict) -> dict:
    s = result["summary"]
    return {"mode": label, "chunks": s["chunks"], "chunk_size": s["chunk_size"],
            "model_steps": s["model_steps"], "train_s": s["train_s"],
            "model_steps_per_s": s["model_steps_per_s"], "compile_s": s["compile_s"],
            "wall_s": s["wall_s"]}


def table(rows: list[dict]) -> str:
    base = rows[-1]
    lines = ["| mode | chunks × trials | train s | model-steps/s | compile s | wall s "
             "| speed-up (train) | speed-up (wall) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['chunks']} × {r['chunk_size']} | {r['train_s']:.2f} | "
                     f"{r['model_steps_per_s']:,.0f} | {r['compile_s']:.2f} | {r['wall_s']:.2f} "
                     f"| {base['train_s'] / r['train_s']:.2f}× | "
                     f"{base['wall_s'] / r['wall_s']:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--no-sequential", action="store_true",
                        help="skip the timing against --sequential")
    ARGS = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    vmapped = run("vmapped", [], RESULTS / "hyperparameter_search.json",
                  RESULTS / "hyperparameter_search.png")
    if ARGS.no_sequential:
        sys.exit(0)
    rows = [row("vmapped, all trials at once", vmapped)]
    chunked = run("chunks of 10", ["--max-parallel", "10"],
                  RESULTS / "hyperparameter_search-chunks10.json")
    rows.append(row("vmapped, --max-parallel 10", chunked))
    sequential = run("sequential", ["--sequential"],
                     RESULTS / "hyperparameter_search-sequential.json")
    rows.append(row("--sequential (baseline)", sequential))
    same = all(a["val_acc"] == b["val_acc"] for a, b in zip(vmapped["trials"],
                                                             sequential["trials"], strict=True))
    text = table(rows)
    print(text)
    print(f"same validation accuracies vmapped and sequential: {same}")
    _write_json(RESULTS / "hyperparameter_search-timing.json",
                {"rows": rows, "same_val_acc": same, "settings": vmapped["settings"],
                 "environment": _environment()})
    (RESULTS / "hyperparameter_search-timing.md").write_text(
        f"# §6.5 search, {ARGS.trials} trials: vmapped vs sequential\n\n{text}\n\n"
        f"Same validation accuracies in both: {same}.\n")
