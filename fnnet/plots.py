"""Figures of a run's results as PNG files (needs matplotlib: ``pip install 'fnnet[plot]'``).

* :func:`plot_history` — loss and accuracy per epoch of a :func:`fnnet.train.fit` run (and
  its per-step losses, when recorded: the book's figure 4-11);
* :func:`plot_sweep` — the book's figure 6-24 and η × λ of a :func:`fnnet.sweep.sweep`;
* :func:`plot_perplexity` — training and held-out perplexity per epoch of a
  :func:`fnnet.train_lm.fit_lm` run.

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


def _curve(history: Any, name: str) -> list:
    """A curve of a :class:`fnnet.train.History` or of its ``to_dict()``."""
    return list(history[name] if isinstance(history, dict) else getattr(history, name))


def history_figure(history: Any, *, title: str = "", held_out: str = "test") -> Any:
    """The figure of a :func:`fnnet.train.fit` run: loss and accuracy per epoch (whole-epoch
    ticks), the held-out set named ``held_out`` (``"validation"`` when fit's test slot held
    the validation split), and, when the run recorded them (``record_steps``), every step's
    training loss against the iteration first, as the book's figure 4-11."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    step_loss = _curve(history, "step_loss") if _has(history, "step_loss") else []
    panels = 3 if step_loss else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    if step_loss:
        ax = axes[0]
        ax.plot(range(1, len(step_loss) + 1), step_loss, lw=0.8)
        ax.set(xlabel="iteration (step)", ylabel="softmax cross-entropy",
               title="training loss per step (batch)")
    ax_loss, ax_acc = axes[-2:]
    epochs = _curve(history, "epoch")
    ax_loss.plot(epochs, _curve(history, "loss"), "o-", ms=3,
                 label="train (mean over the epoch's steps)")
    ax_loss.plot(epochs, _curve(history, "test_loss"), "s-", ms=3, label=held_out)
    ax_loss.set(xlabel="epoch", ylabel="softmax cross-entropy", title="loss per epoch")
    ax_acc.plot(epochs, _curve(history, "train_acc"), "o-", ms=3, label="train")
    ax_acc.plot(epochs, _curve(history, "test_acc"), "s-", ms=3, label=held_out)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy after each epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _has(history: Any, name: str) -> bool:
    return name in history if isinstance(history, dict) else hasattr(history, name)


def plot_history(history: Any, path: Path, *, title: str = "", held_out: str = "test") -> None:
    """:func:`history_figure` as a PNG at ``path``."""
    save_png(history_figure(history, title=title, held_out=held_out), path)


def plot_perplexity(history: Any, path: Path, *, title: str = "") -> None:
    """Training and held-out perplexity per epoch (log scale) as a PNG; the epochs after
    which the learning rate was divided are marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(history.epoch, history.train_ppl, marker="o", label="train (mean over epoch)")
    ax.plot(history.epoch, history.held_out_ppl, marker="s", label=history.held_out)
    for epoch, decayed in zip(history.epoch, history.decayed, strict=True):
        if decayed:
            ax.axvline(epoch, color="grey", alpha=0.3, linestyle="--")
    ax.set(xlabel="epoch", ylabel="perplexity", yscale="log", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def plot_sweep(result: Any, path: Path, *, count: int = 20, title: str = "") -> None:
    """The book's figure 6-24 (validation accuracy, solid, and training accuracy, dashed, per
    epoch for the ``count`` best trials in a grid) and a scatter of η × λ coloured by
    validation accuracy, as one PNG."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

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
    axes.flat[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # shared: whole epochs
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
