"""fit under stress: checkpoints and exact resume, NaN losses, Ctrl-C, mixed precision."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

import fnnet
from fnnet.checkpoint import list_checkpoints, restore_checkpoint
from fnnet.data import Dataset, load_digits
from fnnet.optim import sgd
from fnnet.precision import mixed_precision, with_precision
from fnnet.train import NonFiniteLossError, fit


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def _net():
    return fnnet.two_layer_net(64, 24, 10, activation="relu", weight_init="he")


def _fit(data, **kwargs):
    net = _net()
    return fit(net, net.init(jax.random.key(0)), data, optimizer=sgd(0.1),
               key=jax.random.key(1), batch_size=100, progress=False, **kwargs)


def _assert_bit_identical(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


CURVES = ("epoch", "step", "loss", "train_loss", "train_acc", "test_loss", "test_acc",
          "step_loss")


def test_three_epochs_then_resume_for_three_equals_six_straight(digits, tmp_path):
    """Bit for bit, and the history of the whole run: the checkpoint keeps the earlier
    epochs' records (and per-step losses), so the resumed history equals the straight one."""
    straight, full = _fit(digits, epochs=6, record_steps=True)
    _fit(digits, epochs=3, checkpoint_dir=tmp_path, record_steps=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000014.npz", "step_00000028.npz", "step_00000042.npz"]
    resumed, history = _fit(digits, epochs=6, checkpoint_dir=tmp_path, resume=True,
                            record_steps=True)
    assert history.epoch == [1, 2, 3, 4, 5, 6] and history.start_step == 42
    assert history.resumed_epochs == 3 and len(history.step_loss) == 84
    assert {k: getattr(history, k) for k in CURVES} == {k: getattr(full, k) for k in CURVES}
    assert history.wall_s[3] > history.wall_s[2]  # the clock goes on from the checkpoint's
    assert history.trained_s == pytest.approx(history.wall_s[-1] - history.wall_s[2])
    _assert_bit_identical(straight, resumed)


def test_per_step_losses_are_recorded_when_asked(digits):
    _, recorded = _fit(digits, steps=28, record_steps=True)
    assert len(recorded.step_loss) == 28
    assert recorded.loss[0] == pytest.approx(np.mean(recorded.step_loss[:14]), rel=1e-6)
    assert recorded.loss[1] == pytest.approx(np.mean(recorded.step_loss[14:]), rel=1e-6)


def test_resume_without_a_checkpoint_starts_from_scratch(digits, tmp_path):
    fresh, _ = _fit(digits, epochs=2)
    resumed, history = _fit(digits, epochs=2, checkpoint_dir=tmp_path / "new", resume=True)
    assert history.epoch == [1, 2] and history.resumed_epochs == 0
    assert history.step_loss == []  # recorded only when asked (record_steps)
    _assert_bit_identical(fresh, resumed)


def test_a_nan_loss_stops_training_and_names_the_step_and_last_checkpoint(digits, tmp_path):
    net = _net()
    with pytest.raises(NonFiniteLossError) as info:  # step 1's update sends the params to inf
        fit(net, net.init(jax.random.key(0)), digits, optimizer=sgd(3e38),
            key=jax.random.key(1), batch_size=100, epochs=2, progress=False,
            checkpoint_dir=tmp_path)
    error = info.value
    assert error.step == 2 and error.checkpoint is None
    assert re.search(r"non-finite loss \((nan|inf)\) at step 2 \(epoch 1\)", str(error))
    assert "last good checkpoint: none" in str(error)
    assert list_checkpoints(tmp_path) == []  # nothing NaN was written


def test_a_blow_up_after_a_checkpoint_names_that_checkpoint(digits, tmp_path):
    net = _net()
    _fit(digits, epochs=1, checkpoint_dir=tmp_path)  # 14 good steps, saved
    with pytest.raises(NonFiniteLossError) as info:
        fit(net, net.init(jax.random.key(0)), digits, optimizer=sgd(3e38),
            key=jax.random.key(1), batch_size=100, epochs=2, progress=False,
            checkpoint_dir=tmp_path, resume=True)
    assert info.value.step == 16  # step 15 is taken from good params, its update breaks them
    assert info.value.checkpoint == tmp_path / "step_00000014.npz"
    assert "last good checkpoint: " + str(tmp_path / "step_00000014.npz") in str(info.value)
    restored = restore_checkpoint(tmp_path, params_like=net.init(jax.random.key(0)),
                                  opt_state_like=sgd(0.1).init(None))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(restored.params))


@pytest.fixture(scope="module")
def four_epochs(digits):
    """The params of 4 straight epochs: the reference both Ctrl-C tests resume to."""
    return _fit(digits, epochs=4)[0]


def test_ctrl_c_saves_the_last_finished_epoch_and_resume_completes_the_run(digits, tmp_path,
                                                                          four_epochs):
    straight = four_epochs

    def interrupt_after_epoch_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(digits, epochs=4, checkpoint_dir=tmp_path, checkpoint_every=10,
             on_epoch=interrupt_after_epoch_2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000028.npz"]
    resumed, history = _fit(digits, epochs=4, checkpoint_dir=tmp_path, resume=True)
    assert history.epoch == [1, 2, 3, 4] and history.resumed_epochs == 2
    _assert_bit_identical(straight, resumed)


def test_bf16_keeps_float32_params_and_reaches_93_percent_on_digits(digits):
    net = mixed_precision(fnnet.two_layer_net(64, 50, 10, weight_init="he"))
    params, history = fit(net, net.init(jax.random.key(0)), digits, optimizer=sgd(0.1),
                          key=jax.random.key(1), epochs=100, progress=False)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype("float32")}
    assert history.test_acc[-1] >= 0.93
    grads = jax.grad(net.loss)(params, digits.x_test[:4], digits.t_test[:4])
    assert {leaf.dtype for leaf in jax.tree.leaves(grads)} == {np.dtype("float32")}


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16'\)"):
        with_precision(_net(), "fp8")


def test_ctrl_c_while_waiting_for_an_epoch_keeps_the_previous_state(digits, tmp_path,
                                                                     monkeypatch, four_epochs):
    from fnnet import train

    straight = four_epochs
    waits = []
    real_local = train._Placement.local

    def interrupted_third_wait(self, tree):
        if isinstance(tree, jax.Array) and tree.shape == (14,):  # an epoch's losses
            waits.append(tree)
            if len(waits) == 3:
                raise KeyboardInterrupt  # as if Ctrl-C arrived while epoch 3 runs
        return real_local(self, tree)

    monkeypatch.setattr(train._Placement, "local", interrupted_third_wait)
    with pytest.raises(KeyboardInterrupt):
        _fit(digits, epochs=4, checkpoint_dir=tmp_path, checkpoint_every=10)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000028.npz"]
    resumed, history = _fit(digits, epochs=4, checkpoint_dir=tmp_path, resume=True)
    assert history.epoch == [1, 2, 3, 4] and history.resumed_epochs == 2
    _assert_bit_identical(straight, resumed)


def test_resume_with_more_steps_extends_a_finished_run(digits, tmp_path):
    _fit(digits, steps=20, checkpoint_dir=tmp_path)  # epochs of 14 + 6 steps
    _, history = _fit(digits, steps=40, checkpoint_dir=tmp_path, resume=True)
    assert history.step == [14, 20, 34, 40] and history.epoch == [1, 2, 3, 4]  # 14 + 6 more
    assert history.resumed_epochs == 2 and history.trained_epochs == 2
    _, again = _fit(digits, steps=40, checkpoint_dir=tmp_path, resume=True)
    assert again.trained_epochs == 0 and again.epoch == [1, 2, 3, 4]  # nothing left to do


def test_parameters_broken_by_the_last_update_are_not_kept(digits, tmp_path):
    net = _net()
    with pytest.raises(NonFiniteLossError, match=r"non-finite parameters after step 1 "):
        fit(net, net.init(jax.random.key(0)), digits, optimizer=sgd(3e38),
            key=jax.random.key(1), steps=1, progress=False, checkpoint_dir=tmp_path)
    assert list_checkpoints(tmp_path) == []


def test_a_directory_with_checkpoints_needs_resume(digits, tmp_path):
    _fit(digits, epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        _fit(digits, epochs=1, checkpoint_dir=tmp_path)


# --- fit checks its data and arguments before training -------------------------------------


def _refused(data, net=None, **kwargs):
    net = net or _net()
    options = dict(optimizer=sgd(0.1), key=jax.random.key(1), batch_size=100, epochs=1,
                   progress=False) | kwargs
    with pytest.raises(ValueError) as info:
        fit(net, net.init(jax.random.key(0)), data, **options)
    return str(info.value)


def test_fewer_labels_than_images_is_refused(digits):
    message = _refused(digits._replace(t_train=digits.t_train[:100]))
    assert message == "data: x_train has 1437 examples but t_train has 100 labels"


def test_labels_beyond_the_models_classes_are_refused(digits):
    message = _refused(digits, net=fnnet.two_layer_net(64, 10, 5))
    assert message == ("data: t_train holds labels in [0, 9] but the model has 5 classes "
                       "(labels 0..4)")


def test_a_non_finite_input_is_refused_naming_the_example(digits):
    x = digits.x_train.copy()
    x[700, 3] = np.nan
    message = _refused(digits._replace(x_train=x))
    assert message == "data: x_train has 1 non-finite values (first in example 700)"


def test_an_empty_test_set_or_wrong_example_shape_is_refused(digits):
    empty = digits._replace(x_test=digits.x_test[:0], t_test=digits.t_test[:0])
    assert _refused(empty) == "data: the test set is empty"
    images = digits._replace(x_train=digits.x_train.reshape(-1, 8, 8))
    assert _refused(images) == ("data: the model takes examples of shape (64,); x_train has "
                                "(8, 8)")


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(epochs=1.5), "epochs must be an integer >= 1; got 1.5"),
    (dict(epochs=None, steps=0), "steps must be an integer >= 1; got 0"),
    (dict(batch_size=np.int64(0)), "batch_size must be an integer >= 1; got np.int64(0)"),
    (dict(checkpoint_every=0), "checkpoint_every must be an integer >= 1; got 0"),
])
def test_bad_arguments_are_refused_with_their_name(digits, kwargs, message):
    assert _refused(digits, **kwargs) == message


def test_numpy_integer_arguments_are_accepted(digits):
    _, history = _fit(digits, epochs=np.int64(1))
    assert history.epoch == [1]


def test_a_net_with_state_and_dropout_resumes_bit_for_bit(digits, tmp_path):
    def run(**kwargs):
        net = fnnet.multi_layer_net(64, [16], 10, weight_init="he", batchnorm=True,
                                    dropout=0.2)
        return fit(net, net.init(jax.random.key(0)), digits, optimizer=sgd(0.1),
                   key=jax.random.key(1), batch_size=100, progress=False, **kwargs)

    straight, straight_history = run(epochs=3)
    run(epochs=2, checkpoint_dir=tmp_path)
    resumed, history = run(epochs=3, checkpoint_dir=tmp_path, resume=True)
    assert history.epoch == [1, 2, 3] and history.trained_epochs == 1
    assert history.test_acc == straight_history.test_acc
    _assert_bit_identical(straight, resumed)
    _assert_bit_identical(straight_history.state, history.state)  # the running statistics
    assert straight_history.test_acc[-1] > 0.5


def test_matmul_precision_is_a_checked_choice_and_a_no_op_for_float32_on_the_cpu(digits):
    default, _ = _fit(digits, epochs=1)
    highest, _ = _fit(digits, epochs=1, matmul_precision="highest")
    if jax.devices()[0].platform == "cpu":  # XLA:CPU multiplies float32 in float32 anyway
        _assert_bit_identical(default, highest)
    with pytest.raises(ValueError, match=r"matmul precision must be one of \('default', "
                                         r"'high', 'highest'\); got 'tf32'"):
        _fit(digits, epochs=1, matmul_precision="tf32")
