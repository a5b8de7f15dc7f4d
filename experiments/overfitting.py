"""The book's figures 6-20, 6-21 and 6-23 (``overfit_weight_decay.py``, ``overfit_dropout.py``)
on Fashion-MNIST: a big net on 300 examples, plain, with weight decay, with dropout.

``MultiLayerNet(784, [100] * 6, 10)``: seven affine layers, ReLU, He init (the book's
default); the first 300 training examples, SGD lr 0.01, batch 100 drawn with replacement, 201
epochs of 3 steps; train and test accuracy (the whole 10 000-image test set) after every
epoch. Three runs from the same initial weights on the same batches: plain; weight decay
λ = 0.1 (the book's ``½λ·ΣW²`` added to the loss, weights only); dropout 0.2 after every
hidden ReLU (``MultiLayerNetExtend``; fnnet's dropout is inverted — scaled by 1/(1 − rate)
while training — where the book scales by (1 − rate) at test time: the same net in
expectation). The book trains its dropout run for 301 epochs; here all three run 201.

    python experiments/overfitting.py           # Fashion-MNIST, a few minutes
    python experiments/overfitting.py --quick   # digits, 5 epochs
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
from common import load, parser, write

import fnnet
from fnnet.optim import sgd
from fnnet.train import fit


def run(args) -> dict[str, Any]:
    data = load(args, train_size=args.train_size)
    epochs = 5 if args.quick else args.epochs
    sizes = (data.x_train.shape[1], [100] * 6, data.num_classes)
    variants = {"plain": {}, f"weight decay {args.weight_decay}": {
        "weight_decay": args.weight_decay}, f"dropout {args.dropout}": {"dropout": args.dropout}}
    init_key, data_key = jax.random.split(jax.random.key(args.seed))
    runs = {}
    for label, options in variants.items():
        net = fnnet.multi_layer_net(*sizes, weight_init="he", **options)
        start = time.perf_counter()
        _, history = fit(net, net.init(init_key), data, optimizer=sgd(args.lr), key=data_key,
                         batch_size=args.batch_size, epochs=epochs, sampling="replacement",
                         progress=False)
        h = history.to_dict()
        runs[label] = {"options": options, **{k: h[k] for k in ("epoch", "step", "loss",
                                                                   "train_acc", "test_acc")},
                       "seconds": time.perf_counter() - start}
        gap = h["train_acc"][-1] - h["test_acc"][-1]
        print(f"{label:>18}: final train acc {h['train_acc'][-1]:.4f}, test acc "
              f"{h['test_acc'][-1]:.4f} (gap {gap:.4f})  {runs[label]['seconds']:.0f} s",
              flush=True)
    return {"settings": {"dataset": data.name, "train_size": len(data.x_train),
                         "test_size": len(data.x_test),
                         "layers": [sizes[0], *sizes[1], sizes[2]], "activation": "relu",
                         "init": "he", "optimizer": "sgd", "lr": args.lr,
                         "batch_size": args.batch_size, "epochs": epochs,
                         "sampling": "replacement", "seed": args.seed,
                         "dropout_scaling": "inverted (train time)"},
            "runs": runs}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), sharey=True)
    for ax, (label, run) in zip(axes, runs.items(), strict=True):
        ax.plot(run["epoch"], run["train_acc"], marker="o", markevery=10, label="train")
        ax.plot(run["epoch"], run["test_acc"], marker="s", markevery=10, label="test")
        ax.set(title=f"{label}: gap {run['train_acc'][-1] - run['test_acc'][-1]:.3f}",
               xlabel="epochs", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel("accuracy")
    s = result["settings"]
    fig.suptitle(f"overfitting on {s['dataset']}: {s['train_size']} training examples, "
                 f"7-layer 100-unit ReLU MLP, SGD lr {s['lr']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--train-size", type=int, default=300)
    p.add_argument("--epochs", type=int, default=201)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.2)
    args = p.parse_args(argv)
    write("overfitting", args, run(args), plot)


if __name__ == "__main__":
    main()
