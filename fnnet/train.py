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

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from fnnet import checkpoint, parallel
from fnnet.layers import Model

Params = Any
LossFn = Callable[[Params, jax.Array, jax.Array], jax.Array]
SAMPLINGS = ("shuffle", "replacement")


def _step(loss_fn: LossFn, optimizer: optax.GradientTransformation, params, opt_state, x, t):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, t)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted pure step ``(params, opt_state, x, t) -> (params, opt_state, loss)``.

    ``loss`` is the loss *before* the update; params and optimiser state are donated (their
    buffers are reused for the results, so do not use the arrays you passed in afterwards).
    """
    return jax.jit(partial(_step, loss_fn, optimizer), donate_argnums=(0, 1))


def make_epoch(loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
               unroll: int = 4, donate: bool = True) -> Callable:
    """A jitted ``(params, opt_state, x, t, batch_indices) -> (params, opt_state, losses)``.

    ``batch_indices`` is ``(steps, batch_size)`` int; the steps run as one ``lax.scan`` whose
    body gathers its batch ``x[batch_indices[i]]`` and takes one train step. ``losses`` is
    ``(steps,)``, each loss before its update. ``unroll`` steps are unrolled per scan
    iteration (fewer loop round trips; see experiments/PERFORMANCE.md). With ``donate``
    the params and optimiser state passed in are donated (their buffers reused).
    """
    step = partial(_step, loss_fn, optimizer)

    def run(params, opt_state, x, t, batch_indices):
        def body(carry, indices):
            params, opt_state, loss = step(*carry, x[indices], t[indices])
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batch_indices,
                                                   unroll=unroll)
        return params, opt_state, losses

    return jax.jit(run, donate_argnums=(0, 1) if donate else ())


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


@partial(jax.jit, static_argnums=0)
def _loss_and_hit_sums(apply_fn, params, x_batches, t_batches):
    def one_batch(batch):
        x, t = batch
        logits = apply_fn(params, x)
        logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
        if jnp.issubdtype(t.dtype, jnp.integer):
            nll, labels = -jnp.take_along_axis(logp, t[:, None], axis=1)[:, 0], t
        else:
            nll, labels = -jnp.sum(t * logp, axis=-1), jnp.argmax(t, axis=-1)
        return jnp.sum(nll), jnp.sum(jnp.argmax(logits, axis=-1) == labels)

    loss_sums, hits = jax.lax.map(one_batch, (x_batches, t_batches))
    return jnp.sum(loss_sums), jnp.sum(hits)


def evaluate(apply_fn: Callable, params: Params, x: jax.Array, t: jax.Array, *,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean softmax cross-entropy and accuracy over **all** of ``(x, t)``, in batches.

    The ``N mod batch_size`` examples left after the full batches form one more, smaller
    batch: nothing is dropped. ``t`` is integer class indices ``(N,)`` or one-hot ``(N, C)``.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("evaluate: x has no examples")
    batch_size = min(batch_size, n)
    full = n - n % batch_size
    loss_sum, hits = 0.0, 0
    for start, stop, size in ((0, full, batch_size), (full, n, n - full)):
        if stop > start:
            xs = x[start:stop].reshape(-1, size, *x.shape[1:])
            ts = t[start:stop].reshape(-1, size, *t.shape[1:])
            batch_loss, batch_hits = _loss_and_hit_sums(apply_fn, params, xs, ts)
            loss_sum += float(batch_loss)
            hits += int(batch_hits)
    return loss_sum / n, hits / n


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def last(self) -> dict[str, Any]:
        """The last epoch's record as a dict (empty before the first epoch)."""
        return {k: v[-1] for k, v in self.to_dict().items() if isinstance(v, list) and v}


def epoch_plan(num_examples: int, batch_size: int, *, epochs: int | None,
               steps: int | None) -> list[int]:
    """Steps per epoch: ``epochs`` full epochs, or ``steps`` split into full epochs + the rest."""
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps")
    if not 1 <= batch_size <= num_examples:
        raise ValueError(f"batch_size must be in [1, {num_examples}] (the training set size); "
                         f"got {batch_size}")
    per_epoch = num_examples // batch_size
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {epochs}")
        return [per_epoch] * epochs
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    plan = [per_epoch] * (steps // per_epoch)
    return [*plan, steps % per_epoch] if steps % per_epoch else plan


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


def fit(
    model: Model,
    params: Params,
    data: Any,
    *,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
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
) -> tuple[Params, History]:
    """Train ``model`` from ``params`` on ``data`` and evaluate after every epoch.

    Args:
      model: a :class:`fnnet.layers.Model` (its ``loss`` is minimised).
      params: initial parameter pytree (not modified; copies are put on the device).
      data: anything with ``x_train, t_train, x_test, t_test`` (e.g. :class:`fnnet.data.Dataset`).
      optimizer: an ``optax.GradientTransformation`` (e.g. :func:`fnnet.optim.sgd`).
      key: ``jax.random`` key for the minibatch order; epoch ``e`` uses ``fold_in(key, e)``.
      batch_size: examples per step, ``1 ≤ batch_size ≤ N_train``.
      epochs / steps: exactly one; ``steps`` may end in a partial epoch.
      sampling: ``"shuffle"`` or ``"replacement"`` (see the module docstring).
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

    Returns:
      ``(params, history)``.

    Raises:
      NonFiniteLossError: a step's loss, or the loss of the parameters at the end of an
        epoch, was NaN or infinite (training stops there; that epoch is not kept).
      KeyboardInterrupt: re-raised after saving a checkpoint of the last finished epoch
        (when ``checkpoint_dir`` is given).
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1; got {checkpoint_every}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint_dir")
    num_examples = len(data.x_train)
    plan = epoch_plan(num_examples, batch_size, epochs=epochs, steps=steps)
    place = _Placement(device, devices, batch_size)
    x_train, t_train = place.replicate((data.x_train, data.t_train))
    eval_device = device if place.mesh is None else jax.local_devices()[0]
    eval_sets = jax.device_put(
        {"train": (data.x_train, data.t_train), "test": (data.x_test, data.t_test)}, eval_device)
    params = place.replicate(jax.tree.map(np.asarray, params))
    opt_state = jax.jit(optimizer.init)(params)
    state = _RunState(epoch=0, step=0, checkpoint=None, saved_step=-1)
    if checkpoint_dir is not None and not resume and checkpoint.list_checkpoints(checkpoint_dir):
        raise ValueError(f"checkpoint_dir {checkpoint_dir} already holds checkpoints; resume "
                         f"from them, or use an empty directory (a new run would overwrite "
                         f"and prune another run's checkpoints)")
    if resume and checkpoint.list_checkpoints(checkpoint_dir):
        restored = checkpoint.restore_latest(checkpoint_dir, params_like=place.local(params),
                                             opt_state_like=place.local(opt_state))
        params, opt_state = place.replicate((restored.params, restored.opt_state))
        key = restored.key
        state = _RunState(epoch=restored.epoch, step=restored.step, checkpoint=restored.path,
                          saved_step=restored.step)
    # (epoch number, steps) still to run: after a resume, the steps left of this run's total,
    # in full epochs and a remainder, numbered on from the checkpoint's epoch.
    remaining = sum(plan) - state.step
    todo = [] if remaining <= 0 else list(enumerate(
        plan if state.step == 0 else epoch_plan(num_examples, batch_size, epochs=None,
                                                 steps=remaining), start=state.epoch + 1))

    def save() -> None:
        if checkpoint_dir is not None and jax.process_index() == 0:
            state.checkpoint = checkpoint.save_checkpoint(
                checkpoint_dir, step=state.step, epoch=state.epoch,
                params=place.local(params), opt_state=place.local(opt_state), key=key,
                settings=settings or {})
            state.saved_step = state.step

    # Not donated: until an epoch has finished with finite losses, the previous params stay
    # valid, so a NaN or a Ctrl-C mid-epoch still leaves the last good state to save.
    epoch_fn = make_epoch(model.loss, optimizer, donate=False)
    compiled: dict[int, Callable] = {}
    history = History(start_step=state.step)
    bar = tqdm(total=sum(plan), initial=min(state.step, sum(plan)), unit="step",
               disable=not progress, leave=False)
    try:
        for epoch, num_steps in todo:
            indices = place.batch_indices(batch_indices(
                jax.random.fold_in(key, epoch), num_examples=num_examples,
                batch_size=batch_size, num_steps=num_steps, sampling=sampling))
            if num_steps not in compiled:
                start = time.perf_counter()
                compiled[num_steps] = epoch_fn.lower(
                    params, opt_state, x_train, t_train, indices).compile()
                history.compile_s += time.perf_counter() - start
            start = time.perf_counter()
            new_params, new_opt_state, losses = compiled[num_steps](
                params, opt_state, x_train, t_train, indices)
            losses = np.asarray(place.local(losses))  # waits for the epoch to finish
            seconds = time.perf_counter() - start
            if not np.all(np.isfinite(losses)):
                bad = int(np.argmax(~np.isfinite(losses)))
                where = state.checkpoint or "none"
                raise NonFiniteLossError(
                    f"non-finite loss ({losses[bad]}) at step {state.step + bad + 1} (epoch "
                    f"{epoch}); stopped without keeping that epoch's parameters; last good "
                    f"checkpoint: {where}", step=state.step + bad + 1,
                    checkpoint=state.checkpoint)
            local_params = place.local(new_params)
            train_loss, train_acc = evaluate(model.apply, local_params, *eval_sets["train"],
                                             batch_size=eval_batch_size)
            if not math.isfinite(train_loss):  # the epoch's last update broke the params
                raise NonFiniteLossError(
                    f"non-finite parameters after step {state.step + num_steps} (epoch "
                    f"{epoch}): the training loss is {train_loss}; stopped without keeping "
                    f"that epoch's parameters; last good checkpoint: "
                    f"{state.checkpoint or 'none'}", step=state.step + num_steps,
                    checkpoint=state.checkpoint)
            params, opt_state = new_params, new_opt_state
            state.epoch, state.step = epoch, state.step + num_steps
            bar.update(num_steps)
            test_loss, test_acc = evaluate(model.apply, local_params, *eval_sets["test"],
                                           batch_size=eval_batch_size)
            record = dict(epoch=epoch, step=state.step, loss=float(np.mean(losses)),
                          train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                          test_acc=test_acc,
                          wall_s=(history.wall_s[-1] if history.wall_s else 0.0) + seconds,
                          steps_per_s=num_steps / seconds if seconds > 0 else math.inf)
            for name, value in record.items():
                getattr(history, name).append(value)
            if epoch % checkpoint_every == 0 or epoch == todo[-1][0]:
                save()
            bar.set_postfix(loss=f"{record['loss']:.4f}", test_acc=f"{test_acc:.4f}")
            if on_epoch is not None:
                on_epoch(record)
    except KeyboardInterrupt:
        if state.saved_step != state.step:
            save()
        raise
    finally:
        bar.close()
    return params, history
