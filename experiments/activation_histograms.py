"""The book's figures 6-10 to 6-14: histograms of the activations of a 5-layer net.

Chapter 6's experiment (``ch06/weight_init_activation_histogram.py``): 1 000 inputs drawn from
N(0, 1), 100 features each, through five layers of 100 units (``a = x·W`` without bias, then
the activation), with weights drawn from N(0, 1), N(0, 0.01²), Xavier (N(0, 1/100)) or He
(N(0, 2/100)); the histogram of each layer's outputs, 30 bins over the activation's range.
The book shows sigmoid with std 1 (figure 6-10: outputs pile up at 0 and 1, the gradient
vanishes), std 0.01 (6-11: all near 0.5, the units say the same thing), Xavier (6-12: spread),
tanh with Xavier (6-13) and ReLU with std 0.01 / Xavier / He (6-14: only He keeps the spread
through the layers). Here every pair of the three activations and four initial values is
drawn, with fnnet's initialisers and its hand-written activations (their forward passes).

Writes ``activation_histograms.json`` (bin counts, mean, std and the saturated or zero
fraction per layer) and ``.png`` into ``--out-dir``::

    python experiments/activation_histograms.py
    python experiments/activation_histograms.py --quick      # 200 inputs: a smoke run
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from common import RESULTS

from fnnet import manual
from fnnet.init import he, normal, xavier
from fnnet.results import environment, write_json

INITS = {"std 1": normal(1.0), "std 0.01": normal(0.01), "Xavier": xavier, "He": he}
ACTIVATIONS = ("sigmoid", "tanh", "relu")
RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, 1.0)}  # the book's
BOOK_FIGURES = {("sigmoid", "std 1"): "6-10", ("sigmoid", "std 0.01"): "6-11",
                ("sigmoid", "Xavier"): "6-12", ("tanh", "Xavier"): "6-13",
                ("relu", "std 0.01"): "6-14", ("relu", "Xavier"): "6-14",
                ("relu", "He"): "6-14"}
LAYERS, UNITS, BINS = 5, 100, 30


@partial(jax.jit, static_argnames="activation")
def forward(x: jax.Array, weights: jax.Array, *, activation: str) -> jax.Array:
    """The ``LAYERS`` outputs ``(LAYERS, N, UNITS)`` of ``z = activation(z₋·W)``, z₀ = x."""
    fn = getattr(manual, activation)

    def layer(z, W):
        z = fn(z @ W)
        return z, z

    return jax.lax.scan(layer, x, weights)[1]


def describe(z: np.ndarray, activation: str) -> dict[str, Any]:
    """One layer: the book's 30-bin histogram over the activation's range, mean, std, and the
    fraction of outputs saturated (sigmoid/tanh within 0.01 of a bound) or exactly 0 (ReLU)."""
    low, high = RANGES[activation]
    counts, edges = np.histogram(z.ravel(), BINS, range=(low, high))
    if activation == "relu":
        flat = float(np.mean(z == 0))
    else:
        flat = float(np.mean((z < low + 0.01) | (z > high - 0.01)))
    return {"counts": counts.tolist(), "edges": edges.tolist(), "mean": float(z.mean()),
            "std": float(z.std()), "outside_range": float(np.mean((z < low) | (z > high))),
            "zero" if activation == "relu" else "saturated": flat}


def run(args: argparse.Namespace) -> dict[str, Any]:
    samples = 200 if args.quick else 1000
    key_x, key_w = jax.random.split(jax.random.key(args.seed))
    x = jax.random.normal(key_x, (samples, UNITS))
    runs = {}
    for i, (init_name, init) in enumerate(INITS.items()):
        # The same draws for every activation, as the book reruns one script per setting.
        keys = jax.random.split(jax.random.fold_in(key_w, i), LAYERS)
        weights = jnp.stack([init(k, (UNITS, UNITS)) for k in keys])
        for activation in ACTIVATIONS:
            outputs = np.asarray(forward(x, weights, activation=activation))
            runs[f"{activation}, {init_name}"] = {
                "activation": activation, "init": init_name,
                "book_figure": BOOK_FIGURES.get((activation, init_name)),
                "layers": [describe(z, activation) for z in outputs]}
    return {"settings": {"samples": samples, "features": UNITS, "layers": LAYERS,
                         "units": UNITS, "bins": BINS, "bias": None, "seed": args.seed,
                         "inits": {"std 1": "N(0, 1)", "std 0.01": "N(0, 0.01²)",
                                   "Xavier": "N(0, 1/fan_in)", "He": "N(0, 2/fan_in)"},
                         "ranges": RANGES},
            "runs": runs, "environment": environment()}


def plot(result: dict[str, Any], path: Path) -> None:
    """One row per (activation, initial value), one column per layer, as the book's panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(result["runs"].items(),  # as the book: by activation, then initial value
                  key=lambda item: (ACTIVATIONS.index(item[1]["activation"]),
                                    list(INITS).index(item[1]["init"])))
    fig, axes = plt.subplots(len(rows), LAYERS, figsize=(12, 1.5 * len(rows) + 1.0),
                             sharey="row", squeeze=False)
    samples = result["settings"]["samples"]
    colours = {"sigmoid": "C0", "tanh": "C2", "relu": "C3"}
    for (_, run), row in zip(rows, axes, strict=True):
        activation = run["activation"]
        top = 0.0
        for layer, (ax, stats) in enumerate(zip(row, run["layers"], strict=True), start=1):
            edges = np.asarray(stats["edges"])
            ax.stairs(stats["counts"], edges, fill=True, color=colours[activation])
            ax.set_xlim(edges[0], edges[-1])
            share = (f"zero {stats['zero']:.0%}" if "zero" in stats else
                     f"saturated {stats['saturated']:.0%}")
            beyond = (f", >1: {stats['outside_range']:.0%}"
                      if stats["outside_range"] >= 0.01 else "")
            ax.set_title(f"layer {layer}: std {stats['std']:.2g}, {share}{beyond}", fontsize=7)
            ax.tick_params(labelsize=7)
            top = max(top, max(stats["counts"][1:]) if activation == "relu" else
                      max(stats["counts"]))
        # ReLU's spike at 0 would flatten the rest (the book caps its axis the same way).
        row[0].set_ylim(0, 1.1 * top if top else 1)
        figure = f"\n(fig. {run['book_figure']})" if run["book_figure"] else ""
        row[0].set_ylabel(f"{activation}, {run['init']}{figure}", fontsize=8.5)
    fig.suptitle(f"Activations of a {LAYERS}-layer net, {UNITS} units each, {samples} "
                 f"inputs from N(0, 1), no bias: counts in {BINS} bins over the activation's "
                 f"range\n(ReLU: the spike at 0 is cut off, its share printed; saturated = "
                 f"within 0.01 of a bound)", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.02, top=0.94, wspace=0.12,
                        hspace=0.55)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 inputs; writes activation_histograms_quick.*")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where the JSON and PNG go (the committed ones: "
                             "experiments/results)")
    args = parser.parse_args(argv)
    result = run(args)
    stem = "activation_histograms" + ("_quick" if args.quick else "")
    path = write_json(args.out_dir / f"{stem}.json", result)
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    for name, run_ in result["runs"].items():
        print(f"{name:>18}: std per layer " +
              " ".join(f"{layer['std']:.3f}" for layer in run_["layers"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
