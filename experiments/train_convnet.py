"""The book's chapter-7 SimpleConvNet and chapter-8 DeepConvNet trained on Fashion-MNIST.

The same run as ``fnnet train`` (same init and data keys from ``--seed``, same net, the book's
Adam by hand, shuffled batches of 100), written for long runs on a slow machine: the JSON and
the PNG are rewritten after every epoch, so a run stopped early still leaves its curves, and
with ``--checkpoint-dir`` a stopped run continues with ``--resume`` (the history of the
earlier epochs is kept from the JSON). Equivalent command (history JSON and PNG, no resume
of the curves)::

    fnnet train --dataset fashion-mnist --net simple-conv --optimizer adam --lr 0.001 \\
        --batch-size 100 --epochs 10 --seed 0 --out run.json --plot run.png

Writes ``experiments/runs/train_<net>.json`` and ``.png`` (``simple_conv``, ``deep_conv``);
the JSON records the first epoch whose test accuracy reaches ``--target`` (the issue's targets:
0.90 for simple-conv, 0.925 for deep-conv).

    python experiments/train_convnet.py --net simple-conv --epochs 10
    python experiments/train_convnet.py --net deep-conv --epochs 20 \\
        --checkpoint-dir /tmp/deep-conv-ckpt [--resume]
    python experiments/train_convnet.py --quick          # digits, 2 epochs: a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import jax
from common import RESULTS

from fnnet.data import DATASETS, load_dataset
from fnnet.nets import build_net
from fnnet.optim import get_optimizer
from fnnet.train import fit

TARGETS = {"simple-conv": 0.90, "deep-conv": 0.925}


def command_line(args: argparse.Namespace) -> str:
    """The ``fnnet train`` command that trains the same run (without the per-epoch files)."""
    return (f"fnnet train --dataset {args.dataset} --net {args.net} --optimizer adam "
            f"--lr {args.lr} --batch-size {args.batch_size} --epochs {args.epochs} "
            f"--seed {args.seed} --grads {args.grads} --out run.json --plot run.png")


def first_epoch_reaching(history: dict[str, list], target: float) -> int | None:
    """The first epoch whose test accuracy is ``>= target`` (None if none is)."""
    return next((e for e, acc in zip(history["epoch"], history["test_acc"], strict=True)
                 if acc >= target), None)


def plot(result: dict[str, Any], path: Path) -> None:
    """Loss and accuracy (train and test) against the epoch, the target as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h, s = result["history"], result["settings"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(h["epoch"], h["loss"], "o-", label="train (mean over the epoch's steps)")
    ax_loss.plot(h["epoch"], h["test_loss"], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="softmax cross-entropy", title="loss")
    ax_acc.plot(h["epoch"], h["train_acc"], "o-", label="train")
    ax_acc.plot(h["epoch"], h["test_acc"], "s-", label="test")
    ax_acc.axhline(s["target"], color="grey", ls=":", label=f"target {s['target']:.3f}")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        ax.grid(alpha=0.3)
        ax.legend()
    last = h["test_acc"][-1] if h["test_acc"] else float("nan")
    fig.suptitle(f"{s['net']} on {s['dataset']}: Adam lr {s['lr']}, batch {s['batch_size']}, "
                 f"{len(h['epoch'])} epochs, test acc {last:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: dict[str, Any], json_path: Path) -> None:
    """The JSON (atomically: a stopped run never leaves half a file) and the PNG."""
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, json_path)
    plot(result, json_path.with_suffix(".png"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = args.name or f"train_{args.net.replace('-', '_')}" + ("_quick" if args.quick else "")
    json_path = args.out_dir / f"{name}.json"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, progress=not args.no_progress).as_images()
    net = build_net(args.net, data.x_train.shape[1:], data.num_classes, grads=args.grads)
    init_key, data_key = jax.random.split(jax.random.key(args.seed))  # as fnnet train
    earlier: dict[str, list] = {}
    earlier_result: dict[str, Any] = {}
    if args.resume and json_path.exists():
        earlier_result = json.loads(json_path.read_text())
        earlier = earlier_result["history"]
    history: dict[str, list] = {k: list(v) for k, v in earlier.items()}
    settings = {"dataset": args.dataset, "net": args.net, "grads": args.grads,
                "optimizer": "adam (the book's, by hand)", "lr": args.lr,
                "batch_size": args.batch_size, "epochs": args.epochs, "sampling": "shuffle",
                "seed": args.seed, "target": args.target,
                "init": "he" if args.net == "deep-conv" else "normal (std 0.01)"}
    result: dict[str, Any] = {"settings": settings, "command": command_line(args),
                              "environment": {"jax": jax.__version__,
                                              "python": platform.python_version(),
                                              "device": jax.devices()[0].device_kind,
                                              "cores": os.cpu_count()},
                              "started": earlier_result.get("started") or
                              datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                              "resumed": [*earlier_result.get("resumed", []),
                                          datetime.datetime.now(datetime.UTC).isoformat(
                                              timespec="seconds")] if earlier_result else [],
                              "loadavg": list(earlier_result.get("loadavg", [])),
                              "status": "running", "history": history}

    def on_epoch(record: dict[str, Any]) -> None:
        if history and record["epoch"] <= history["epoch"][-1]:
            return  # already recorded by the run that was resumed
        for key, value in record.items():  # wall_s goes on from the checkpoint's history
            history.setdefault(key, []).append(value)
        result["loadavg"].append(list(os.getloadavg()))
        result["first_epoch_at_target"] = first_epoch_reaching(history, args.target)
        write(result, json_path)
        print(f"epoch {record['epoch']:>3}/{args.epochs}  loss {record['loss']:.4f}  "
              f"train acc {record['train_acc']:.4f}  test acc {record['test_acc']:.4f}  "
              f"{record['steps_per_s']:.1f} steps/s", flush=True)

    print(f"{args.net} on {args.dataset}: {len(data.x_train)} train / {len(data.x_test)} test, "
          f"{args.epochs} epochs; same run as: {command_line(args)}", flush=True)
    try:
        _, fitted = fit(net, net.init(init_key), data,
                        optimizer=get_optimizer("adam", args.lr), key=data_key,
                        batch_size=args.batch_size, epochs=args.epochs,
                        checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                        settings=settings, progress=not args.no_progress, on_epoch=on_epoch)
    except KeyboardInterrupt:  # fit has saved the last finished epoch (with --checkpoint-dir)
        result["status"] = f"interrupted after epoch {history['epoch'][-1] if history else 0}"
        write(result, json_path)
        print(f"interrupted; {json_path} holds the finished epochs", file=sys.stderr)
        raise SystemExit(130) from None
    result["status"] = "complete"
    result["compile_s"] = fitted.compile_s
    result["first_epoch_at_target"] = first_epoch_reaching(history, args.target)
    write(result, json_path)
    print(f"wrote {json_path} and {json_path.with_suffix('.png').name}; first epoch at "
          f"{args.target}: {result['first_epoch_at_target']}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--net", choices=tuple(TARGETS), default="simple-conv")
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--grads", choices=("manual", "autodiff"), default="manual")
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, help="epochs (default 10; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float,
                        help="test accuracy to report the first epoch of (default: the "
                             "issue's target for the net)")
    parser.add_argument("--checkpoint-dir", type=Path,
                        help="save a checkpoint every epoch (needed for --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from --checkpoint-dir up to --epochs, keeping the "
                             "earlier epochs' curves from the JSON")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: digits, 2 epochs; writes train_<net>_quick.*")
    parser.add_argument("--name", help="output name (default: train_<net>)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset = "digits"
    if args.epochs is None:
        args.epochs = 2 if args.quick else 10
    if args.target is None:
        args.target = TARGETS[args.net]
    if args.resume and args.checkpoint_dir is None:
        parser.error("--resume needs --checkpoint-dir")
    return args


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
