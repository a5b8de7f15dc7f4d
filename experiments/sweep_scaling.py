"""How a sweep's throughput grows with the number of models trained at once (issue 12).

For the book's two-layer net (784-50-10, ReLU) and the §6.5 MLP (784-100-100-100-100-100-10,
ReLU, He init), :func:`fnnet.sweep.sweep` trains K = 1, 2, 4, … trials in one chunk on one
device (SGD, batch 100, learning rates log-uniform in 1e-3–1e-2, no weight decay) and the
script reports each K's model-steps/s (training steps summed over the trials, per second of
the sweep's ``train_s``: the epochs with their evaluation, compilation apart), the speed-up
over K = 1, and the saturation K: the smallest K within 10% of the best rate measured.

    python experiments/sweep_scaling.py               # K up to 64 on a CPU, 1024 elsewhere
    python experiments/sweep_scaling.py --max-k 4096  # further
    python experiments/sweep_scaling.py --quick       # digits, K up to 4: a smoke run

Data: the first ``--train-size`` training examples (default: 12 000 on a CPU, the whole set
elsewhere, so that K = 1 runs hundreds of steps per dispatch), 20% of them held out for
validation as the book's §6.5 split. Writes ``experiments/runs/sweep_scaling.json`` and
``.png`` (model-steps/s against K, both axes logarithmic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from common import load, parser, write

from fnnet.cli.common import positive_int
from fnnet.nets import build_net
from fnnet.sweep import sample_trials, sweep, validation_split

NETS = {"two-layer (hidden 50)": ("two-layer", {"hidden": [50]}),
        "§6.5 MLP (hidden 100×5)": ("mlp", {"hidden": [100] * 5, "weight_init": "he"})}
SATURATION = 0.9  # within 10% of the best rate


def saturation_k(rows: list[dict[str, Any]]) -> int:
    """The smallest K whose rate is at least :data:`SATURATION` of the best measured."""
    best = max(r["model_steps_per_s"] for r in rows)
    return min(r["k"] for r in rows if r["model_steps_per_s"] >= SATURATION * best)


def run(args) -> dict[str, Any]:
    on_cpu = jax.devices()[0].platform == "cpu"
    max_k = args.max_k or (4 if args.quick else 64 if on_cpu else 1024)
    train_size = args.train_size or (None if args.quick or not on_cpu else 12_000)
    data = load(args, train_size)
    train, validation = validation_split(data.x_train, data.t_train, fraction=0.2, seed=args.seed)
    ks = [2**i for i in range(max_k.bit_length()) if 2**i <= max_k]
    trials = sample_trials(max(ks), lr=(1e-3, 1e-2), seed=args.seed)
    result: dict[str, Any] = {"settings": {
        "dataset": "digits" if args.quick else args.dataset, "train": len(train[0]),
        "validation": len(validation[0]), "batch_size": args.batch_size, "epochs": args.epochs,
        "optimizer": "sgd", "device": jax.devices()[0].device_kind, "ks": ks}, "nets": {}}
    for label, (net, options) in NETS.items():
        model = build_net(net, train[0].shape[1:], data.num_classes, **options)
        rows = []
        for k in ks:
            swept = sweep(model, trials[:k], train, validation, epochs=args.epochs,
                          batch_size=args.batch_size, progress=False)
            rows.append({"k": k, "model_steps": swept.model_steps, "train_s": swept.train_s,
                         "compile_s": swept.compile_s,
                         "model_steps_per_s": swept.model_steps_per_s,
                         "speed_up": swept.model_steps_per_s / rows[0]["model_steps_per_s"]
                         if rows else 1.0})
            print(f"{label}: K={k:5d} {swept.model_steps_per_s:12,.0f} model-steps/s "
                  f"({rows[-1]['speed_up']:.1f}× K=1; compile {swept.compile_s:.1f} s)",
                  flush=True)
        result["nets"][label] = {"rows": rows, "saturation_k": saturation_k(rows),
                                 "best_speed_up": max(r["speed_up"] for r in rows)}
    print(table(result))
    return result


def table(result: dict[str, Any]) -> str:
    """K down the side, each net's model-steps/s and speed-up across."""
    labels = list(result["nets"])
    lines = ["| K | " + " | ".join(f"{n}: model-steps/s | × K=1" for n in labels) + " |",
             "|---:|" + "---:|---:|" * len(labels)]
    for i, k in enumerate(result["settings"]["ks"]):
        cells = []
        for label in labels:
            row = result["nets"][label]["rows"][i]
            cells.append(f"{row['model_steps_per_s']:,.0f} | {row['speed_up']:.1f}×")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| saturates at K | " + " | ".join(
        f"{result['nets'][n]['saturation_k']} | {result['nets'][n]['best_speed_up']:.1f}× best"
        for n in labels) + " |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, net in result["nets"].items():
        ks = [r["k"] for r in net["rows"]]
        ax.loglog(ks, [r["model_steps_per_s"] for r in net["rows"]], "o-", base=2,
                  label=f"{label} (saturates at K={net['saturation_k']})")
    ax.set(xlabel="trials trained at once (K)", ylabel="model-steps/s",
           title=f"fnnet sweep on {result['settings']['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--max-k", type=positive_int, default=None,
                   help="largest K (powers of two up to it; default 64 on a CPU, 1024 else)")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="first N training examples (default 12 000 on a CPU, all else)")
    p.add_argument("--epochs", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=100)
    args = p.parse_args(argv)
    result = run(args)
    result["table"] = table(result)
    write("sweep_scaling", args, result, plot)


if __name__ == "__main__":
    main()
