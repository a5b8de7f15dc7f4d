"""Figures of a run's results as PNG files (needs matplotlib: ``pip install 'fnnet[plot]'``).

* :func:`plot_history` — loss and accuracy per epoch of a :func:`fnnet.train.fit` run;
* :func:`plot_sweep` — the book's figure 6-24 and η × λ of a :func:`fnnet.sweep.sweep`.

Each file is written atomically (:mod:`fnnet.atomic`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> None:
    """``fig`` as a PNG at ``path`` (atomically; the parent is created), then closed."""
    from fnnet.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda file: fig.savefig(file, dpi=100, format="png"))
    finally:
        _pyplot().close(fig)


def plot_history(history: Any, path: Path, *, title: str = "") -> None:
    """Loss and accuracy per epoch (against steps) as a two-panel PNG."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history.step, history.loss, label="train (mean over epoch)")
    ax_loss.plot(history.step, history.test_loss, label="test")
    ax_loss.set(xlabel="step", ylabel="softmax cross-entropy", title="loss")
    ax_acc.plot(history.step, history.train_acc, label="train")
    ax_acc.plot(history.step, history.test_acc, label="test")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def plot_sweep(result: Any, path: Path, *, count: int = 20, title: str = "") -> None:
    """The book's figure 6-24 (validation accuracy, solid, and training accuracy, dashed, per
    epoch for the ``count`` best trials in a grid) and a scatter of η × λ coloured by
    validation accuracy, as one PNG."""
    import numpy as np

    from fnnet.sweep import best_trials

    plt = _pyplot()
    rows = best_trials(result, count)
    cols = 5
    grid_rows = math.ceil(len(rows) / cols)
    fig = plt.figure(figsize=(16, max(4.0, 2.6 * grid_rows + 1.5)))
    left, right = fig.subfigures(1, 2, width_ratios=[2.2, 1])
    axes = left.subplots(grid_rows, cols, sharex=True, sharey=True, squeeze=False)
    epochs = np.arange(1, result.epochs + 1)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for rank, (ax, row) in enumerate(zip(axes.flat, rows, strict=False), start=1):
        ax.plot(epochs, result.curves["val_acc"][row.index], label="validation")
        ax.plot(epochs, result.curves["train_acc"][row.index], "--", label="train")
        ax.set_title(f"best-{rank}: val {row.val_acc:.2f}\nlr {row.trial.lr:.1e}, "
                     f"λ {row.trial.weight_decay:.1e}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    left.supxlabel("epoch")
    left.supylabel("accuracy")
    ax = right.subplots()
    lrs = np.array([t.lr for t in result.trials])
    wds = np.array([t.weight_decay for t in result.trials])
    points = ax.scatter(lrs, np.where(wds > 0, wds, np.nan), c=result.val_acc(), cmap="viridis",
                        s=25, edgecolors="k", linewidths=0.3)
    if np.ptp(lrs) > 0:
        ax.set_xscale("log")
    if np.any(wds > 0) and np.ptp(wds[wds > 0]) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="learning rate", ylabel="weight decay λ",
           title="validation accuracy per trial")
    right.colorbar(points, ax=ax, label="validation accuracy")
    fig.suptitle(title)
    save_png(fig, path)
