"""The book's figure 6-19 (``batch_norm_test.py``) on Fashion-MNIST: training with and without
batch norm from 16 initial weight scales.

``MultiLayerNetExtend(784, [100, 100, 100, 100, 100], 10)`` (the book's script has five hidden
layers), ReLU, ``W ~ N(0, w²)`` for ``w`` in ``np.logspace(0, -4, 16)``, with
(Affine → BatchNorm → ReLU) or without batch norm; the first 1 000 training examples, SGD lr
0.01, batch 100 drawn with replacement, 20 epochs of 10 steps. For each scale both nets start
from the same weights and see the same batches. Train accuracy (eval mode: batch norm uses its
running statistics) is recorded before training and after every epoch; the plot is the book's
4×4 grid of those curves. (Departures: the book evaluates after steps 1, 11, …, 191, here
after 0, 10, …, 200. The book's running variance starts at 0, fnnet's layer's at 1: the
script sets it to 0, ``--running-var-init 1`` keeps fnnet's. It matters in eval mode: with
small weights the batch variance is ~w² ≪ 1, and a running variance still weighted towards 1
(0.9^k after k steps) shrinks the eval-mode activations, so the accuracy lags the training.)

    python experiments/batch_norm_comparison.py           # Fashion-MNIST, a few minutes
    python experiments/batch_norm_comparison.py --quick   # digits, 2 scales, 2 epochs
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from common import load, parser, replot, write

import fnnet
from fnnet.optim import sgd
from fnnet.train import batch_indices, evaluate, init_train_state, make_epoch


def initial_state(net, running_var: float) -> dict[str, Any]:
    """The net's initial state with every batch norm's running variance set to
    ``running_var`` (the book starts it at 0, fnnet's layer at 1)."""
    return {name: {**layer, "var": jnp.full_like(layer["var"], running_var)}
            for name, layer in net.init_state().items()}


def train(net, epoch, params, data, optimizer, *, key, epochs: int, batch_size: int,
          running_var: float) -> dict[str, Any]:
    """The book's loop: ``epochs`` × ``N // batch_size`` SGD steps on batches drawn with
    replacement, train accuracy (eval mode) before training and after each epoch. Unlike
    :func:`fnnet.train.fit` it goes on past a NaN loss, as the book's NumPy loop does (a
    diverged net then predicts one class: ~10 % accuracy); ``diverged_at_step`` records it.
    ``epoch`` is ``make_epoch(net, optimizer)``, built once per net (compiled once)."""
    x, t = jnp.asarray(data.x_train), jnp.asarray(data.t_train)
    state = init_train_state(net, params, optimizer, state=initial_state(net, running_var))
    steps = len(data.x_train) // batch_size
    train_acc = [evaluate(net, state.params, x, t, state=state.model_state)[1]]
    losses, diverged = [], None
    for e in range(1, epochs + 1):
        indices = batch_indices(jax.random.fold_in(key, e), num_examples=len(x),
                                batch_size=batch_size, num_steps=steps, sampling="replacement")
        state, epoch_losses = epoch(state, x, t, indices)
        epoch_losses = np.asarray(epoch_losses)
        if diverged is None and not np.all(np.isfinite(epoch_losses)):
            diverged = (e - 1) * steps + int(np.argmax(~np.isfinite(epoch_losses))) + 1
        losses.append(float(np.mean(epoch_losses)))
        with np.errstate(invalid="ignore"):
            train_acc.append(evaluate(net, state.params, x, t, state=state.model_state)[1])
    _, test_acc = evaluate(net, state.params, data.x_test, data.t_test, state=state.model_state)
    return {"train_acc": train_acc, "loss": losses, "final_test_acc": test_acc,
            "diverged_at_step": diverged}


def run(args) -> dict[str, Any]:
    data = load(args, train_size=args.train_size)
    scales = np.logspace(0, -4, 2 if args.quick else 16)
    epochs = 2 if args.quick else args.epochs
    sizes = (data.x_train.shape[1], [100] * 5, data.num_classes)
    nets = {bn: fnnet.multi_layer_net(*sizes, batchnorm=bn) for bn in (True, False)}
    optimizer = sgd(args.lr)
    epoch_fns = {bn: make_epoch(net, optimizer, donate=False) for bn, net in nets.items()}
    init_key, data_key = jax.random.split(jax.random.key(args.seed))
    runs = []
    for scale in scales:
        row: dict[str, Any] = {"weight_scale": float(scale)}
        for bn, net in nets.items():
            params = fnnet.multi_layer_net(*sizes, batchnorm=bn,
                                           weight_init=float(scale)).init(init_key)
            start = time.perf_counter()
            row["batchnorm" if bn else "plain"] = {
                **train(net, epoch_fns[bn], params, data, optimizer, key=data_key,
                        epochs=epochs, batch_size=args.batch_size,
                        running_var=args.running_var_init),
                "seconds_with_compile": time.perf_counter() - start}
        bn_acc, plain_acc = (row[k]["train_acc"][-1] for k in ("batchnorm", "plain"))
        print(f"w = {scale:.3g}: final train acc with batch norm {bn_acc:.3f}, without "
              f"{plain_acc:.3f}", flush=True)
        runs.append(row)
    return {"settings": {"dataset": data.name, "train_size": len(data.x_train),
                         "layers": [sizes[0], *sizes[1], sizes[2]], "activation": "relu",
                         "optimizer": "sgd", "lr": args.lr, "batch_size": args.batch_size,
                         "epochs": epochs, "steps_per_epoch": len(data.x_train) // args.batch_size,
                         "sampling": "replacement", "batchnorm_momentum": 0.9,
                         "running_var_init": args.running_var_init,
                         "weight_scales": scales.tolist(), "seed": args.seed},
            "runs": runs}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = result["runs"]
    cols = min(4, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), sharex=True,
                             sharey=True, squeeze=False)
    steps_per_epoch = result["settings"]["steps_per_epoch"]
    styles = {"batchnorm": ("-", "C0", "Batch Normalization"),
              "plain": ("--", "C1", "Normal (without BatchNorm)")}
    for i, (ax, run) in enumerate(zip(axes.flat, runs, strict=False)):
        notes = []
        for variant, (style, colour, label) in styles.items():
            acc = np.asarray(run[variant]["train_acc"])
            step = run[variant].get("diverged_at_step")
            # A diverged net predicts one class (~10 %): draw the curve up to its last finite
            # epoch, mark where the loss turned NaN, and say so instead of a flat line.
            good = len(acc) if step is None else -(-step // steps_per_epoch)
            ax.plot(range(good), acc[:good], style, color=colour, label=label)
            if step is not None:
                ax.plot(good - 1, acc[good - 1], "x", color=colour, ms=8, mew=2)
                notes.append(f"{'BN' if variant == 'batchnorm' else 'plain'}: NaN at step "
                             f"{step}")
        if notes:
            ax.text(0.97, 0.05, "diverged: " + "; ".join(notes), transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7, color="C3")
        ax.set_title(f"W: {run['weight_scale']:.4g}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("train accuracy")
        if i >= len(runs) - cols:
            ax.set_xlabel("epochs")
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    s = result["settings"]
    fig.suptitle(f"batch norm vs none on {s['dataset']} ({s['train_size']} training examples, "
                 f"SGD lr {s['lr']}): train accuracy per epoch from initial weight std W\n"
                 f"(×: the last epoch before the loss turned NaN; a flat line at ~0.1 is a net "
                 f"that predicts one class)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--running-var-init", type=float, default=0.0,
                   help="initial running variance of the batch norms: 0 as in the book; "
                        "fnnet's layer starts it at 1, which makes eval-mode accuracy lag for "
                        "small weight scales (the batch variance is ~w², far below 1)")
    args = p.parse_args(argv)
    if not replot("batch_norm_comparison", args, plot):
        write("batch_norm_comparison", args, run(args), plot)


if __name__ == "__main__":
    main()
