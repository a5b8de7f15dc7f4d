"""What the seq2seq experiments share: one training run as ``fnnet seq2seq`` does it (the
book's Adam after its gradient clip, shuffled batches, seeded init), recorded per epoch."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from common import RESULTS

from fnnet.data import Seq2seqData
from fnnet.nets import seq2seq as nets
from fnnet.optim import adam, clip_grads
from fnnet.train import fit, init_from_seed


def parser(doc: str, *, epochs: int, quick: str) -> argparse.ArgumentParser:
    """The flags both seq2seq experiments take (``--quick``'s help: ``quick``)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grads", choices=("manual", "autodiff"), default="manual")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {quick}")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p


def book_settings(args: argparse.Namespace, *, hidden_size: int,
                  quick_epochs: int) -> dict[str, Any]:
    """The book's settings (``hidden_size`` LSTM units), or a smoke run's with ``--quick``:
    1 000 problems, hidden 16, batch 32, ``quick_epochs`` epochs."""
    quick = args.quick
    return {"size": 1_000 if quick else 50_000, "wordvec_size": 16,
            "hidden_size": 16 if quick else hidden_size, "batch_size": 32 if quick else 128,
            "epochs": quick_epochs if quick else args.epochs, "lr": 0.001, "max_grad": 5.0,
            "seed": args.seed, "eval_train": 500 if quick else 2_000, "grads": args.grads}


def command_line(dataset: str, net: str, reverse: bool, settings: dict[str, Any]) -> str:
    """The ``fnnet seq2seq`` command that trains the same run."""
    return (f"fnnet seq2seq --dataset {dataset} --net {net}{' --reverse' if reverse else ''} "
            f"--size {settings['size']} --hidden-size {settings['hidden_size']} "
            f"--wordvec-size {settings['wordvec_size']} --batch-size {settings['batch_size']} "
            f"--epochs {settings['epochs']} --lr {settings['lr']} "
            f"--max-grad {settings['max_grad']} --seed {settings['seed']} "
            f"--eval-train {settings['eval_train']}")


def train_run(net: str, data: Seq2seqData, settings: dict[str, Any], *, label: str,
              progress: bool = True) -> tuple[dict[str, Any], Any, nets.Seq2seqConfig]:
    """Train ``net`` on ``data`` with ``settings`` (hidden_size, wordvec_size, batch_size,
    epochs, lr, max_grad, seed, eval_train, grads); returns ``(record, params, config)``."""
    config = nets.config_for(net, data, wordvec_size=settings["wordvec_size"],
                             hidden_size=settings["hidden_size"], grads=settings["grads"])
    model = nets.build(config)
    params, key = init_from_seed(model, settings["seed"])
    optimizer = optax.chain(clip_grads(settings["max_grad"]), adam(settings["lr"]))

    def report(record: dict[str, Any]) -> None:
        print(f"{label}: epoch {record['epoch']:>2}  loss {record['loss']:.4f}  test acc "
              f"{record['test_acc']:.4f}  ({record['wall_s']:.1f} s training)", flush=True)

    begin = time.perf_counter()
    params, history = fit(model, params, data, optimizer=optimizer, key=key,
                          batch_size=settings["batch_size"], epochs=settings["epochs"],
                          eval_train=settings["eval_train"], progress=progress,
                          on_epoch=report)
    record = {"net": net, "reverse": data.reverse,
              "command": command_line(data.name, net, data.reverse, settings),
              "history": history.to_dict(), "run_s": time.perf_counter() - begin,
              "best_test_acc": float(np.max(history.test_acc)),
              "best_epoch": int(history.epoch[int(np.argmax(history.test_acc))])}
    return record, jax.device_get(params), config


def first_epoch_reaching(test_acc: list[float], target: float) -> int | None:
    """The first epoch (1-based) whose test accuracy is ``>= target``, or None."""
    return next((i + 1 for i, acc in enumerate(test_acc) if acc >= target), None)
