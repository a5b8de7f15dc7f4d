"""The book's figure 6-9 (``optimizer_compare_mnist.py``) on Fashion-MNIST: SGD, Momentum,
AdaGrad and Adam training the same net.

``MultiLayerNet(784, [100, 100, 100, 100], 10)``: five affine layers, ReLU, He init (the
book's default ``weight_init_std='relu'``); batch 128 drawn with replacement, 2 000
iterations; the book's optimisers by hand (:mod:`fnnet.optim`) with its defaults: SGD lr 0.01,
Momentum lr 0.01 (α 0.9), AdaGrad lr 0.01, Adam lr 0.001 (β₁ 0.9, β₂ 0.999). Every optimiser
starts from the same initial parameters and sees the same batches. The plot is the loss of
every iteration through the book's ``smooth_curve``; the JSON holds the raw losses and each
net's final train and test accuracy.

    python experiments/optimizer_comparison.py           # Fashion-MNIST, ~1 min
    python experiments/optimizer_comparison.py --quick   # digits, 100 iterations
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
from common import load, parser, plot_loss_curves, train_steps, write

import fnnet
from fnnet.optim import get_optimizer
from fnnet.train import evaluate

OPTIMIZERS = {"SGD": ("sgd", 0.01), "Momentum": ("momentum", 0.01),
              "AdaGrad": ("adagrad", 0.01), "Adam": ("adam", 0.001)}


def run(args) -> dict[str, Any]:
    data = load(args)
    steps = 100 if args.quick else args.iterations
    net = fnnet.multi_layer_net(data.x_train.shape[1], [100] * 4, data.num_classes,
                                weight_init="he")
    init_key, batch_key = jax.random.split(jax.random.key(args.seed))
    params = net.init(init_key)
    runs = {}
    for label, (name, lr) in OPTIMIZERS.items():
        start = time.perf_counter()
        state, losses = train_steps(net, params, get_optimizer(name, lr), data, steps=steps,
                                    batch_size=args.batch_size, key=batch_key)
        seconds = time.perf_counter() - start
        train_loss, train_acc = evaluate(net, state.params, data.x_train, data.t_train)
        test_loss, test_acc = evaluate(net, state.params, data.x_test, data.t_test)
        runs[label] = {"optimizer": name, "lr": lr, "loss": losses.tolist(),
                       "final_train_loss": train_loss, "final_train_acc": train_acc,
                       "final_test_loss": test_loss, "final_test_acc": test_acc,
                       "seconds_with_compile": seconds}
        print(f"{label:>8} (lr {lr}): loss {losses[:10].mean():.3f} → {losses[-100:].mean():.3f} "
              f"(mean of the last 100)  train acc {train_acc:.4f}  test acc {test_acc:.4f}  "
              f"{seconds:.1f} s")
    return {"settings": {"dataset": data.name, "layers": [data.x_train.shape[1], 100, 100, 100,
                                                          100, data.num_classes],
                         "activation": "relu", "init": "he", "batch_size": args.batch_size,
                         "iterations": steps, "sampling": "replacement", "seed": args.seed,
                         "same_init_and_batches": True},
            "runs": runs}


def plot(result: dict[str, Any], path: Path) -> None:
    plot_loss_curves(result, path, ylim=(0, 1), title=(
        f"optimisers on {result['settings']['dataset']}: 5-layer 100-unit ReLU MLP, "
        f"batch {result['settings']['batch_size']}"))


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args(argv)
    write("optimizer_comparison", args, run(args), plot)


if __name__ == "__main__":
    main()
