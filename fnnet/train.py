"""Training: a jitted step, scan-fused epochs, batched evaluation and ``fit``.

Data flow: the dataset is put on the device once; each epoch draws a matrix of batch indices
``(steps, batch_size)`` from a ``jax.random`` key and runs one ``lax.scan`` of train steps
inside one ``jit``, each step gathering its own batch on the device — Python is not in the
per-step loop. Metrics come back once per epoch.

Sampling:

* ``"shuffle"`` (default): each epoch is a fresh permutation of the training set cut into
  ``N // batch_size`` batches; the last partial batch (``N mod batch_size`` examples) is
  **dropped** for that epoch — a different remainder each epoch, since the permutation changes.
* ``"replacement"``: the book's ``np.random.choice(N, batch_size)`` — every batch drawn
  uniformly with replacement, independently of the others. An "epoch" is then
  ``N // batch_size`` steps.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from fnnet import checkpoint, parallel, precision
from fnnet._checks import check_int
from fnnet.layers import Model, State

Params = Any
SAMPLINGS = ("shuffle", "replacement")


class TrainState(NamedTuple):
    """What a train step carries: parameters, optimiser state and the model's own state
    (batch-norm running statistics; ``{}`` for nets without state)."""

    params: Params
    opt_state: Any
    model_state: State


def init_train_state(model: Model, params: Params, optimizer: optax.GradientTransformation,
                     *, state: State | None = None) -> TrainState:
    """``TrainState(params, optimizer.init(params), state or model.init_state())``."""
    return TrainState(params, optimizer.init(params),
                      model.init_state() if state is None else state)


def _step(model: Model, optimizer: optax.GradientTransformation, train_state: TrainState,
          x: jax.Array, t: jax.Array, key: jax.Array | None = None) -> tuple[TrainState, jax.Array]:
    params, opt_state, model_state = train_state
    (loss, model_state), grads = jax.value_and_grad(model.loss_and_state, has_aux=True)(
        params, model_state, x, t, key=key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return TrainState(optax.apply_updates(params, updates), opt_state, model_state), loss


def make_train_step(model: Model, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted pure step ``(train_state, x, t, key=None) -> (train_state, loss)``.

    ``loss`` is the training loss *before* the update (``model.loss_and_state``; ``key`` feeds
    dropout). The train state is donated (its buffers are reused for the result, so do not use
    the one you passed in afterwards).

    >>> import jax, jax.numpy as jnp, fnnet
    >>> from fnnet.optim import sgd
    >>> net = fnnet.two_layer_net(4, 3, 2)
    >>> state = init_train_state(net, net.init(jax.random.key(0)), sgd(0.1))
    >>> state, loss = make_train_step(net, sgd(0.1))(state, jnp.ones((5, 4)), jnp.zeros(5, int))
    >>> round(float(loss), 4)
    0.6931
    """
    return jax.jit(partial(_step, model, optimizer), donate_argnums=(0,))


def make_epoch(model: Model, optimizer: optax.GradientTransformation, *,
               unroll: int = 4, donate: bool = True) -> Callable:
    """A jitted ``(train_state, x, t, batch_indices, key=None) -> (train_state, losses)``.

    ``batch_indices`` is ``(steps, batch_size)`` int; the steps run as one ``lax.scan`` whose
    body gathers its batch ``x[batch_indices[i]]`` and takes one train step with the key
    ``fold_in(key, i)`` (unused, and compiled away, by nets without dropout). ``losses`` is
    ``(steps,)``, each loss before its update. ``unroll`` steps are unrolled per scan
    iteration (fewer loop round trips; see experiments/PERFORMANCE.md). With ``donate`` the
    train state passed in is donated (its buffers reused).
    """
    step = partial(_step, model, optimizer)

    def run(train_state, x, t, batch_indices, key=None):
        def body(train_state, indices_and_step):
            indices, i = indices_and_step
            step_key = None if key is None else jax.random.fold_in(key, i)
            return step(train_state, x[indices], t[indices], step_key)

        steps = jnp.arange(batch_indices.shape[0], dtype=jnp.uint32)
        return jax.lax.scan(body, train_state, (batch_indices, steps), unroll=unroll)

    return jax.jit(run, donate_argnums=(0,) if donate else ())


@partial(jax.jit, static_argnames=("num_examples", "batch_size", "num_steps", "sampling"))
def batch_indices(key: jax.Array, *, num_examples: int, batch_size: int, num_steps: int,
                  sampling: str = "shuffle") -> jax.Array:
    """``(num_steps, batch_size)`` example indices for one epoch (see the module docstring).

    With ``"shuffle"``, ``num_steps * batch_size`` must not exceed ``num_examples``.
    """
    if sampling == "shuffle":
        if num_steps * batch_size > num_examples:
            raise ValueError(f"shuffle sampling: num_steps * batch_size = "
                             f"{num_steps * batch_size} exceeds num_examples = {num_examples}")
        order = jax.random.permutation(key, num_examples)
        return order[: num_steps * batch_size].reshape(num_steps, batch_size)
    if sampling == "replacement":
        return jax.random.randint(key, (num_steps, batch_size), 0, num_examples)
    raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}")


# --- evaluation ----------------------------------------------------------------------------


def metric_sums(model: Model, params: Params, state: State, x: jax.Array, t: jax.Array,
                batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Summed eval-mode loss and hits over **all** of ``(x, t)``, traceable (``jit``,
    ``vmap``): ``model.loss(..., train=False)`` and ``model.accuracy`` batch by batch, each
    weighted by its size; the ``N mod batch_size`` examples left after the full batches form
    one more, smaller batch, so nothing is dropped. Sums in at least float32."""
    n = x.shape[0]
    size = min(batch_size, n)
    full = n - n % size

    def one(batch):
        xb, tb = batch
        loss = model.loss(params, xb, tb, state=state, train=False)
        loss = loss.astype(jnp.promote_types(loss.dtype, jnp.float32))
        return loss * xb.shape[0], model.accuracy(params, xb, tb, state=state) * xb.shape[0]

    loss_sum, hits = 0.0, 0.0
    for start, stop, b in ((0, full, size), (full, n, n - full)):
        if stop > start:
            xs = x[start:stop].reshape(-1, b, *x.shape[1:])
            ts = t[start:stop].reshape(-1, b, *t.shape[1:])
            losses, hit = jax.lax.map(one, (xs, ts))
            loss_sum, hits = loss_sum + jnp.sum(losses), hits + jnp.sum(hit)
    return loss_sum, hits


_jitted_metric_sums = jax.jit(metric_sums, static_argnums=(0, 5))


def evaluate(model: Model, params: Params, x: jax.Array, t: jax.Array, *,
             state: State | None = None, batch_size: int = 1000) -> tuple[float, float]:
    """The model's own mean loss and accuracy over **all** of ``(x, t)``, in eval mode
    (:func:`metric_sums`, with the running statistics ``state`` of a net that has them).
    ``t`` is integer class indices ``(N,)`` or one-hot ``(N, C)``.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("evaluate: x has no examples")
    loss_sum, hits = _jitted_metric_sums(model, params, {} if state is None else state, x, t,
                                         batch_size)
    return float(loss_sum) / n, round(float(hits)) / n


# --- fit -----------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run (lists aligned by epoch) and its timings.

    ``loss`` is the mean training loss over the epoch's steps (each before its update);
    ``train_*``/``test_*`` are evaluated after the epoch. ``wall_s`` is cumulative training
    time (evaluation excluded); ``steps_per_s`` is the epoch's steps over its training time.
    ``compile_s`` is the time spent compiling the fused epochs (kept out of ``wall_s``);
    ``start_step`` is the step the run started from (non-zero after resuming).
    """

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    steps_per_s: list[float] = field(default_factory=list)
    compile_s: float = 0.0
    start_step: int = 0
    state: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The metrics and timings as plain lists and numbers (``state`` left out)."""
        return {k: v for k, v in asdict(self).items() if k != "state"}

    def record(self, *, epoch: int, step: int, loss: float, train_loss: float,
               train_acc: float, test_loss: float, test_acc: float, seconds: float,
               num_steps: int) -> dict[str, Any]:
        """Append one epoch (``seconds`` of training for ``num_steps``); return its record."""
        record = dict(epoch=epoch, step=step, loss=loss, train_loss=train_loss,
                      train_acc=train_acc, test_loss=test_loss, test_acc=test_acc,
                      wall_s=(self.wall_s[-1] if self.wall_s else 0.0) + seconds,
                      steps_per_s=num_steps / seconds if seconds > 0 else math.inf)
        for name, value in record.items():
            getattr(self, name).append(value)
        return record

    def last(self) -> dict[str, Any]:
        """The last epoch's record as a dict (empty before the first epoch)."""
        return {k: v[-1] for k, v in self.to_dict().items() if isinstance(v, list) and v}


def epoch_plan(num_examples: int, batch_size: int, *, epochs: int | None,
               steps: int | None) -> list[int]:
    """Steps per epoch: ``epochs`` full epochs, or ``steps`` split into full epochs + the rest."""
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps")
    batch_size = check_int("batch_size", batch_size)
    if batch_size > num_examples:
        raise ValueError(f"batch_size must be in [1, {num_examples}] (the training set size); "
                         f"got {batch_size}")
    per_epoch = num_examples // batch_size
    if epochs is not None:
        return [per_epoch] * check_int("epochs", epochs)
    steps = check_int("steps", steps)
    plan = [per_epoch] * (steps // per_epoch)
    return [*plan, steps % per_epoch] if steps % per_epoch else plan


def check_data(model: Model, data: Any) -> None:
    """Refuse, before any training, data that does not fit ``model`` (one line each).

    Checks: as many labels as examples; each example of the model's input shape; floating,
    finite inputs; integer labels in ``[0, C)`` or one-hot/soft rows of width ``C`` (C =
    the model's number of classes); a non-empty training and test set.
    """
    (classes,) = model.output_shape
    for split in ("train", "test"):
        x, t = np.asarray(getattr(data, f"x_{split}")), np.asarray(getattr(data, f"t_{split}"))
        if len(x) == 0:
            raise ValueError(f"data: the {split} set is empty")
        if len(t) != len(x):
            raise ValueError(f"data: x_{split} has {len(x)} examples but t_{split} has "
                             f"{len(t)} labels")
        if x.shape[1:] != model.input_shape:
            raise ValueError(f"data: the model takes examples of shape {model.input_shape}; "
                             f"x_{split} has {x.shape[1:]}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"data: x_{split} must be floating; got {x.dtype}")
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(f"data: x_{split} has {int(bad.sum())} non-finite values (first in "
                             f"example {int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))})")
        if np.issubdtype(t.dtype, np.integer):
            if t.ndim != 1:
                raise ValueError(f"data: integer t_{split} must be (N,) class indices; got "
                                 f"shape {t.shape}")
            low, high = int(t.min()), int(t.max())
            if low < 0 or high >= classes:
                raise ValueError(f"data: t_{split} holds labels in [{low}, {high}] but the model "
                                 f"has {classes} classes (labels 0..{classes - 1})")
        elif t.shape[1:] != (classes,):
            raise ValueError(f"data: one-hot t_{split} must be (N, {classes}) for a model with "
                             f"{classes} classes; got shape {t.shape}")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; ``step`` is the first bad step (1-based).

    The parameters of the epoch that contains it are discarded, never checkpointed.
    ``checkpoint`` is the last good checkpoint written by this run or resumed from (or None).
    """

    def __init__(self, message: str, *, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


class _Placement:
    """Where arrays live: one device (``device``) or replicated/sharded over a data mesh."""

    def __init__(self, device: jax.Device | None, devices: Any, batch_size: int):
        self.mesh = None if devices is None else parallel.data_mesh(devices)
        self.device = device
        if self.mesh is not None:
            if device is not None:
                raise ValueError("give device or devices, not both")
            parallel.check_batch_divides(batch_size, self.mesh)

    def replicate(self, tree: Any) -> Any:
        if self.mesh is None:
            return jax.device_put(tree, self.device)
        return parallel.put(tree, parallel.replicated(self.mesh))

    def batch_indices(self, indices: jax.Array) -> jax.Array:
        if self.mesh is None:
            return indices
        return parallel.put(np.asarray(indices), parallel.batch_sharded(self.mesh, 2, 1))

    def local(self, tree: Any) -> Any:
        """Values this process can read (evaluation, checkpoints)."""
        return tree if self.mesh is None else parallel.local_copy(tree)


@dataclass
class _RunState:
    """Progress of a fit: the last finished epoch and step, the last checkpoint written."""

    epoch: int
    step: int
    checkpoint: Path | None
    saved_step: int


# The dropout keys of epoch e are fold_in(fold_in(fold_in(key, NOISE_STREAM), e), step): a
# stream apart from the batch order's fold_in(key, e).
NOISE_STREAM = 0x6E6F6973


def fit(
    model: Model,
    params: Params,
    data: Any,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    state: State | None = None,
    batch_size: int = 100,
    epochs: int | None = None,
    steps: int | None = None,
    sampling: str = "shuffle",
    eval_batch_size: int = 1000,
    device: jax.Device | None = None,
    devices: int | str | Sequence[jax.Device] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    matmul_precision: str = "default",
) -> tuple[Params, History]:
    """Train ``model`` from ``params`` on ``data`` and evaluate after every epoch.

    Args:
      model: a :class:`fnnet.layers.Model` (its ``loss_and_state`` is minimised; its own
        ``loss`` and ``accuracy`` in eval mode are reported).
      params: initial parameter pytree (not modified; copies are put on the device).
      data: anything with ``x_train, t_train, x_test, t_test`` (e.g. :class:`fnnet.data.Dataset`),
        checked against the model by :func:`check_data` before any training.
      optimizer: an ``optax.GradientTransformation`` (e.g. :func:`fnnet.optim.sgd`).
      key: ``jax.random`` key for the minibatch order (epoch ``e`` uses ``fold_in(key, e)``)
        and for dropout (see :data:`NOISE_STREAM`).
      state: the model's initial state (batch-norm running statistics); default
        ``model.init_state()``. The final state is ``history.state``.
      batch_size: examples per step, ``1 ≤ batch_size ≤ N_train``.
      epochs / steps: exactly one; ``steps`` may end in a partial epoch.
      sampling: ``"shuffle"`` or ``"replacement"`` (see the module docstring).
      eval_batch_size: examples per evaluation batch.
      device: run on this one device (default: JAX's default device).
      devices: data parallel instead: ``"all"``, a count, or a list of devices (see
        :mod:`fnnet.parallel`); ``batch_size`` must divide by the device count.
      checkpoint_dir: save params, optimiser state, key, step, epoch and ``settings`` there
        every ``checkpoint_every`` epochs and at the end (see :mod:`fnnet.checkpoint`).
      resume: continue from the newest complete checkpoint in ``checkpoint_dir`` (the
        history then holds the epochs run by this call only) up to this call's total of
        ``epochs``/``steps``; the same plan as the interrupted run continues it exactly.
        Without ``resume``, a ``checkpoint_dir`` that already holds checkpoints is refused.
      settings: JSON-able description of the run, stored in checkpoints.
      progress: show a tqdm bar over the steps.
      on_epoch: called with each epoch's record (a dict) after it is evaluated.
      matmul_precision: float32 matmul precision of the compiled steps and evaluation
        (:data:`fnnet.precision.MATMUL_PRECISIONS`; ``"default"``: TF32 on NVIDIA GPUs).

    Returns:
      ``(params, history)``.

    Raises:
      ValueError: an argument or the data is unusable (nothing has been trained then).
      NonFiniteLossError: a step's loss, or the loss of the parameters at the end of an
        epoch, was NaN or infinite (training stops there; that epoch is not kept).
      KeyboardInterrupt: re-raised after saving a checkpoint of the last finished epoch
        (when ``checkpoint_dir`` is given).
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size)
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint_dir")
    check_data(model, data)
    num_examples = len(data.x_train)
    plan = epoch_plan(num_examples, batch_size, epochs=epochs, steps=steps)
    place = _Placement(device, devices, batch_size)
    x_train, t_train = place.replicate((data.x_train, data.t_train))
    eval_device = device if place.mesh is None else jax.local_devices()[0]
    eval_sets = jax.device_put(
        {"train": (data.x_train, data.t_train), "test": (data.x_test, data.t_test)}, eval_device)
    params = place.replicate(jax.tree.map(np.asarray, params))
    train_state = TrainState(params, jax.jit(optimizer.init)(params),
                             place.replicate(model.init_state() if state is None else state))
    held = contextlib.ExitStack()  # the precision, the checkpoint directory's lock
    try:
        held.enter_context(precision.matmul_precision(matmul_precision))
        if checkpoint_dir is not None and jax.process_index() == 0:
            held.enter_context(checkpoint.lock_directory(checkpoint_dir))
        if (checkpoint_dir is not None and not resume
                and checkpoint.list_checkpoints(checkpoint_dir)):
            raise ValueError(f"checkpoint_dir {checkpoint_dir} already holds checkpoints; resume "
                             f"from them, or use an empty directory (a new run would overwrite "
                             f"and prune another run's checkpoints)")
        run = _RunState(epoch=0, step=0, checkpoint=None, saved_step=-1)
        if resume:
            train_state, key, run = _resume(checkpoint_dir, place, train_state, key, run,
                                            steps_per_epoch=num_examples // batch_size)
        todo = _remaining_epochs(plan, run, num_examples, batch_size)

        def save() -> None:
            if checkpoint_dir is not None and jax.process_index() == 0:
                run.checkpoint = checkpoint.save_checkpoint(
                    checkpoint_dir, step=run.step, epoch=run.epoch,
                    params=place.local(train_state.params),
                    opt_state=place.local(train_state.opt_state), key=key,
                    settings=settings or {}, model_state=place.local(train_state.model_state))
                run.saved_step = run.step

        # Not donated: until an epoch has finished with finite losses, the previous train state
        # stays valid, so a NaN or a Ctrl-C mid-epoch still leaves the last good state to save.
        epoch_runner = _EpochRunner(make_epoch(model, optimizer, donate=False), place)
        noise_key = jax.random.fold_in(key, NOISE_STREAM)
        history = History(start_step=run.step)
        bar = tqdm(total=sum(plan), initial=min(run.step, sum(plan)), unit="step",
                   disable=not progress, leave=False)
        try:
            for epoch, num_steps in todo:
                indices = place.batch_indices(batch_indices(
                    jax.random.fold_in(key, epoch), num_examples=num_examples,
                    batch_size=batch_size, num_steps=num_steps, sampling=sampling))
                new_state, losses, seconds = epoch_runner(
                    train_state, x_train, t_train, indices, jax.random.fold_in(noise_key, epoch))
                _check_finite_losses(losses, run, epoch)
                local = place.local((new_state.params, new_state.model_state))
                train_loss, train_acc = evaluate(model, local[0], *eval_sets["train"],
                                                 state=local[1], batch_size=eval_batch_size)
                _check_finite_params(train_loss, run, epoch, num_steps)
                train_state = new_state
                run.epoch, run.step = epoch, run.step + num_steps
                bar.update(num_steps)
                test_loss, test_acc = evaluate(model, local[0], *eval_sets["test"], state=local[1],
                                               batch_size=eval_batch_size)
                record = history.record(epoch=epoch, step=run.step, loss=float(np.mean(losses)),
                                        train_loss=train_loss, train_acc=train_acc,
                                        test_loss=test_loss, test_acc=test_acc, seconds=seconds,
                                        num_steps=num_steps)
                if epoch % checkpoint_every == 0 or epoch == todo[-1][0]:
                    save()
                bar.set_postfix(loss=f"{record['loss']:.4f}", test_acc=f"{test_acc:.4f}")
                if on_epoch is not None:
                    on_epoch(record)
        except KeyboardInterrupt:
            if run.saved_step != run.step:
                save()
            raise
        finally:
            bar.close()
    finally:
        held.close()
    history.compile_s = epoch_runner.compile_s
    history.state = place.local(train_state.model_state)
    return train_state.params, history


def _resume(checkpoint_dir, place: _Placement, train_state: TrainState, key: jax.Array,
            run: _RunState, *, steps_per_epoch: int) -> tuple[TrainState, jax.Array, _RunState]:
    """The train state, key and progress of the newest valid checkpoint, if there is one."""
    if not checkpoint.list_checkpoints(checkpoint_dir):
        return train_state, key, run
    like = place.local(train_state)
    restored = checkpoint.restore_latest(checkpoint_dir, params_like=like.params,
                                         opt_state_like=like.opt_state,
                                         model_state_like=like.model_state,
                                         steps_per_epoch=steps_per_epoch)
    return (TrainState(*place.replicate((restored.params, restored.opt_state,
                                         restored.model_state))), restored.key,
            _RunState(epoch=restored.epoch, step=restored.step, checkpoint=restored.path,
                      saved_step=restored.step))


def _remaining_epochs(plan: list[int], run: _RunState, num_examples: int,
                      batch_size: int) -> list[tuple[int, int]]:
    """(epoch number, steps) still to run: after a resume, the steps left of this run's
    total, in full epochs and a remainder, numbered on from the checkpoint's epoch."""
    remaining = sum(plan) - run.step
    if remaining <= 0:
        return []
    if run.step:
        plan = epoch_plan(num_examples, batch_size, epochs=None, steps=remaining)
    return list(enumerate(plan, start=run.epoch + 1))


class _EpochRunner:
    """Runs one fused epoch, compiling once per epoch length; counts compile time apart."""

    def __init__(self, epoch_fn: Callable, place: _Placement):
        self.epoch_fn, self.place = epoch_fn, place
        self.compiled: dict[int, Callable] = {}
        self.compile_s = 0.0

    def __call__(self, train_state: TrainState, x: jax.Array, t: jax.Array,
                 indices: jax.Array, key: jax.Array) -> tuple[TrainState, np.ndarray, float]:
        """``(new train state, the epoch's losses on the host, training seconds)``."""
        num_steps = indices.shape[0]
        if num_steps not in self.compiled:
            start = time.perf_counter()
            self.compiled[num_steps] = self.epoch_fn.lower(
                train_state, x, t, indices, key).compile()
            self.compile_s += time.perf_counter() - start
        start = time.perf_counter()
        new_state, losses = self.compiled[num_steps](train_state, x, t, indices, key)
        losses = np.asarray(self.place.local(losses))  # waits for the epoch to finish
        return new_state, losses, time.perf_counter() - start


def _check_finite_losses(losses: np.ndarray, run: _RunState, epoch: int) -> None:
    """:class:`NonFiniteLossError` naming the first NaN/inf step of the epoch, if any."""
    if np.all(np.isfinite(losses)):
        return
    bad = int(np.argmax(~np.isfinite(losses)))
    raise NonFiniteLossError(
        f"non-finite loss ({losses[bad]}) at step {run.step + bad + 1} (epoch {epoch}); "
        f"stopped without keeping that epoch's parameters; last good checkpoint: "
        f"{run.checkpoint or 'none'}", step=run.step + bad + 1, checkpoint=run.checkpoint)


def _check_finite_params(train_loss: float, run: _RunState, epoch: int, num_steps: int) -> None:
    """:class:`NonFiniteLossError` when the epoch's last update broke the parameters."""
    if math.isfinite(train_loss):
        return
    raise NonFiniteLossError(
        f"non-finite parameters after step {run.step + num_steps} (epoch {epoch}): the "
        f"training loss is {train_loss}; stopped without keeping that epoch's parameters; "
        f"last good checkpoint: {run.checkpoint or 'none'}", step=run.step + num_steps,
        checkpoint=run.checkpoint)
