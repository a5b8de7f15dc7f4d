"""The book's chapter-5 experiment: the two-layer net trained by backpropagation.

784-50-10, sigmoid hidden layer (``--activation relu`` for the book's ch. 5 variant), SGD with
lr 0.1, batch 100 drawn with replacement as the book does, 10 000 iterations, init N(0, 0.01²)
— once with the hand-derived rules and once with jax.grad, same seed, side by side. Writes
``experiments/runs/train_two_layer.json`` and ``train_two_layer.png``.

    python experiments/train_two_layer.py                  # Fashion-MNIST (dataset-fashion-mnist)
    python experiments/train_two_layer.py --dataset mnist  # where MNIST is present or downloadable
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import jax
from common import RESULTS

import fnnet
from fnnet.data import DATASETS, load_dataset
from fnnet.optim import sgd
from fnnet.train import fit


def run(args: argparse.Namespace) -> dict:
    data = load_dataset(args.dataset, progress=not args.no_progress)
    init_key, data_key = jax.random.split(jax.random.key(args.seed))
    runs = {}
    for grads in ("manual", "autodiff"):
        net = fnnet.two_layer_net(data.x_train.shape[1], 50, data.num_classes,
                                  activation=args.activation, weight_init="normal", grads=grads)
        _, history = fit(net, net.init(init_key), data, optimizer=sgd(args.lr), key=data_key,
                         batch_size=100, steps=args.steps, sampling="replacement",
                         progress=not args.no_progress)
        runs[grads] = history.to_dict()
        last = history.last()
        print(f"{grads:>8}: test acc {last['test_acc']:.4f}  train acc {last['train_acc']:.4f}  "
              f"{last['step'] / last['wall_s']:,.0f} steps/s  compile {history.compile_s:.2f} s")
    return {
        "settings": {"dataset": args.dataset, "layers": [data.x_train.shape[1], 50,
                     data.num_classes], "activation": args.activation, "lr": args.lr,
                     "batch_size": 100, "steps": args.steps, "init_std": 0.01,
                     "sampling": "replacement", "seed": args.seed},
        "environment": {"jax": jax.__version__, "python": platform.python_version(),
                        "device": jax.devices()[0].device_kind},
        "runs": runs,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = result["runs"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    # Colour = the quantity, style = where the gradients came from: manual wide and pale,
    # autodiff thin and dashed on top, so that two curves that coincide both stay visible.
    styles = {"manual": dict(ls="-", lw=4, alpha=0.35), "autodiff": dict(ls="--", lw=1.2)}
    for grads, style in styles.items():
        h = runs[grads]
        ax_loss.plot(h["epoch"], h["loss"], color="C0", label=f"{grads}: train loss", **style)
        ax_acc.plot(h["epoch"], h["train_acc"], color="C0", label=f"{grads}: train", **style)
        ax_acc.plot(h["epoch"], h["test_acc"], color="C1", label=f"{grads}: test", **style)
    gap = max(abs(a - b) for name in ("loss", "train_acc", "test_acc")
              for a, b in zip(runs["manual"][name], runs["autodiff"][name], strict=True))
    ax_loss.set(xlabel="epoch", ylabel="loss (mean over the epoch's steps)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (after the epoch)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title=f"the runs coincide: max |Δ| {gap:.1e}",
                  title_fontsize=8)
    s = result["settings"]
    fig.suptitle(f"two-layer net {'-'.join(map(str, s['layers']))} ({s['activation']}, std "
                 f"{s['init_std']}) on {s['dataset']}: SGD lr {s['lr']}, batch "
                 f"{s['batch_size']}, {s['steps']:,} steps — manual vs autodiff gradients",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--activation", choices=("sigmoid", "relu"), default="sigmoid")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the PNG from the JSON already in --out-dir")
    args = parser.parse_args()
    if args.replot:
        path = args.out_dir / "train_two_layer.json"
        plot(json.loads(path.read_text()), path.with_suffix(".png"))
        print(f"redrew {path.with_suffix('.png')}")
        return
    result = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "train_two_layer.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out_dir / "train_two_layer.png")
    print(f"wrote {args.out_dir / 'train_two_layer.json'} and train_two_layer.png")


if __name__ == "__main__":
    main()
