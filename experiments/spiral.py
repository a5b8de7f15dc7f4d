"""The sequel's §1.4 run: the two-layer net learning the spiral, its loss curve and decision
regions (the book's figures), and how much of its final loss is the luck of one run.

The run is exactly ``fnnet train --dataset spiral --net two-layer --hidden 10 --activation
sigmoid --optimizer sgd --lr 1 --batch-size 30 --epochs 300 --seed S`` (the book's 300 points
from its seed 1984, init N(0, 0.01²), 10 shuffled batches an epoch). The book's loop draws
its init and batches from NumPy's global stream, fnnet from ``jax.random``: no two runs
share them, so the script also measures the spread over seeds — fnnet's (``--seeds`` trials
of :func:`fnnet.sweep.sweep`, each equal to ``fnnet train --seed k``) and the book's own loop
in NumPy (:mod:`peers.numpy_spiral`, seeds ``0 … K−1`` of its stream, on the same points and
on another draw of them) — and the book's run itself (everything from seed 1984).

    python experiments/spiral.py            # writes results/spiral.json and spiral.png
    python experiments/spiral.py --quick    # smoke run: 3 epochs, 2 seeds, a coarse grid
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import common
import jax
import jax.numpy as jnp
import numpy as np
from peers import numpy_spiral

import fnnet
from fnnet.data import load_spiral
from fnnet.optim import sgd
from fnnet.sweep import Trial, sweep
from fnnet.train import fit, init_from_seed

BOOK = {"hidden": 10, "lr": 1.0, "batch_size": 30, "epochs": 300}
TARGET = {"loss": 0.12, "acc": 0.97}
"""Issue 19's target for the §1.4 run: final training loss ≤ 0.12, accuracy ≥ 97%."""


def _spread(losses: np.ndarray, accs: np.ndarray) -> dict[str, Any]:
    losses, accs = np.asarray(losses, float), np.asarray(accs, float)
    meets = (losses <= TARGET["loss"]) & (accs >= TARGET["acc"])
    return {"final_loss": losses.tolist(), "final_acc": accs.tolist(),
            "loss_mean": float(losses.mean()), "loss_sd": float(losses.std()),
            "loss_min": float(losses.min()), "loss_max": float(losses.max()),
            "acc_mean": float(accs.mean()), "meet_target": int(meets.sum()),
            "loss_within_target": int((losses <= TARGET["loss"]).sum()),
            "acc_within_target": int((accs >= TARGET["acc"]).sum()), "runs": len(losses)}


def other_draw(seed: int = 1984) -> tuple[np.ndarray, np.ndarray]:
    """The spiral's formula with ``np.random.default_rng(seed)``'s normals (what fnnet drew
    before it used the book's stream): the same distribution, another draw of 300 points."""
    rate = np.tile(np.arange(100) / 100, 3)
    arm = np.repeat(np.arange(3), 100)
    theta = 4.0 * arm + 4.0 * rate + 0.2 * np.random.default_rng(seed).standard_normal(300)
    return np.stack([rate * np.sin(theta), rate * np.cos(theta)], axis=1), arm


def decision_regions(net: Any, params: Any, x: np.ndarray, step: float) -> dict[str, Any]:
    """The book's figure: the predicted class on a grid of ``step`` over the points' box
    (± 0.1), as the book draws it with ``contourf``."""
    xs = np.arange(x[:, 0].min() - 0.1, x[:, 0].max() + 0.1, step)
    ys = np.arange(x[:, 1].min() - 0.1, x[:, 1].max() + 0.1, step)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
    predict = jax.jit(lambda p, g: jnp.argmax(net.apply(p, g), axis=-1))
    classes = np.asarray(predict(params, grid)).reshape(len(ys), len(xs))
    return {"x": xs, "y": ys, "classes": classes}


def run(args: argparse.Namespace) -> dict[str, Any]:
    epochs = 3 if args.quick else BOOK["epochs"]
    seeds = 2 if args.quick else args.seeds
    data = load_spiral()
    net = fnnet.two_layer_net(2, BOOK["hidden"], data.num_classes, activation="sigmoid")
    params, data_key = init_from_seed(net, args.seed)
    params, history = fit(net, params, data, optimizer=sgd(BOOK["lr"]), key=data_key,
                          batch_size=BOOK["batch_size"], epochs=epochs, progress=False)
    last = history.last()
    print(f"fnnet, seed {args.seed}: loss {last['loss']:.4f}  train acc {last['train_acc']:.4f}"
          f"  test acc (a fresh draw) {last['test_acc']:.4f}")

    trials = [Trial(BOOK["lr"], 0.0, s) for s in range(seeds)]
    spread = sweep(net, trials, (data.x_train, data.t_train), (data.x_test, data.t_test),
                   epochs=epochs, batch_size=BOOK["batch_size"], progress=False)
    fnnet_spread = _spread(spread.curves["loss"][:, -1], spread.curves["train_acc"][:, -1])

    book = numpy_spiral.book_run(epochs=epochs)
    x64, t64 = data.x_train.astype(np.float64), data.t_train.astype(np.int64)
    x_other, t_other = other_draw()
    numpy_runs = {name: [numpy_spiral.train(x, t, np.random.RandomState(s), epochs=epochs)
                         for s in range(seeds)]
                  for name, (x, t) in {"book points": (x64, t64),
                                       "default_rng(1984) points": (x_other, t_other)}.items()}
    numpy_spread = {name: _spread([r["final_loss"] for r in runs], [r["final_acc"] for r in runs])
                    for name, runs in numpy_runs.items()}
    for name, s in [("fnnet", fnnet_spread), *(("numpy, " + k, v)
                                                for k, v in numpy_spread.items())]:
        print(f"{name:>32}: {s['runs']} seeds, final loss {s['loss_mean']:.4f} ± "
              f"{s['loss_sd']:.4f} [{s['loss_min']:.4f}, {s['loss_max']:.4f}], acc "
              f"{s['acc_mean']:.4f}; meet the target {s['meet_target']}/{s['runs']}")
    print(f"the book's run (NumPy, seed 1984): loss {book['final_loss']:.4f}  acc "
          f"{book['final_acc']:.4f}")
    regions = decision_regions(net, params, data.x_train, 0.05 if args.quick else 0.005)
    return {
        "settings": {**BOOK, "epochs": epochs, "seed": args.seed, "seeds": seeds,
                     "activation": "sigmoid", "init_std": 0.01, "optimizer": "sgd",
                     "data": "load_spiral(): the book's 3 × 100 points (seed 1984); test: "
                             "a fresh draw (seed 1985)",
                     "command": "fnnet train --dataset spiral --net two-layer --hidden 10 "
                                "--activation sigmoid --optimizer sgd --lr 1 --batch-size 30 "
                                f"--epochs {epochs} --seed {args.seed}",
                     "target": TARGET},
        "run": {"epoch": history.epoch, "step": history.step, "loss": history.loss,
                "train_acc": history.train_acc, "test_acc": history.test_acc,
                "final_loss": last["loss"], "final_train_acc": last["train_acc"],
                "final_test_acc": last["test_acc"],
                "meets_target": bool(last["loss"] <= TARGET["loss"]
                                     and last["train_acc"] >= TARGET["acc"])},
        "fnnet_seeds": fnnet_spread,
        "numpy_book_loop_seeds": numpy_spread,
        "book_run": {"final_loss": book["final_loss"], "final_acc": book["final_acc"],
                     "loss": book["loss"]},
        "regions": {"step": float(regions["x"][1] - regions["x"][0]),
                    "shape": list(regions["classes"].shape)},
        "_regions": regions,  # for the plot; not written
        "_points": (data.x_train, data.t_train),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_regions, ax_spread) = plt.subplots(1, 3, figsize=(16, 4.8))
    r = result["run"]
    ax_loss.plot(r["step"], r["loss"], label=f"fnnet, seed {result['settings']['seed']}")
    book = result["book_run"]["loss"]
    steps = np.arange(1, len(book) + 1) * (r["step"][0] if r["step"] else 10)
    ax_loss.plot(steps, book, "--", label="the book's loop (NumPy, seed 1984)")
    ax_loss.axhline(TARGET["loss"], color="grey", lw=0.8, ls=":", label="target 0.12")
    ax_loss.set(xlabel="iterations", ylabel="loss (mean of each epoch's 10 iterations)",
                title="§1.4 loss curve")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)

    regions, (x, t) = result["_regions"], result["_points"]
    from matplotlib.colors import ListedColormap

    classes = int(t.max()) + 1
    colours = ListedColormap([f"C{k}" for k in range(classes)])
    ax_regions.contourf(regions["x"], regions["y"], regions["classes"], alpha=0.25,
                        levels=np.arange(classes + 1) - 0.5, cmap=colours)
    for k, marker in zip(range(classes), "ox^sv", strict=False):
        ax_regions.scatter(*x[t == k].T, s=30, marker=marker, color=f"C{k}",
                           label=f"class {k}")
    ax_regions.set(title=f"decision regions (train acc {r['final_train_acc']:.3f})",
                   xlabel="x₀", ylabel="x₁", aspect="equal")

    spreads = {"fnnet (jax.random)": result["fnnet_seeds"],
               **{f"NumPy, {k}": v for k, v in result["numpy_book_loop_seeds"].items()}}
    jitter = np.random.default_rng(0)
    for row, s in enumerate(spreads.values(), start=1):
        losses = np.asarray(s["final_loss"])
        ax_spread.scatter(losses, row + jitter.uniform(-0.15, 0.15, len(losses)), s=12,
                          alpha=0.7)
        ax_spread.plot([s["loss_mean"]] * 2, [row - 0.3, row + 0.3], "k-", lw=1.5)
    ax_spread.set_yticks(range(1, len(spreads) + 1), list(spreads), fontsize=8)
    ax_spread.axvline(TARGET["loss"], color="grey", lw=0.8, ls=":")
    ax_spread.axvline(result["book_run"]["final_loss"], color="C1", lw=0.8, ls="--",
                      label="the book's run")
    ax_spread.plot([r["final_loss"]], [1], "C0*", ms=10, label="fnnet's default run")
    ax_spread.set(xlabel="final loss", title=f"spread over {result['settings']['seeds']} seeds")
    ax_spread.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="fnnet's run (fnnet train --seed)")
    p.add_argument("--seeds", type=int, default=20, help="seeds 0..K-1 for the spread")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 epochs, 2 seeds")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    args = p.parse_args(argv)
    result = run(args)
    hidden = {k: result.pop(k) for k in ("_regions", "_points")}
    common.write("spiral", args, result, lambda r, path: plot({**r, **hidden}, path))


if __name__ == "__main__":
    main()
