"""What the seq2seq experiments share: one training run as ``fnnet seq2seq`` does it (the
book's Adam after its gradient clip, shuffled batches, seeded init), recorded per epoch."""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np
import optax

from fnnet.data import Seq2seqData
from fnnet.nets import seq2seq as nets
from fnnet.optim import adam, clip_grads
from fnnet.train import fit, init_from_seed


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
