"""The book's chapter 4, trained by numerical gradient, timed against backpropagation.

Chapter 4 trains its ``TwoLayerNet`` (sigmoid, weights N(0, 0.01²), SGD lr 0.1, batches of
100 drawn with replacement) with ``numerical_gradient`` — two loss evaluations per parameter
and step — and plots the training loss at every iteration (figure 4-11); chapter 5 replaces the
gradient by backpropagation and times the two. Here both run through ``fnnet.train.fit``
from the same initial weights on the same batches: ``grads="manual"`` (the hand-written
backward rules) for ``--steps`` iterations, and ``grads="numerical"`` (central differences
over every parameter, :mod:`fnnet.numerical`) for the first ``--numerical-steps`` of them,
which is all the numerical gradient can afford. The loss curves coincide (the two gradients
differ only by the central differences' error); the time per iteration does not.

The dataset defaults to the bundled digits (64-50-10: 3 760 parameters, 7 520 forward passes
per numerical step); ``--dataset fashion-mnist`` is the book's 784-50-10 (79 520 forward
passes per step: hours on a CPU).

Writes ``numerical_gradient_training.json`` and ``.png`` into ``--out-dir``::

    python experiments/numerical_gradient_training.py
    python experiments/numerical_gradient_training.py --quick     # a smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jax
import numpy as np
from common import RESULTS

import fnnet
from fnnet.data import DATASETS, load_dataset
from fnnet.optim import sgd
from fnnet.results import environment, write_json
from fnnet.train import fit, init_from_seed


def train(grads: str, data: Any, args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """``steps`` iterations of the book's chapter-4 setup with gradients ``grads``."""
    net = fnnet.two_layer_net(data.x_train.shape[1], args.hidden, data.num_classes,
                              activation="sigmoid", weight_init="normal", grads=grads)
    params, key = init_from_seed(net, args.seed)  # the same init and batches for both
    _, history = fit(net, params, data, optimizer=sgd(args.lr), key=key, batch_size=100,
                     steps=steps, sampling="replacement", record_steps=True,
                     progress=not args.no_progress)
    seconds = history.trained_s
    # The median epoch's time per step: the first run of a program also pays its warm-up.
    per_step = float(np.median(1 / np.asarray(history.steps_per_s)))
    print(f"{grads:>9}: {steps} iterations, {per_step * 1e3:,.3f} ms each (compile "
          f"{history.compile_s:.1f} s), loss {history.step_loss[0]:.4f} -> "
          f"{history.step_loss[-1]:.4f}, test acc {history.test_acc[-1]:.4f}", flush=True)
    return {"step_loss": history.step_loss, "epoch": history.epoch, "step": history.step,
            "test_acc": history.test_acc, "train_acc": history.train_acc,
            "train_s": seconds, "s_per_step": per_step, "compile_s": history.compile_s}


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = load_dataset("digits" if args.quick else args.dataset, progress=False)
    steps = 14 if args.quick else args.steps  # quick: one epoch of digits, one program each
    numerical_steps = min(14 if args.quick else args.numerical_steps, steps)
    backprop = train("manual", data, args, steps)
    numerical = train("numerical", data, args, numerical_steps)
    gap = np.abs(np.subtract(numerical["step_loss"], backprop["step_loss"][:numerical_steps]))
    params = (data.x_train.shape[1] + 1) * args.hidden + (args.hidden + 1) * data.num_classes
    ratio = numerical["s_per_step"] / backprop["s_per_step"]
    print(f"numerical / backprop time per iteration: {ratio:,.0f}x; all {steps} iterations "
          f"numerically: ~{numerical['s_per_step'] * steps / 3600:.1f} h; largest loss gap "
          f"over the shared iterations {gap.max():.2e}")
    return {
        "settings": {"dataset": "digits" if args.quick else args.dataset,
                     "layers": [data.x_train.shape[1], args.hidden, data.num_classes],
                     "parameters": params, "forward_passes_per_numerical_step": 2 * params,
                     "activation": "sigmoid", "init": "normal (std 0.01, the book's)",
                     "optimizer": "sgd", "lr": args.lr, "batch_size": 100,
                     "sampling": "replacement", "steps": steps,
                     "numerical_steps": numerical_steps, "seed": args.seed,
                     "numerical_step_size": "cbrt(eps) * max(1, |theta|) (fnnet.numerical)"},
        "backprop": backprop, "numerical": numerical,
        "comparison": {"time_ratio": ratio, "max_loss_gap": float(gap.max()),
                       "numerical_hours_for_all_steps": numerical["s_per_step"] * steps / 3600},
        "environment": environment(),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Figure 4-11 (loss per iteration, backprop, every iteration) with the numerical run's
    iterations on it, the gap between the two runs per iteration, and the time per
    iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, bp, num = result["settings"], result["backprop"], result["numerical"]
    fig, (ax_all, ax_gap) = plt.subplots(1, 2, figsize=(12, 4.8),
                                         gridspec_kw={"width_ratios": [1.5, 1]})
    steps = np.arange(1, len(bp["step_loss"]) + 1)
    shared = np.arange(1, len(num["step_loss"]) + 1)
    ax_all.plot(steps, bp["step_loss"], lw=0.6, color="C0", label="backprop (manual rules)")
    ax_all.plot(shared, num["step_loss"], color="C3", lw=0.6, alpha=0.8,
                label=f"numerical gradient (first {len(shared)} iterations)")
    ax_all.set(xlabel="iteration", ylabel="training loss (the batch's)",
               title="figure 4-11: the loss at every iteration")
    gap = np.abs(np.subtract(num["step_loss"], bp["step_loss"][:len(shared)]))
    ax_gap.semilogy(shared, np.maximum(gap, 1e-9), lw=0.8, color="C3")
    ax_gap.set(xlabel="iteration", ylabel="|loss numerical − loss backprop| (0 at 1e-9)",
               title="how far apart the two runs are")
    for ax in (ax_all, ax_gap):
        ax.grid(alpha=0.3)
    ax_all.legend(loc="upper right", fontsize=8)
    ratio = result["comparison"]["time_ratio"]
    fig.text(0.5, 0.01, f"time per iteration: backprop {bp['s_per_step'] * 1e3:.3g} ms, "
             f"numerical gradient {num['s_per_step']:.3g} s — {ratio:,.0f}× slower "
             f"({s['forward_passes_per_numerical_step']:,} forward passes per step); all "
             f"{len(steps):,} iterations numerically: "
             f"~{result['comparison']['numerical_hours_for_all_steps']:.1f} h",
             ha="center", fontsize=9)
    layers = "-".join(map(str, s["layers"]))
    fig.suptitle(f"two-layer net {layers} (sigmoid, std 0.01) on {s['dataset']}: SGD lr "
                 f"{s['lr']}, batch {s['batch_size']} drawn with replacement, the same init "
                 f"and batches", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=10_000,
                        help="backprop iterations (the book's 10 000)")
    parser.add_argument("--numerical-steps", type=int, default=1500,
                        help="numerical-gradient iterations, the first of the same run "
                             "(digits: ~0.5 s each on a 2-core CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: digits, 14 iterations of each; writes "
                             "numerical_gradient_training_quick.*")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where the JSON and PNG go (the committed ones: "
                             "experiments/results)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden = 10
    with jax.default_matmul_precision("highest"):  # GPUs: no TF32 in either
        result = run(args)
    stem = "numerical_gradient_training" + ("_quick" if args.quick else "")
    path = write_json(args.out_dir / f"{stem}.json", result)
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
