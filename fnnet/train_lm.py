"""Training language models as the sequel does: truncated BPTT over a corpus of word ids,
clipped gradients, perplexity, and the learning rate ÷ 4 when it stops improving.

**Batching** (the book's ``RnnlmTrainer.get_batch``). Inputs are ``xs = ids[:-1]``, labels
the next words ``ts = ids[1:]``. The ``B = batch_size`` rows of a batch read ``B`` streams
starting at evenly spaced offsets ``i·jump`` (``jump = len(xs) // B``); each step takes the
next ``T = time_size`` words of every stream, so an epoch is ``len(xs) // (B·T)`` steps
(the book's ``max_iters``) and row ``i`` of step ``s`` continues row ``i`` of step ``s − 1``.
The recurrent layers' last ``h`` (``c``) is the model's state: it is carried from each step
to the next (the gradient is not: truncated BPTT). Between epochs, two ways, as the book's
scripts do (``streams``): ``"restart"`` resets the state to zeros and starts the streams
again at their offsets (``train_better_rnnlm.py``, one ``fit(max_epoch=1)`` per epoch);
``"continue"`` lets the streams run on, wrapping around the corpus, with the state carried
(``train_rnnlm.py``'s ``fit(max_epoch=4)`` and the chapter-5 loop) — every epoch then cuts
the text at other places.

**Perplexity** is ``exp`` of the mean cross-entropy over **every** prediction of a split
(``len(ids) − 1`` of them): the split is cut into ``eval_batch_size`` streams of
``⌈(len − 1)/B⌉`` words, read ``eval_time_size`` at a time with the state carried along
each stream (zeros at its start); the padding after the end of the last stream and of the
last chunk carries the label ``-1`` and counts for nothing. (The book's
``eval_perplexity`` drops the last ``(len − 1) mod (B·T)`` predictions and wraps around.)

**Programs.** An epoch is one compiled program: a ``lax.scan`` of :func:`fnnet.train._step`
(the same train step ``fit`` uses) over the epoch's chunks, the dropout keys drawn inside.
Evaluating a split is another (a ``lax.scan`` over its chunks); the start is a third.

**Optimiser.** :func:`lm_optimizer` chains the book's gradient clipping
(:func:`fnnet.optim.clip_grads`) before the optimiser, whose learning rate is a
hyperparameter held in the optimiser state (``optax.inject_hyperparams``), so the book's
"lr ÷ 4 when the held-out perplexity does not improve" (``lr_decay=4``) changes it between
epochs without compiling again, and a checkpoint holds it — with the best perplexity so
far, kept by :func:`track_best` in the same state.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnnet import checkpoint, precision
from fnnet._checks import check_int, check_range
from fnnet.compiles import count_compilations
from fnnet.layers import Model, State
from fnnet.optim import clip_grads, get_optimizer
from fnnet.train import (
    NOISE_STREAM,
    EpochRecords,
    TrainState,
    _check_finite_losses,
    _check_finite_params,
    _RunState,
    _scan_steps,
    hold_checkpoint_dir,
    progress_bar,
)

Params = Any
IGNORE = -1
"""The label of padded positions (``time_softmax_cross_entropy``'s ``ignore_label``)."""


# --- data ----------------------------------------------------------------------------------


def check_ids(ids: Any, vocabulary_size: int, name: str = "ids") -> np.ndarray:
    """``ids`` as a 1-D int32 array of word ids in ``[0, vocabulary_size)``, at least two
    (one prediction), else a one-line ``ValueError`` naming ``name``."""
    array = np.asarray(ids)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D array of integer word ids; got "
                         f"{array.dtype} of shape {array.shape}")
    if len(array) < 2:
        raise ValueError(f"{name} needs at least 2 words (one prediction); got {len(array)}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocabulary_size:
        bad = int(np.argmax((array < 0) | (array >= vocabulary_size)))
        raise ValueError(f"{name} holds word ids in [{low}, {high}] but the vocabulary is "
                         f"[0, {vocabulary_size}) (first outside it: {int(array[bad])} at "
                         f"position {bad})")
    return array.astype(np.int32)


STREAMS = ("restart", "continue")
"""How the streams go on from one epoch to the next (see :func:`sequence_batches`)."""


def steps_per_epoch(num_words: int, batch_size: int, time_size: int) -> int:
    """``(num_words − 1) // (B·T)``, the book's ``max_iters``, or a one-line ``ValueError``
    when that is not one step."""
    batch_size, time_size = check_int("batch_size", batch_size), check_int("time_size", time_size)
    steps = (num_words - 1) // (batch_size * time_size)
    if steps < 1:
        raise ValueError(f"batch_size × time_size = {batch_size} × {time_size} = "
                         f"{batch_size * time_size} words per step is more than the corpus's "
                         f"{num_words - 1} predictions ({num_words} words): not one step; use "
                         f"a smaller --batch-size or --time-size")
    return steps


def _positions(xp: Any, data_size: int, batch_size: int, time_size: int, steps: int,
               epoch: Any, streams: str) -> Any:
    """``(steps·B, T)`` positions in ``xs`` (``xp``: numpy or jax.numpy; ``epoch`` 1-based,
    traced or not): row ``s·B + i`` is stream ``i`` at step ``s`` of the epoch."""
    jump = data_size // batch_size
    per_epoch = steps * time_size
    start = (epoch - 1) * (per_epoch % data_size) % data_size if streams == "continue" else 0
    positions = (xp.arange(batch_size)[:, None] * jump + start
                 + xp.arange(per_epoch)[None, :]) % data_size  # (B, steps·T)
    return positions.reshape(batch_size, steps, time_size).transpose(1, 0, 2).reshape(
        steps * batch_size, time_size)


def sequence_batches(ids: np.ndarray, batch_size: int, time_size: int, *, epoch: int = 1,
                     streams: str = "restart") -> tuple[np.ndarray, np.ndarray]:
    """The book's truncated-BPTT batches of one epoch: ``(x, t)``, each
    ``(steps, batch_size, time_size)`` with ``steps = (len(ids) − 1) // (B·T)``.

    Row ``i`` of step ``s`` is ``xs[(i·jump + start + s·T + τ) mod len(xs)]`` for
    ``τ < T`` (``xs = ids[:-1]``, ``jump = len(xs) // B``) and ``t`` the words after them.
    ``streams="restart"``: every epoch starts at the offsets (``start = 0``, the book's
    ``fit(max_epoch=1)`` per epoch of ``train_better_rnnlm.py``); ``"continue"``: the
    streams go on from where the last epoch stopped (``start = (epoch − 1)·steps·T``, the
    book's ``fit(max_epoch=n)`` of ``train_rnnlm.py`` and its chapter-5 loop), so each
    epoch cuts the text at other places.

    >>> x, t = sequence_batches(np.arange(13), batch_size=2, time_size=3)
    >>> x.tolist(), t[:, 1].tolist()
    ([[[0, 1, 2], [6, 7, 8]], [[3, 4, 5], [9, 10, 11]]], [[7, 8, 9], [10, 11, 12]])
    """
    if streams not in STREAMS:
        raise ValueError(f"streams must be one of {STREAMS}; got {streams!r}")
    ids = np.asarray(ids)
    steps = steps_per_epoch(len(ids), batch_size, time_size)
    rows = _positions(np, len(ids) - 1, batch_size, time_size, steps, epoch, streams)
    shape = (steps, batch_size, time_size)
    return ids[:-1][rows].reshape(shape), ids[1:][rows].reshape(shape)


def eval_chunks(ids: np.ndarray, batch_size: int, time_size: int,
                num_chunks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every prediction of ``ids`` as ``(chunks, batch_size, time_size)`` inputs and labels:
    ``batch_size`` consecutive streams of ``⌈(len − 1)/B⌉`` words, padded (input 0, label
    :data:`IGNORE`) to whole chunks — at least ``num_chunks`` of them when given.

    >>> x, t = eval_chunks(np.arange(6), batch_size=2, time_size=2)
    >>> x.tolist(), t.tolist()
    ([[[0, 1], [3, 4]], [[2, 0], [0, 0]]], [[[1, 2], [4, 5]], [[3, -1], [-1, -1]]])
    """
    batch_size, time_size = check_int("batch_size", batch_size), check_int("time_size", time_size)
    ids = np.asarray(ids, np.int32)
    predictions = len(ids) - 1
    length = -(-predictions // batch_size)
    chunks = max(-(-length // time_size), num_chunks or 0)
    x = np.zeros(batch_size * length, np.int32)
    t = np.full(batch_size * length, IGNORE, np.int32)
    x[:predictions], t[:predictions] = ids[:-1], ids[1:]
    pad = ((0, 0), (0, chunks * time_size - length))
    x = np.pad(x.reshape(batch_size, length), pad)
    t = np.pad(t.reshape(batch_size, length), pad, constant_values=IGNORE)
    return (x.reshape(batch_size, chunks, time_size).transpose(1, 0, 2),
            t.reshape(batch_size, chunks, time_size).transpose(1, 0, 2))


def zero_state(model: Model, params: Params, batch_size: int) -> State:
    """The carried state for ``batch_size`` rows, all zeros: the shapes the model's
    ``loss_and_state`` returns from a ``{}`` state (``{}`` for a model that carries none)."""
    x = np.zeros((batch_size, 1), np.int32)
    shapes = jax.eval_shape(
        lambda p: model.loss_and_state(p, {}, x, x, key=None, train=False)[1], params)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def _loss_sum(model: Model, params: Params, x: jax.Array, t: jax.Array) -> jax.Array:
    """Σ cross-entropy over every labelled position of the chunks ``(C, B, T)``, the state
    carried from chunk to chunk (evaluation mode); traceable."""
    def body(carry, chunk):
        total, state = carry
        x_c, t_c = chunk
        loss, state = model.loss_and_state(params, state, x_c, t_c, train=False)
        count = jnp.sum(t_c != IGNORE)
        return (total + loss.astype(jnp.float32) * count, state), None

    start = (jnp.zeros((), jnp.float32), zero_state(model, params, x.shape[1]))
    (total, _), _ = jax.lax.scan(body, start, (x, t))
    return total


_evaluate = jax.jit(_loss_sum, static_argnums=(0,))


def perplexity(model: Model, params: Params, ids: Any, *, batch_size: int = 10,
               time_size: int = 35) -> float:
    """``exp`` of the mean cross-entropy of ``model`` over every prediction of ``ids``, the
    state carried along ``batch_size`` streams (see the module docstring). One program."""
    ids = check_ids(ids, model.input_range, "ids")
    x, t = eval_chunks(ids, batch_size, time_size)
    total = _evaluate(model, params, x, t)
    return _exp(float(total) / (len(ids) - 1))


def _exp(value: float) -> float:
    """``e**value``, ``inf`` past float64's range (never an OverflowError)."""
    return math.exp(value) if value < 709 else math.inf


# --- the optimiser -------------------------------------------------------------------------


class BestState(NamedTuple):
    """The best held-out perplexity so far (``inf`` at the start)."""

    best: jax.Array


def track_best() -> optax.GradientTransformation:
    """An identity transformation whose state holds :class:`BestState`: where the ÷ 4 rule
    keeps its memory inside the optimiser state (so checkpoints carry it)."""
    return optax.GradientTransformation(
        lambda params: BestState(jnp.asarray(jnp.inf, jnp.float32)),
        lambda updates, state, params=None: (updates, state))


def lm_optimizer(name: str | Callable[..., optax.GradientTransformation] = "sgd",
                 learning_rate: float = 20.0, *, max_grad: float | None = None,
                 **hyperparams: Any) -> optax.GradientTransformation:
    """``chain(clip_grads(max_grad), optimiser(learning_rate), track_best())``: the sequel's
    clipping before the optimiser (``max_grad=None``: none), the learning rate a
    hyperparameter in the state (``optax.inject_hyperparams``).

    ``name``: one of :data:`fnnet.optim.OPTIMIZERS` (with its ``hyperparams``), or a factory
    ``factory(learning_rate) -> GradientTransformation``.

    >>> opt = lm_optimizer("sgd", 20.0, max_grad=0.25)
    >>> learning_rate_of(opt.init({"w": jnp.zeros(2)}))
    20.0
    """
    if callable(name):
        factory = name
    else:
        get_optimizer(name, learning_rate, **hyperparams)  # fail now on a bad name or value

        def factory(learning_rate):
            return get_optimizer(name, learning_rate, **hyperparams)

    parts = [] if max_grad is None else [clip_grads(max_grad)]
    return optax.chain(*parts, optax.inject_hyperparams(factory)(learning_rate=learning_rate),
                       track_best())


def _is_injected(node: Any) -> bool:
    return isinstance(getattr(node, "hyperparams", None), dict) and \
        "learning_rate" in node.hyperparams


def _find(opt_state: Any, test: Callable[[Any], bool], what: str) -> Any:
    found = [node for node in jax.tree.leaves(opt_state, is_leaf=test) if test(node)]
    if len(found) != 1:
        raise ValueError(f"the optimiser state must hold one {what} (build the optimiser with "
                         f"fnnet.train_lm.lm_optimizer); found {len(found)}")
    return found[0]


def learning_rate_of(opt_state: Any) -> float:
    """The learning rate held in an :func:`lm_optimizer` state."""
    return float(_find(opt_state, _is_injected, "injected learning rate")
                 .hyperparams["learning_rate"])


def _replace_in(opt_state: Any, test: Callable[[Any], bool], change: Callable[[Any], Any]):
    return jax.tree.map(lambda node: change(node) if test(node) else node, opt_state,
                        is_leaf=test)


def with_learning_rate(opt_state: Any, learning_rate: float) -> Any:
    """The state with its learning rate set to ``learning_rate`` (same dtype)."""
    def change(node):
        old = node.hyperparams["learning_rate"]
        value = jax.device_put(np.asarray(learning_rate, old.dtype))  # not a program
        return node._replace(hyperparams={**node.hyperparams, "learning_rate": value})

    _find(opt_state, _is_injected, "injected learning rate")
    return _replace_in(opt_state, _is_injected, change)


def _is_best(node: Any) -> bool:
    return isinstance(node, BestState)


def best_of(opt_state: Any) -> float:
    """The best held-out perplexity recorded in an :func:`lm_optimizer` state."""
    return float(_find(opt_state, _is_best, "BestState").best)


def with_best(opt_state: Any, best: float) -> Any:
    """The state with its best perplexity set to ``best``."""
    _find(opt_state, _is_best, "BestState")
    return _replace_in(opt_state, _is_best,
                       lambda node: BestState(jax.device_put(np.float32(best))))


# --- the run -------------------------------------------------------------------------------


@dataclass
class LMHistory(EpochRecords):
    """Per-epoch records of a :func:`fit_lm` run (lists aligned by epoch) and its timings.

    * ``loss``: the mean training cross-entropy over the epoch's steps (each before its
      update); ``step_losses``: each of them; ``train_ppl = exp(loss)`` (the book's
      training perplexity);
    * ``held_out_ppl``: the perplexity of the held-out split after the epoch (``held_out``
      names it); ``best_ppl``: the best of them (kept in the optimiser state);
    * ``lr``: the learning rate the epoch trained with; ``decayed``: whether the ÷ rule
      lowered it after the epoch;
    * ``wall_s``: cumulative training time (evaluation and compilation excluded);
      ``words_per_s``: training words (``B·T`` a step) per second of the epoch;
    * ``compile_s``, ``compilations``, ``cache_hits``, ``eval_s``, ``start_step`` as in
      :class:`fnnet.train.History`; after a resume the lists hold the whole run (the
      ``resumed_epochs`` from the checkpoint first), ``trained_epochs`` and ``trained_s``
      what this call did.
    """

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    step_losses: list[list[float]] = field(default_factory=list)
    train_ppl: list[float] = field(default_factory=list)
    held_out_ppl: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    decayed: list[bool] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    words_per_s: list[float] = field(default_factory=list)
    held_out: str = "valid"
    compile_s: float = 0.0
    compilations: int = 0
    cache_hits: int = 0
    eval_s: float = 0.0
    start_step: int = 0
    steps_per_epoch: int = 0
    best_ppl: float = math.inf
    resumed_epochs: int = 0

    @property
    def trained_epochs(self) -> int:
        """Epochs this call trained (after a resume the lists hold the whole run)."""
        return len(self.epoch) - self.resumed_epochs

    @property
    def trained_s(self) -> float:
        """Training seconds of this call (``wall_s`` less the resumed epochs' share)."""
        if not self.trained_epochs:
            return 0.0
        before = self.wall_s[self.resumed_epochs - 1] if self.resumed_epochs else 0.0
        return self.wall_s[-1] - (before or 0.0)

    def curves(self) -> dict[str, list]:
        """The per-epoch lists, non-finite numbers as None (what a checkpoint keeps)."""
        def finite(value: Any) -> Any:
            if isinstance(value, list):
                return [finite(v) for v in value]
            return value if not isinstance(value, float) or math.isfinite(value) else None

        return {name: finite(getattr(self, name)) for name in _LM_EPOCH_FIELDS}

    def resume_from(self, curves: dict[str, list] | None, epoch: int) -> None:
        """Continue the records of a checkpoint at ``epoch`` (left empty if they do not end
        there: an older checkpoint without them)."""
        epochs = (curves or {}).get("epoch", [])
        if not epochs or epochs[-1] != epoch or any(
                len(curves.get(name, [])) != len(epochs) for name in _LM_EPOCH_FIELDS):
            return
        for name in _LM_EPOCH_FIELDS:
            setattr(self, name, list(curves[name]))
        self.resumed_epochs = len(epochs)


_LM_EPOCH_FIELDS = ("epoch", "step", "loss", "step_losses", "train_ppl", "held_out_ppl", "lr",
                    "decayed", "wall_s", "words_per_s")


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _start(model: Model, optimizer: optax.GradientTransformation, batch_size: int, unroll: int,
           params: Params) -> Any:
    del model, batch_size, unroll
    return optimizer.init(params)


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6))
def _epoch(model: Model, optimizer: optax.GradientTransformation, batch_size: int, unroll: int,
           time_size: int, steps: int, streams: str, train_state: TrainState, ids: jax.Array,
           key: jax.Array, epoch: jax.Array) -> tuple[TrainState, jax.Array]:
    """One epoch: its batches cut from ``ids`` (:func:`sequence_batches`), the state reset to
    zeros (``streams="restart"``) or carried on, then a scan of train steps, dropout keys
    drawn inside."""
    rows = _positions(jnp, ids.shape[0] - 1, batch_size, time_size, steps,
                      epoch.astype(jnp.int32), streams)
    x, t = ids[:-1][rows], ids[1:][rows]
    indices = jnp.arange(x.shape[0]).reshape(-1, batch_size)  # step s: its B rows
    noise = jax.random.fold_in(jax.random.fold_in(key, NOISE_STREAM), epoch)
    if streams == "restart":
        train_state = train_state._replace(
            model_state=zero_state(model, train_state.params, batch_size))
    return _scan_steps(model, optimizer, unroll)(train_state, x, t, indices, noise)


def init_lm_state(model: Model, params: Params, optimizer: optax.GradientTransformation,
                  batch_size: int) -> TrainState:
    """``TrainState(params, optimizer.init(params), zero carried state for batch_size)``."""
    return TrainState(params, optimizer.init(params), zero_state(model, params, batch_size))


def make_lm_epoch(model: Model, optimizer: optax.GradientTransformation, *, batch_size: int,
                  time_size: int, steps: int, streams: str = "restart",
                  unroll: int = 1) -> Callable:
    """The epoch program :func:`fit_lm` runs, on its own (as :func:`fnnet.train.make_epoch`
    for classifiers): ``(train_state, ids, key, epoch) -> (train_state, losses)``, ``steps``
    train steps over the batches :func:`sequence_batches` cuts from the corpus ``ids`` for
    that (1-based) ``epoch``; ``losses (steps,)``, each before its update. One compiled
    program (its first call compiles it).
    """
    if streams not in STREAMS:
        raise ValueError(f"streams must be one of {STREAMS}; got {streams!r}")
    return partial(_epoch, model, optimizer, check_int("batch_size", batch_size),
                   check_int("unroll", unroll), check_int("time_size", time_size),
                   check_int("steps", steps), streams)


class _Timed:
    """Calls whose compilation (counted by ``compiles``) is kept out of the seconds."""

    def __init__(self, compiles: Any):
        self.compiles = compiles

    def __call__(self, fn: Callable, *arguments: Any) -> tuple[Any, float]:
        before, begin = self.compiles.copy(), time.perf_counter()
        result = jax.block_until_ready(fn(*arguments))
        return result, time.perf_counter() - begin - (self.compiles - before).seconds


def fit_lm(
    model: Model,
    params: Params,
    train_ids: Any,
    held_out_ids: Any,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    batch_size: int = 20,
    time_size: int = 35,
    epochs: int = 4,
    streams: str = "restart",
    lr_decay: float | None = None,
    held_out: str = "valid",
    eval_batch_size: int = 10,
    eval_time_size: int = 35,
    unroll: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    matmul_precision: str = "default",
) -> tuple[Params, LMHistory]:
    """Train a language model on ``train_ids`` with truncated BPTT; after every epoch score
    ``held_out_ids`` by :func:`perplexity`.

    Args:
      model: a language model (:mod:`fnnet.nets.rnnlm`): ``loss_and_state`` carries the
        recurrent state and takes ``train=False``; ``input_range`` is its vocabulary.
      params: initial parameters (not modified).
      train_ids, held_out_ids: 1-D word ids in ``[0, V)`` (:func:`check_ids`).
      optimizer: from :func:`lm_optimizer` (clipping, the learning rate in its state).
      key: the dropout keys of epoch ``e``, step ``s`` are
        ``fold_in(fold_in(fold_in(key, NOISE_STREAM), e), s)`` (as :func:`fnnet.train.fit`).
      batch_size, time_size: ``B`` streams, ``T`` words a step (:func:`sequence_batches`).
      epochs: the total number of epochs (a resumed run counts those already done).
      streams: ``"restart"``: every epoch starts the streams again at their offsets, from
        zero states; ``"continue"``: they go on where the last epoch stopped, the state
        carried on too (see :func:`sequence_batches`; checkpoints hold the state).
      lr_decay: after an epoch whose held-out perplexity is not below the best so far,
        divide the learning rate by this (the book's 4); ``None``: never.
      held_out: the held-out split's name, for the records (``"valid"``, or ``"test"``
        when there is no validation split).
      eval_batch_size, eval_time_size: the streams and chunk length of the evaluation
        (the book's ``eval_perplexity``: 10 and 35).
      unroll: train steps per iteration of the epoch's scan.
      checkpoint_dir, checkpoint_every, resume, settings: as for :func:`fnnet.train.fit`
        (the learning rate and the best perplexity are in the optimiser state).
      progress: a tqdm bar over the steps; on_epoch: called with each epoch's record.
      matmul_precision: float32 matmul precision of the programs.

    Returns:
      ``(params, history)`` — the parameters after the last epoch.

    Raises:
      ValueError: bad ids, sizes or arguments (before any training).
      NonFiniteLossError: a step's loss was NaN or infinite (that epoch is not kept).
    """
    V = model.input_range
    if V is None:
        raise ValueError("fit_lm: the model must take word ids (model.input_range = V)")
    train_ids = check_ids(train_ids, V, "train_ids")
    held_out_ids = check_ids(held_out_ids, V, "held_out_ids")
    epochs = check_int("epochs", epochs)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    if lr_decay is not None:
        lr_decay = float(check_range("lr_decay", lr_decay, low=1.0, low_open=True,
                                     high=math.inf, high_open=True))
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint_dir")
    if streams not in STREAMS:
        raise ValueError(f"streams must be one of {STREAMS}; got {streams!r}")
    steps = steps_per_epoch(len(train_ids), batch_size, time_size)
    eval_x, eval_t = eval_chunks(held_out_ids, eval_batch_size, eval_time_size)
    history = LMHistory(held_out=held_out, steps_per_epoch=steps)
    with contextlib.ExitStack() as held, count_compilations() as compiles:
        held.enter_context(precision.matmul_precision(matmul_precision))
        hold_checkpoint_dir(held, checkpoint_dir, resume)
        static = (model, optimizer, batch_size, check_int("unroll", unroll))
        epoch_static = (*static, time_size, steps, streams)
        timed = _Timed(compiles)
        params = jax.device_put(jax.tree.map(np.asarray, params))
        train_state = TrainState(params, _start(*static, params),
                                 jax.device_put(zero_state(model, params, batch_size)))
        run = _RunState(epoch=0, step=0, checkpoint=None, saved_step=-1)
        if resume and checkpoint.list_checkpoints(checkpoint_dir):
            restored = checkpoint.restore_latest(checkpoint_dir, params_like=params,
                                                 opt_state_like=train_state.opt_state,
                                                 model_state_like=train_state.model_state,
                                                 steps_per_epoch=steps)
            train_state = TrainState(restored.params, restored.opt_state, restored.model_state)
            key = restored.key
            run = _RunState(restored.epoch, restored.step, restored.path, restored.step)
            history.resume_from(restored.history, restored.epoch)
        history.start_step = run.step
        ids, eval_x, eval_t = jax.device_put((train_ids, eval_x, eval_t))

        def save() -> None:
            if checkpoint_dir is not None and jax.process_index() == 0:
                run.checkpoint = checkpoint.save_checkpoint(
                    checkpoint_dir, step=run.step, epoch=run.epoch, params=train_state.params,
                    opt_state=train_state.opt_state, key=key, settings=settings or {},
                    model_state=train_state.model_state, history=history.curves())
                run.saved_step = run.step

        bar = progress_bar(epochs * steps, min(run.step, epochs * steps), progress)
        try:
            for epoch in range(run.epoch + 1, epochs + 1):
                lr = learning_rate_of(train_state.opt_state)
                (new_state, losses), seconds = timed(_epoch, *epoch_static, train_state, ids,
                                                     key, np.uint32(epoch))
                losses = np.asarray(losses)
                _check_finite_losses(losses, run, epoch)
                total, eval_seconds = timed(_evaluate, model, new_state.params, eval_x,
                                            eval_t)
                history.eval_s += eval_seconds
                ppl = _exp(float(total) / (len(held_out_ids) - 1))
                _check_finite_params(ppl, run, epoch, steps, f"the {held_out} perplexity")
                opt_state, decayed = _held_out_rule(new_state.opt_state, ppl, lr, lr_decay)
                train_state = new_state._replace(opt_state=opt_state)
                run.epoch, run.step = epoch, run.step + steps
                bar.update(steps)
                mean_loss = float(np.mean(losses))
                record = history.append(dict(
                    epoch=epoch, step=run.step, loss=mean_loss, step_losses=losses.tolist(),
                    train_ppl=_exp(mean_loss),
                    held_out_ppl=ppl, lr=lr, decayed=decayed,
                    wall_s=(history.wall_s[-1] if history.wall_s else 0.0) + seconds,
                    words_per_s=steps * batch_size * time_size / seconds))
                if epoch % checkpoint_every == 0 or epoch == epochs:
                    save()
                bar.set_postfix_str(f"{held_out} ppl {ppl:.1f}, "
                                    f"{record['words_per_s']:,.0f} words/s")
                if on_epoch is not None:
                    on_epoch(record)
        except KeyboardInterrupt:
            if run.saved_step != run.step:
                save()
            raise
        finally:
            bar.close()
    history.best_ppl = best_of(train_state.opt_state)
    history.compile_s, history.compilations = compiles.seconds, compiles.programs
    history.cache_hits = compiles.cache_hits
    return train_state.params, history


def _held_out_rule(opt_state: Any, ppl: float, lr: float,
                   lr_decay: float | None) -> tuple[Any, bool]:
    """The book's rule: a new best is remembered; otherwise the learning rate is divided by
    ``lr_decay`` (if given). Returns the new state and whether it decayed."""
    if ppl < best_of(opt_state):
        return with_best(opt_state, ppl), False
    if lr_decay is None:
        return opt_state, False
    return with_learning_rate(opt_state, lr / lr_decay), True
