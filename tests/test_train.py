"""Training: scan epochs vs a Python loop, determinism, manual vs autodiff, fit, evaluate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet.data import Dataset, load_digits
from fnnet.optim import sgd
from fnnet.train import (
    batch_indices,
    check_data,
    epoch_plan,
    evaluate,
    fit,
    init_train_state,
    make_epoch,
    make_train_step,
)
from tests.helpers import assert_tree_allclose

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def _net(grads="manual"):
    return fnnet.two_layer_net(64, 30, 10, activation="sigmoid", weight_init="xavier",
                               grads=grads)


def test_scan_epoch_equals_a_python_loop_of_jitted_steps(digits):
    net, optimizer = _net(), sgd(0.3)
    x, t = jnp.asarray(digits.x_train), jnp.asarray(digits.t_train)
    indices = batch_indices(jax.random.key(1), num_examples=len(x), batch_size=64,
                            num_steps=20)
    scanned, scan_losses = make_epoch(net, optimizer)(
        init_train_state(net, net.init(jax.random.key(0)), optimizer), x, t, indices)
    state = init_train_state(net, net.init(jax.random.key(0)), optimizer)
    step, loop_losses = make_train_step(net, optimizer), []
    for batch in indices:
        state, loss = step(state, x[batch], t[batch])
        loop_losses.append(loss)
    # XLA may fuse the scanned body differently from the standalone step: float32 rounding.
    assert_tree_allclose(scanned, state, jnp.float32)
    np.testing.assert_allclose(scan_losses, np.array(loop_losses), rtol=1e-5)


def test_manual_and_autodiff_training_give_the_same_loss_curve_over_50_steps(digits):
    x, t = jnp.asarray(digits.x_train), jnp.asarray(digits.t_train)
    indices = batch_indices(jax.random.key(2), num_examples=len(x), batch_size=25,
                            num_steps=50)
    curves, finals = [], []
    for grads in ("manual", "autodiff"):
        net, optimizer = _net(grads), sgd(0.5)
        state = init_train_state(net, net.init(jax.random.key(0)), optimizer)
        state, losses = make_epoch(net, optimizer)(state, x, t, indices)
        curves.append(losses)
        finals.append(state.params)
    np.testing.assert_allclose(curves[0], curves[1], rtol=2e-6)
    assert_tree_allclose(finals[0], finals[1], jnp.float32)
    assert float(curves[0][-1]) < 0.9 * float(curves[0][0])  # it learns


def test_same_seed_gives_identical_params_and_history(digits):
    runs = []
    for _ in range(2):
        net = _net()
        params, history = fit(net, net.init(jax.random.key(7)), digits, optimizer=sgd(0.3),
                              key=jax.random.key(8), epochs=2, progress=False)
        runs.append((params, history.loss, history.test_acc))
    for a, b in zip(jax.tree.leaves(runs[0][0]), jax.tree.leaves(runs[1][0]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1:] == runs[1][1:]


def test_train_step_returns_the_loss_before_its_update(digits):
    net, optimizer = _net(), sgd(0.3)
    x, t = jnp.asarray(digits.x_train[:32]), jnp.asarray(digits.t_train[:32])
    params = net.init(jax.random.key(0))
    expected = float(net.loss(params, x, t))
    state, loss = make_train_step(net, optimizer)(init_train_state(net, params, optimizer), x, t)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(net.loss(state.params, x, t)) < expected


def test_shuffle_draws_each_example_at_most_once_and_drops_the_remainder():
    indices = batch_indices(jax.random.key(0), num_examples=103, batch_size=10, num_steps=10)
    assert indices.shape == (10, 10)
    assert len(np.unique(np.asarray(indices))) == 100
    other = batch_indices(jax.random.key(1), num_examples=103, batch_size=10, num_steps=10)
    assert not np.array_equal(indices, other)


def test_replacement_sampling_draws_uniformly_with_repeats():
    indices = np.asarray(batch_indices(jax.random.key(0), num_examples=50, batch_size=100,
                                       num_steps=40, sampling="replacement"))
    assert indices.shape == (40, 100) and indices.min() >= 0 and indices.max() < 50
    counts = np.bincount(indices.ravel(), minlength=50)
    assert counts.min() > 0 and abs(counts.mean() - 80) < 1e-9 and counts.std() < 20


def test_epoch_plan_for_epochs_and_for_steps_with_a_partial_epoch():
    assert epoch_plan(1437, 100, epochs=3, steps=None) == [14, 14, 14]
    assert epoch_plan(60000, 100, epochs=None, steps=10000) == [600] * 16 + [400]
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 1437\].*got 2000"):
        epoch_plan(1437, 2000, epochs=1, steps=None)
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        epoch_plan(1437, 100, epochs=1, steps=10)


def test_evaluate_covers_every_example_including_the_last_partial_batch(digits):
    net = _net()
    params = net.init(jax.random.key(3))
    x, t = jnp.asarray(digits.x_test), jnp.asarray(digits.t_test)  # 360 examples
    loss, accuracy = evaluate(net, params, x, t, batch_size=100)  # 3 × 100 + 60
    assert loss == pytest.approx(float(net.loss(params, x, t)), rel=1e-5)
    assert accuracy == pytest.approx(float(net.accuracy(params, x, t)), abs=1e-9)
    one_hot = evaluate(net, params, x, jax.nn.one_hot(t, 10), batch_size=7)
    assert one_hot == pytest.approx((loss, accuracy), rel=1e-5)
    # up to 2 × batch_size examples are one batch (180 and 200 here), more are a loop
    for batch_size in (180, 200, 179):
        assert evaluate(net, params, x, t, batch_size=batch_size) == pytest.approx(
            (loss, accuracy), rel=1e-5)


def test_fit_trains_digits_to_high_accuracy_with_a_full_history(digits):
    net = fnnet.two_layer_net(64, 50, 10, weight_init="he")
    seen = []
    params, history = fit(net, net.init(jax.random.key(0)), digits, optimizer=sgd(0.1),
                          key=jax.random.key(1), steps=300, progress=False, on_epoch=seen.append)
    assert history.epoch == list(range(1, 23)) and history.step[-1] == 300
    assert [r["epoch"] for r in seen] == history.epoch
    assert history.test_acc[-1] >= 0.9
    assert history.loss[-1] < history.loss[0]
    assert all(len(getattr(history, k)) == 22 for k in ("loss", "train_acc", "wall_s"))
    assert history.compile_s > 0 and all(s > 0 for s in history.steps_per_s)
    x_test, t_test = jnp.asarray(digits.x_test), jnp.asarray(digits.t_test)
    assert float(net.accuracy(params, x_test, t_test)) == pytest.approx(history.test_acc[-1])


# --- fit's pieces, one at a time -----------------------------------------------------------


def test_remaining_epochs_continue_a_resumed_run_to_the_new_total():
    from fnnet.train import _remaining_epochs, _RunState

    fresh = _RunState(epoch=0, step=0, checkpoint=None, saved_step=-1)
    assert _remaining_epochs([14, 14, 14], fresh, 1437, 100) == [(1, 14), (2, 14), (3, 14)]
    resumed = _RunState(epoch=1, step=20, checkpoint=None, saved_step=20)
    assert _remaining_epochs([14, 14, 14], resumed, 1437, 100) == [(2, 14), (3, 8)]
    done = _RunState(epoch=3, step=42, checkpoint=None, saved_step=42)
    assert _remaining_epochs([14, 14, 14], done, 1437, 100) == []


def test_finite_loss_check_names_the_first_bad_step_and_the_last_checkpoint(tmp_path):
    from fnnet.train import NonFiniteLossError, _check_finite_losses, _RunState

    run = _RunState(epoch=2, step=28, checkpoint=tmp_path / "step_00000028.npz", saved_step=28)
    _check_finite_losses(np.array([0.5, 0.4]), run, 3)  # nothing to report
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(inf\) at step 30 \(epoch "
                                                 r"3\).*last good checkpoint: .*28.npz") as info:
        _check_finite_losses(np.array([0.5, np.inf, np.nan]), run, 3)
    assert info.value.step == 30 and info.value.checkpoint == run.checkpoint


def test_history_record_appends_one_epoch_and_accumulates_wall_time():
    from fnnet.train import History

    history = History()
    common = dict(loss=1.0, train_loss=0.9, train_acc=0.5, test_loss=1.1, test_acc=0.4)
    history.record(epoch=1, step=10, seconds=2.0, num_steps=10, **common)
    record = history.record(epoch=2, step=20, seconds=0.5, num_steps=10, **common)
    assert record["wall_s"] == 2.5 and record["steps_per_s"] == 20.0
    assert history.epoch == [1, 2] and history.wall_s == [2.0, 2.5]
    assert "state" not in history.to_dict()


def _bag_of_words(vocabulary: int, classes: int):
    """A Model over integer ids: the mean of the words' embeddings, then an affine."""
    from fnnet import manual
    from fnnet.layers import Model

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"E": 0.1 * jax.random.normal(k1, (vocabulary, 4)),
                "W": 0.1 * jax.random.normal(k2, (4, classes)), "b": jnp.zeros(classes)}

    def apply(params, x, *, state=None, key=None, train=False):
        h = jnp.mean(manual.embedding(params["E"], x), axis=1)
        return manual.affine(h, params["W"], params["b"])

    def loss(params, x, t, *, state=None, key=None, train=True):
        return manual.softmax_cross_entropy(apply(params, x), t)

    def accuracy(params, x, t, *, state=None):
        return jnp.mean(jnp.argmax(apply(params, x), -1) == t)

    return Model(init, lambda: {}, apply, loss,
                 lambda p, s, x, t, *, key=None: (loss(p, x, t), s), accuracy, (3,), (classes,),
                 input_range=vocabulary)


def test_a_model_of_integer_ids_trains_and_its_ids_are_checked():
    from fnnet.optim import sgd

    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, (64, 3)).astype(np.int32)
    t = (x[:, 0] % 2).astype(np.int32)
    data = Dataset("ids", x, t, x[:16], t[:16], 2, None)
    model = _bag_of_words(7, 2)
    _, history = fit(model, model.init(jax.random.key(0)), data, optimizer=sgd(0.5),
                     key=jax.random.key(1), batch_size=16, epochs=2, progress=False)
    assert len(history.loss) == 2 and np.isfinite(history.loss).all()
    with pytest.raises(ValueError, match=r"x_train holds ids in \[1, 7\] but the model takes ids "
                                         r"in \[0, 7\)"):
        check_data(model, data._replace(x_train=np.where(x == 0, 7, x)))
    with pytest.raises(ValueError, match=r"x_test must be integer ids in \[0, 7\); got float32"):
        check_data(model, data._replace(x_test=x[:16].astype(np.float32)))


class _Terminal:
    """A stand-in for a terminal's stderr: tqdm draws only on a file that is a TTY."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_the_progress_bar_is_drawn_only_on_a_terminal_and_shows_the_epoch_lines_rate():
    from fnnet.cli.train import epoch_line
    from fnnet.train import bar_postfix, progress_bar

    record = dict(epoch=1, step=14, loss=0.5, train_acc=0.9, test_acc=0.85, steps_per_s=1234.5)
    for tty in (False, True):
        terminal = _Terminal(tty)
        bar = progress_bar(28, 0, True, file=terminal)
        bar.update(14)
        bar.set_postfix_str(bar_postfix(record))
        bar.close()
        assert bool(terminal.text) is tty
    assert "14/28 steps" in terminal.text and "it/s" not in terminal.text
    assert "1,234 steps/s" in terminal.text and "1,234 steps/s" in epoch_line(record, 2)
    off = _Terminal(True)
    progress_bar(28, 0, False, file=off).close()
    assert off.text == ""


def test_fit_from_library_code_draws_no_bar_by_default(digits, capsys):
    net = fnnet.two_layer_net(64, 8, 10)
    fit(net, net.init(jax.random.key(0)), digits, optimizer=sgd(0.1), key=jax.random.key(1),
        steps=3)
    assert capsys.readouterr().err == ""
