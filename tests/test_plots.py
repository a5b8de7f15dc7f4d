"""fnnet.plots: what the figures say (labels, axes, titles), read from the figure objects."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from fnnet.plots import history_figure
from fnnet.train import History


def _history(epochs: int = 3, steps_per_epoch: int = 14, step_loss: bool = False) -> History:
    history = History()
    for epoch in range(1, epochs + 1):
        history.record(epoch=epoch, step=epoch * steps_per_epoch, loss=1 / epoch,
                       train_loss=1 / epoch, train_acc=0.5 + 0.1 * epoch,
                       test_loss=1.1 / epoch, test_acc=0.45 + 0.1 * epoch, seconds=0.1,
                       num_steps=steps_per_epoch)
    if step_loss:
        history.step_loss = [2.0 / (1 + i) for i in range(epochs * steps_per_epoch)]
    return history


def _labels(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_epoch_records_are_drawn_per_epoch_with_whole_epoch_ticks_and_the_held_out_name():
    import matplotlib.pyplot as plt

    fig = history_figure(_history(), title="digits, mlp 64-50-10 relu, adam lr 0.001",
                         held_out="validation")
    fig.canvas.draw()
    ax_loss, ax_acc = fig.axes
    for ax in (ax_loss, ax_acc):
        assert ax.get_xlabel() == "epoch"
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert any("validation" in label for label in _labels(ax))
        assert not any("test" in label for label in _labels(ax))
    assert list(ax_acc.lines[0].get_xdata()) == [1, 2, 3]
    assert fig._suptitle.get_text() == "digits, mlp 64-50-10 relu, adam lr 0.001"
    plt.close(fig)


def test_recorded_step_losses_get_the_books_per_iteration_panel():
    import matplotlib.pyplot as plt

    fig = history_figure(_history(step_loss=True))
    assert len(fig.axes) == 3
    ax_steps = fig.axes[0]
    assert ax_steps.get_xlabel() == "iteration (step)"
    assert len(ax_steps.lines[0].get_xdata()) == 42
    assert _labels(fig.axes[2]) == ["train", "test"]
    plt.close(fig)
