"""The book's figure 6-15 (``weight_init_compare.py``) on Fashion-MNIST: the same ReLU net from
three initial weight scales.

``MultiLayerNet(784, [100, 100, 100, 100], 10)``, ReLU, with ``W ~ N(0, 0.01²)``
("std=0.01"), Xavier ``N(0, 1/fan_in)`` or He ``N(0, 2/fan_in)`` (biases 0); SGD lr 0.01,
batch 128 drawn with replacement, 2 000 iterations; the three runs see the same batches. The
plot is the loss of every iteration through the book's ``smooth_curve``; the JSON holds the
raw losses and the final accuracies.

    python experiments/weight_init_comparison.py           # Fashion-MNIST, ~1 min
    python experiments/weight_init_comparison.py --quick   # digits, 100 iterations
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
from common import load, parser, plot_loss_curves, train_steps, write

import fnnet
from fnnet.optim import sgd
from fnnet.train import evaluate

INITS = {"std=0.01": "normal", "Xavier": "xavier", "He": "he"}


def run(args) -> dict[str, Any]:
    data = load(args)
    steps = 100 if args.quick else args.iterations
    sizes = (data.x_train.shape[1], [100] * 4, data.num_classes)
    init_key, batch_key = jax.random.split(jax.random.key(args.seed))
    runs = {}
    for label, init in INITS.items():
        net = fnnet.multi_layer_net(*sizes, weight_init=init)
        start = time.perf_counter()
        state, losses = train_steps(net, net.init(init_key), sgd(args.lr), data, steps=steps,
                                    batch_size=args.batch_size, key=batch_key)
        seconds = time.perf_counter() - start
        _, train_acc = evaluate(net, state.params, data.x_train, data.t_train)
        test_loss, test_acc = evaluate(net, state.params, data.x_test, data.t_test)
        runs[label] = {"init": init, "loss": losses.tolist(), "final_train_acc": train_acc,
                       "final_test_loss": test_loss, "final_test_acc": test_acc,
                       "seconds_with_compile": seconds}
        print(f"{label:>8}: loss {losses[:10].mean():.3f} → {losses[-100:].mean():.3f} (mean of "
              f"the last 100)  train acc {train_acc:.4f}  test acc {test_acc:.4f}  {seconds:.1f} s")
    return {"settings": {"dataset": data.name, "layers": [sizes[0], *sizes[1], sizes[2]],
                         "activation": "relu", "optimizer": "sgd", "lr": args.lr,
                         "batch_size": args.batch_size, "iterations": steps,
                         "sampling": "replacement", "seed": args.seed},
            "runs": runs}


def plot(result: dict[str, Any], path: Path) -> None:
    s = result["settings"]
    plot_loss_curves(result, path, ylim=(0, 2.5), title=(
        f"weight init on {s['dataset']}: 5-layer 100-unit ReLU MLP, SGD lr {s['lr']}"))


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    args = p.parse_args(argv)
    write("weight_init_comparison", args, run(args), plot)


if __name__ == "__main__":
    main()
