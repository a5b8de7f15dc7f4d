"""The book's §6.5 hyperparameter search on Fashion-MNIST, all trials in one vmapped program.

Settings as the book: 100 trials, learning rate 10^U(−6, −2), weight decay 10^U(−8, −4), the
6-layer 100-unit MLP (five hidden layers of 100, ReLU, He init: the book's MultiLayerNet
default weight_init_std="relu"), 500
training examples of which 20% are held out for validation, 50 epochs of batch 100, SGD.

    python experiments/hyperparameter_search.py                 # the sweep + the timing
    python experiments/hyperparameter_search.py --no-sequential # the sweep only

Writes ``experiments/runs/hyperparameter_search.json`` (every trial; ``fnnet sweep --out``)
and ``.png`` (the book's figure 6-24 and lr × weight decay), then runs the same trials on one
device (chunks of the default size, then all at once) and ``--sequential`` (one at a time
through the same code), and writes the side-by-side timing to
``experiments/runs/hyperparameter_search-timing.json`` and ``.md`` (with how far the
vmapped and sequential trials are apart; the timing runs' own JSON is not kept).
Compilation is timed apart (``compile_s``); ``train_s`` is the training epochs with their
evaluation, ``wall_s`` the whole sweep.

Each row's rate is also given in GFLOP/s, against the device's float32 matmul peak measured in
the same run (a jitted 2048² matmul on all cores, ``benchmark.matmul_peak``): no batching of
trials can beat ``peak / sequential rate``. FLOPs of one model step, for the MLP d₀-…-d_L with
batch B and E examples evaluated per epoch of S steps (forward F = Σ dᵢ·dᵢ₊₁ multiply-adds per
example): training 2·B·(3F − d₀d₁) (forward, dW of every layer, dx of all but the first) plus
evaluation 2·E·F/S.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
from benchmark import matmul_peak
from common import RESULTS

from fnnet.cli import main
from fnnet.parallel import one_cpu_device_per_core
from fnnet.results import environment, write_json

WIDTHS = [784, *[100] * 5, 10]  # the net of BOOK below
TRAIN, VALIDATION, BATCH = 400, 100, 100  # --train-size 500, --validation 0.2
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


def flops_per_model_step() -> float:
    """FLOPs of one training step plus its share of the epoch's evaluation (module docstring)."""
    forward = sum(a * b for a, b in itertools.pairwise(WIDTHS))
    training = 2 * BATCH * (3 * forward - WIDTHS[0] * WIDTHS[1])
    return training + 2 * (TRAIN + VALIDATION) * forward / (TRAIN // BATCH)


def compare(trials: list[dict], baseline: list[dict]) -> dict:
    """How far two runs of the same trials are apart: final validation and test accuracy,
    and the training-loss curves (relative)."""
    pairs = list(zip(trials, baseline, strict=True))
    val = np.array([[a["val_acc"], b["val_acc"]] for a, b in pairs])
    test = np.array([[a["test_acc"], b["test_acc"]] for a, b in pairs])
    loss = max(float(np.max(np.abs(np.subtract(a["curves"]["loss"], b["curves"]["loss"]))
                            / np.abs(b["curves"]["loss"]))) for a, b in pairs)
    return {"val_acc_differ": int(np.sum(val[:, 0] != val[:, 1])),
            "max_val_acc_diff": float(np.max(np.abs(val[:, 0] - val[:, 1]))),
            "max_test_acc_diff": float(np.max(np.abs(test[:, 0] - test[:, 1]))),
            "max_loss_rel_diff": loss}


def row(label: str, result: dict) -> dict:
    s = result["summary"]
    return {"mode": label, "devices": s["devices"], "chunks": s["chunks"],
            "chunk_size": s["chunk_size"], "model_steps": s["model_steps"],
            "train_s": s["train_s"], "model_steps_per_s": s["model_steps_per_s"],
            "gflops": s["model_steps_per_s"] * flops_per_model_step() / 1e9,
            "compile_s": s["compile_s"], "wall_s": s["wall_s"]}


def table(rows: list[dict]) -> str:
    base = rows[-1]
    lines = ["| mode | devices | chunks × trials | train s | model-steps/s | GFLOP/s | compile s "
             "| wall s | speed-up (train) | speed-up (wall) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['devices']} | {r['chunks']} × {r['chunk_size']} "
                     f"| {r['train_s']:.2f} | {r['model_steps_per_s']:,.0f} | {r['gflops']:.0f} "
                     f"| {r['compile_s']:.2f} | {r['wall_s']:.2f} "
                     f"| {base['train_s'] / r['train_s']:.2f}× | "
                     f"{base['wall_s'] / r['wall_s']:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--no-sequential", action="store_true",
                        help="skip the timing against --sequential")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where the results go (the committed ones: experiments/results)")
    ARGS = parser.parse_args()
    one_cpu_device_per_core()  # as the fnnet command does for itself
    OUT = ARGS.out_dir
    OUT.mkdir(parents=True, exist_ok=True)
    vmapped = run("vmapped", [], OUT / "hyperparameter_search.json",
                  OUT / "hyperparameter_search.png")
    if ARGS.no_sequential:
        sys.exit(0)
    rows = [row("vmapped, the defaults", vmapped)]
    with tempfile.TemporaryDirectory() as scratch:  # timing runs: only their summaries are kept
        one_device = run("one device", ["--devices", "1"], Path(scratch) / "one-device.json")
        rows.append(row("vmapped, --devices 1", one_device))
        all_at_once = run("all at once", ["--devices", "1", "--max-parallel", str(ARGS.trials)],
                          Path(scratch) / "all-at-once.json")
        rows.append(row(f"vmapped, --devices 1 --max-parallel {ARGS.trials}", all_at_once))
        sequential = run("sequential", ["--sequential"], Path(scratch) / "sequential.json")
        rows.append(row("--sequential (baseline)", sequential))
    agreement = compare(vmapped["trials"], sequential["trials"])
    same = agreement["val_acc_differ"] == 0
    peak = matmul_peak(jax.devices()[0], 2048, 5, bf16=False)["jax"]
    bound = peak / rows[-1]["gflops"]
    text = table(rows)
    notes = (f"float32 matmul peak of the device (jitted 2048² matmul, all cores): "
             f"{peak:.0f} GFLOP/s; one model step = {flops_per_model_step() / 1e6:.1f} MFLOP "
             f"with its share of evaluation; so no batching can be more than "
             f"{bound:.1f}× --sequential here.\n"
             f"Vmapped (the defaults) against sequential: {agreement['val_acc_differ']} of "
             f"{ARGS.trials} final validation accuracies differ (by ≤ "
             f"{agreement['max_val_acc_diff']:.3f}), test accuracies by ≤ "
             f"{agreement['max_test_acc_diff']:.4f}, loss curves by ≤ "
             f"{agreement['max_loss_rel_diff']:.2%} relative (float32 rounding, amplified by "
             f"{vmapped['summary']['epochs'] * vmapped['summary']['steps_per_epoch']} SGD "
             f"steps).")
    print(text)
    print(notes)
    write_json(OUT / "hyperparameter_search-timing.json",
                {"rows": rows, "same_val_acc": same, "agreement": agreement,
                 "matmul_peak_gflops": peak,
                 "flops_per_model_step": flops_per_model_step(), "speed_up_bound": bound,
                 "settings": vmapped["settings"], "environment": environment()})
    (OUT / "hyperparameter_search-timing.md").write_text(
        f"# §6.5 search, {ARGS.trials} trials: vmapped vs sequential\n\n{text}\n\n{notes}\n")
