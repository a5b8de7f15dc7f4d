"""Training language models (fnnet.train_lm): the book's truncated-BPTT batching, perplexity
over every prediction with the state carried, one program an epoch equal to a loop of train
steps, clipping before the optimiser, the lr ÷ 4 rule, checkpoints and resume, bad input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import train_lm
from fnnet.nets import rnnlm
from fnnet.train import NonFiniteLossError, TrainState, make_train_step
from fnnet.train_lm import (
    check_ids,
    eval_chunks,
    fit_lm,
    learning_rate_of,
    lm_optimizer,
    perplexity,
    sequence_batches,
    zero_state,
)
from tests.helpers import max_abs_diff

V, B, T = 12, 2, 3
IDS = np.random.default_rng(0).integers(0, V, 61).astype(np.int32)  # 10 steps of 2 × 3
HELD_OUT = np.random.default_rng(1).integers(0, V, 30).astype(np.int32)


def book_get_batch(xs: np.ndarray, ts: np.ndarray, batch_size: int, time_size: int,
                   epochs: int = 1):
    """The sequel's ``RnnlmTrainer.get_batch`` loop over ``fit(max_epoch=epochs)``."""
    data_size = len(xs)
    jump = data_size // batch_size
    offsets = [i * jump for i in range(batch_size)]
    time_idx = 0
    for _ in range(epochs * (data_size // (batch_size * time_size))):
        batch_x = np.empty((batch_size, time_size), np.int32)
        batch_t = np.empty((batch_size, time_size), np.int32)
        for t in range(time_size):
            for i, offset in enumerate(offsets):
                batch_x[i, t] = xs[(offset + time_idx) % data_size]
                batch_t[i, t] = ts[(offset + time_idx) % data_size]
            time_idx += 1
        yield batch_x, batch_t


@pytest.mark.parametrize("size, batch, time", [(61, 2, 3), (1000, 10, 5), (50, 7, 1)])
def test_sequence_batches_are_the_books_get_batch(size, batch, time):
    """``restart``: each epoch is one ``fit(max_epoch=1)``; ``continue``: epoch e is the e-th
    part of one ``fit(max_epoch=3)``, wrapping around the corpus."""
    ids = np.arange(size) * 7 % 101
    x, t = sequence_batches(ids, batch, time)
    book = list(book_get_batch(ids[:-1], ids[1:], batch, time, epochs=3))
    steps = len(book) // 3
    assert x.shape == t.shape == (steps, batch, time)
    np.testing.assert_array_equal(x, [bx for bx, _ in book[:steps]])
    np.testing.assert_array_equal(t, [bt for _, bt in book[:steps]])
    np.testing.assert_array_equal(sequence_batches(ids, batch, time, epoch=3)[0], x)
    for epoch in (1, 2, 3):
        x, t = sequence_batches(ids, batch, time, epoch=epoch, streams="continue")
        part = book[(epoch - 1) * steps:epoch * steps]
        np.testing.assert_array_equal(x, [bx for bx, _ in part])
        np.testing.assert_array_equal(t, [bt for _, bt in part])


def test_eval_chunks_hold_every_prediction_once_in_stream_order():
    ids = np.arange(23)
    x, t = eval_chunks(ids, 3, 4)
    assert x.shape == t.shape == (2, 3, 4)
    streams_x = x.transpose(1, 0, 2).reshape(3, -1)
    streams_t = t.transpose(1, 0, 2).reshape(3, -1)
    kept = streams_t != -1
    np.testing.assert_array_equal(streams_x[kept], ids[:-1])  # row-major: stream by stream
    np.testing.assert_array_equal(streams_t[kept], ids[1:])
    assert eval_chunks(ids, 3, 4, num_chunks=5)[0].shape == (5, 3, 4)


@pytest.fixture(scope="module")
def setup():
    """One model and optimiser for the module (their programs compile once), and a straight
    two-epoch run."""
    model = rnnlm(V, 4, 4, time_size=T)
    params = model.init(jax.random.key(0))
    optimizer = lm_optimizer("sgd", 2.0, max_grad=0.5)
    trained, history = fit_lm(model, params, IDS, HELD_OUT, optimizer=optimizer,
                              key=jax.random.key(1), batch_size=B, time_size=T, epochs=2,
                              streams="continue", eval_batch_size=2, eval_time_size=4,
                              progress=False)
    return model, params, optimizer, trained, history


def test_perplexity_is_exp_of_the_mean_cross_entropy_with_the_state_carried(setup):
    """Chunked with the state carried = each stream's whole sequence at once."""
    model, params, *_ = setup
    x, t = eval_chunks(HELD_OUT, 2, 4)
    whole_x = x.transpose(1, 0, 2).reshape(2, -1)
    whole_t = t.transpose(1, 0, 2).reshape(2, -1)
    mean = jax.jit(model.loss, static_argnames="train")(params, whole_x, whole_t, train=False)
    expected = math.exp(float(mean))  # the loss is already the mean over every prediction
    assert perplexity(model, params, HELD_OUT, batch_size=2, time_size=4) == pytest.approx(
        expected, rel=1e-5)


def test_an_epoch_is_one_program_and_a_loop_of_train_steps_with_the_state_carried(setup):
    model, params, optimizer, trained, history = setup
    assert history.compilations == 3  # start, the epoch, the evaluation
    assert history.epoch == [1, 2] and history.step == [10, 20] and history.steps_per_epoch == 10
    assert history.lr == [2.0, 2.0] and history.decayed == [False, False]
    assert history.train_ppl == pytest.approx(np.exp(history.loss))
    assert history.best_ppl == pytest.approx(min(history.held_out_ppl), rel=1e-6)  # float32
    assert history.held_out_ppl[-1] == pytest.approx(
        perplexity(model, trained, HELD_OUT, batch_size=2, time_size=4), rel=1e-5)
    # The same epochs as a Python loop of fit's train step: the streams run on and the state
    # is carried ("continue"), or they start again from zero states ("restart").
    step = make_train_step(model, optimizer)
    restarted, _ = fit_lm(model, params, IDS, HELD_OUT, optimizer=optimizer,
                          key=jax.random.key(1), batch_size=B, time_size=T, epochs=2,
                          eval_batch_size=2, eval_time_size=4, progress=False)
    for streams, result in (("continue", trained), ("restart", restarted)):
        copy = jax.tree.map(jnp.array, params)  # the step donates its train state
        state = TrainState(copy, optimizer.init(copy), zero_state(model, params, B))
        for epoch in (1, 2):
            if streams == "restart":
                state = state._replace(model_state=zero_state(model, params, B))
            x, t = sequence_batches(IDS, B, T, epoch=epoch, streams=streams)
            for s in range(len(x)):
                state, _ = step(state, x[s], t[s])
        assert max_abs_diff(state.params, result) < 1e-5, streams
    assert max_abs_diff(trained, restarted) > 1e-3  # the two differ after epoch 1


def test_resuming_from_a_checkpoint_continues_the_run_exactly(setup, tmp_path):
    model, params, optimizer, trained, history = setup
    run = dict(optimizer=optimizer, key=jax.random.key(1), batch_size=B, time_size=T,
               streams="continue", eval_batch_size=2, eval_time_size=4, progress=False,
               checkpoint_dir=tmp_path / "ckpt")  # the carried state is in the checkpoint
    fit_lm(model, params, IDS, HELD_OUT, epochs=1, **run)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        fit_lm(model, params, IDS, HELD_OUT, epochs=2, **run)
    resumed, rest = fit_lm(model, params, IDS, HELD_OUT, epochs=2, resume=True, **run)
    assert rest.epoch == [1, 2] and rest.start_step == 10  # the whole run's records
    assert rest.resumed_epochs == 1 and rest.trained_epochs == 1
    assert max_abs_diff(resumed, trained) < 1e-6
    assert rest.held_out_ppl == pytest.approx(history.held_out_ppl, rel=1e-5)
    assert rest.step_losses[0] == pytest.approx(history.step_losses[0], rel=1e-6)


def test_clipping_comes_before_the_optimiser_and_the_held_out_rule_divides_the_lr():
    params = {"w": jnp.zeros(2)}
    optimizer = lm_optimizer("sgd", 20.0, max_grad=1.0)
    state = optimizer.init(params)
    updates, state = optimizer.update({"w": jnp.array([3.0, 4.0])}, state, params)
    np.testing.assert_allclose(updates["w"], [-12.0, -16.0], rtol=1e-5)  # −20·g/(5 + 1e-6)
    state, decayed = train_lm._held_out_rule(state, 100.0, 20.0, 4.0)
    assert not decayed and train_lm.best_of(state) == 100.0
    state, decayed = train_lm._held_out_rule(state, 100.0, 20.0, 4.0)  # not better: ÷ 4
    assert decayed and learning_rate_of(state) == 5.0 and train_lm.best_of(state) == 100.0
    updates, _ = optimizer.update({"w": jnp.array([0.3, 0.4])}, state, params)
    np.testing.assert_allclose(updates["w"], [-1.5, -2.0], rtol=1e-5)  # not clipped, lr 5
    state, decayed = train_lm._held_out_rule(state, 90.0, 5.0, 4.0)
    assert not decayed and train_lm.best_of(state) == 90.0
    assert train_lm._held_out_rule(state, 95.0, 5.0, None)[1] is False
    with pytest.raises(ValueError, match="must hold one injected learning rate"):
        learning_rate_of(())
    with pytest.raises(ValueError, match="optimizer must be one of"):
        lm_optimizer("sgdd", 1.0)


def test_bad_input_is_refused_before_any_training(setup):
    model, params, optimizer, *_ = setup
    run = dict(optimizer=optimizer, key=jax.random.key(1), batch_size=B, time_size=T,
               progress=False)
    with pytest.raises(ValueError, match=r"train_ids holds word ids in \[0, 12\] but the "
                                         r"vocabulary is \[0, 12\) \(first outside it: 12 at "
                                         r"position 3\)"):
        fit_lm(model, params, np.r_[IDS[:3], 12, IDS[4:]], HELD_OUT, **run)
    with pytest.raises(ValueError, match=r"batch_size × time_size = 2 × 40 = 80 words per step "
                                         r"is more than the corpus's 60 predictions"):
        fit_lm(model, params, IDS, HELD_OUT, **{**run, "time_size": 40})
    with pytest.raises(ValueError, match="must be a 1-D array of integer word ids"):
        check_ids(IDS.astype(float), V)
    with pytest.raises(ValueError, match="resume needs a checkpoint_dir"):
        fit_lm(model, params, IDS, HELD_OUT, resume=True, **run)
    broken = jax.tree.map(lambda p: p * np.nan, params)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 1"):
        fit_lm(model, broken, IDS, HELD_OUT, epochs=1, eval_batch_size=2, eval_time_size=4,
               **run)
