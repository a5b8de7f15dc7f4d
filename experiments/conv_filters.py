"""The book's figure 7-24: SimpleConvNet's first-layer filters before and after training.

The book trains its chapter-7 ``SimpleConvNet`` (30 filters of 5×5, Adam, lr 0.001, batch
100) and shows the 30 kernels of ``conv1`` as images: random noise at the start (N(0, 0.01²)),
after training blobs and edges — filters that respond to edges in a direction. Here the same
net and optimiser (fnnet's hand-written rules, ``fnnet.train.fit``, the same keys as ``fnnet
train --net simple-conv --optimizer adam --seed``) on Fashion-MNIST.

The structure is measured too: the mean correlation of horizontally and vertically
neighbouring weights within a kernel (about 0 for independent noise; positive once the
kernels turn into smooth blobs and edges).

Writes ``conv_filters.json`` (both sets of kernels, the curves, the neighbour correlations)
and ``.png`` into ``--out-dir``::

    python experiments/conv_filters.py                  # Fashion-MNIST, 2 epochs
    python experiments/conv_filters.py --quick          # digits, 30 steps: a smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS

from fnnet.data import DATASETS, load_dataset
from fnnet.nets import build_net
from fnnet.optim import get_optimizer
from fnnet.results import environment, write_json
from fnnet.train import fit, init_from_seed


def neighbour_correlation(kernels: np.ndarray) -> float:
    """Mean over kernels ``(FN, C, FH, FW)`` of the correlation between each weight and its
    right and lower neighbours (0 for white noise, towards 1 for smooth kernels)."""
    values = []
    for kernel in kernels.reshape(-1, *kernels.shape[-2:]):
        pairs = [(kernel[:, :-1].ravel(), kernel[:, 1:].ravel()),
                 (kernel[:-1, :].ravel(), kernel[1:, :].ravel())]
        values += [np.corrcoef(a, b)[0, 1] for a, b in pairs]
    return float(np.nanmean(values))


def run(args: argparse.Namespace) -> dict[str, Any]:
    dataset = "digits" if args.quick else args.dataset
    data = load_dataset(dataset, progress=False).as_images()
    net = build_net("simple-conv", data.x_train.shape[1:], data.num_classes)
    params, data_key = init_from_seed(net, args.seed)  # as fnnet train --seed
    before = np.asarray(params["conv1"]["W"])
    length = {"steps": 30} if args.quick else {"epochs": args.epochs}
    trained, history = fit(net, params, data, optimizer=get_optimizer("adam", args.lr),
                           key=data_key, batch_size=100, progress=True, **length)
    after = np.asarray(trained["conv1"]["W"])
    last = history.last()
    print(f"test accuracy {last['test_acc']:.4f} after {last['step']} steps; neighbour "
          f"correlation {neighbour_correlation(before):.3f} -> {neighbour_correlation(after):.3f}")
    return {
        "settings": {"dataset": dataset, "net": "simple-conv (30 filters 5x5, the book's)",
                     "init": "normal (std 0.01, the book's)", "optimizer": "adam (the book's)",
                     "lr": args.lr, "batch_size": 100, **length, "seed": args.seed,
                     "command": f"fnnet train --dataset {dataset} --net simple-conv "
                                f"--optimizer adam --lr {args.lr} --seed {args.seed} "
                                + ("--steps 30" if args.quick else f"--epochs {args.epochs}")},
        "before": before.tolist(), "after": after.tolist(),
        "neighbour_correlation": {"before": neighbour_correlation(before),
                                  "after": neighbour_correlation(after)},
        "history": {k: v for k, v in history.to_dict().items()
                    if k in ("epoch", "step", "loss", "train_acc", "test_acc")},
        "environment": environment(),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Both sets of 30 kernels as images, 3 rows of 10 each, as the book's figure 7-24."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = {"before": np.asarray(result["before"]), "after": np.asarray(result["after"])}
    count = len(sets["before"])
    cols = 10
    rows = -(-count // cols)
    fig = plt.figure(figsize=(10, 2 * rows + 1.6))
    panels = fig.subfigures(2, 1)
    last = result["history"]["test_acc"][-1]
    titles = {"before": "before training: N(0, 0.01²) noise",
              "after": f"after {result['history']['step'][-1]} steps of Adam (test accuracy "
                       f"{last:.3f})"}
    for (name, kernels), panel in zip(sets.items(), panels, strict=True):
        axes = panel.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if i < count:
                ax.imshow(kernels[i, 0], cmap="gray_r", interpolation="nearest")
        corr = result["neighbour_correlation"][name]
        panel.suptitle(f"{titles[name]}; neighbouring weights correlate {corr:.2f}",
                       fontsize=10)
    fig.text(0.5, 0.005, f"conv1 of SimpleConvNet on {result['settings']['dataset']}: "
             f"each 5×5 kernel scaled to its own range, dark = large (the book's gray_r)",
             ha="center", fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: digits, 30 steps; writes conv_filters_quick.*")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where the JSON and PNG go (the committed ones: "
                             "experiments/results)")
    args = parser.parse_args(argv)
    result = run(args)
    stem = "conv_filters" + ("_quick" if args.quick else "")
    path = write_json(args.out_dir / f"{stem}.json", result)
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
