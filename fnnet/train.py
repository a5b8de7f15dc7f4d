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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

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
               unroll: int = 4) -> Callable:
    """A jitted ``(params, opt_state, x, t, batch_indices) -> (params, opt_state, losses)``.

    ``batch_indices`` is ``(steps, batch_size)`` int; the steps run as one ``lax.scan`` whose
    body gathers its batch ``x[batch_indices[i]]`` and takes one train step. ``losses`` is
    ``(steps,)``, each loss before its update. ``unroll`` steps are unrolled per scan
    iteration (fewer loop round trips; see experiments/PERFORMANCE.md).
    """
    step = partial(_step, loss_fn, optimizer)

    def run(params, opt_state, x, t, batch_indices):
        def body(carry, indices):
            params, opt_state, loss = step(*carry, x[indices], t[indices])
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batch_indices,
                                                   unroll=unroll)
        return params, opt_state, losses

    return jax.jit(run, donate_argnums=(0, 1))


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
    ``compile_s`` is the time spent compiling the fused epochs (kept out of ``wall_s``).
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
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Params, History]:
    """Train ``model`` from ``params`` on ``data`` and evaluate after every epoch.

    Args:
      model: a :class:`fnnet.layers.Model` (its ``loss`` is minimised).
      params: initial parameter pytree (not modified; copies are put on the device).
      data: anything with ``x_train, t_train, x_test, t_test`` (e.g. :class:`fnnet.data.Dataset`).
      optimizer: an ``optax.GradientTransformation`` (e.g. :func:`fnnet.optim.sgd`).
      key: ``jax.random`` key for the minibatch order.
      batch_size: examples per step, ``1 ≤ batch_size ≤ N_train``.
      epochs / steps: exactly one; ``steps`` may end in a partial epoch.
      sampling: ``"shuffle"`` or ``"replacement"`` (see the module docstring).
      device: where to run (default: JAX's default device).
      progress: show a tqdm bar over the steps.
      on_epoch: called with each epoch's record (a dict) after it is evaluated.

    Returns:
      ``(params, history)``.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}")
    num_examples = len(data.x_train)
    plan = epoch_plan(num_examples, batch_size, epochs=epochs, steps=steps)
    x_train, t_train, x_test, t_test = jax.device_put(
        (data.x_train, data.t_train, data.x_test, data.t_test), device)
    params = jax.device_put(jax.tree.map(jnp.array, params), device)
    opt_state = optimizer.init(params)
    epoch_fn = make_epoch(model.loss, optimizer)
    compiled: dict[int, Callable] = {}
    history = History()
    done = 0
    bar = tqdm(total=sum(plan), unit="step", disable=not progress, leave=False)
    try:
        for epoch, num_steps in enumerate(plan, start=1):
            indices = batch_indices(jax.random.fold_in(key, epoch), num_examples=num_examples,
                                    batch_size=batch_size, num_steps=num_steps,
                                    sampling=sampling)
            if num_steps not in compiled:
                start = time.perf_counter()
                compiled[num_steps] = epoch_fn.lower(
                    params, opt_state, x_train, t_train, indices).compile()
                history.compile_s += time.perf_counter() - start
            start = time.perf_counter()
            params, opt_state, losses = compiled[num_steps](
                params, opt_state, x_train, t_train, indices)
            mean_loss = float(jnp.mean(losses))  # waits for the epoch to finish
            seconds = time.perf_counter() - start
            done += num_steps
            bar.update(num_steps)
            train_loss, train_acc = evaluate(model.apply, params, x_train, t_train,
                                             batch_size=eval_batch_size)
            test_loss, test_acc = evaluate(model.apply, params, x_test, t_test,
                                           batch_size=eval_batch_size)
            record = dict(epoch=epoch, step=done, loss=mean_loss, train_loss=train_loss,
                          train_acc=train_acc, test_loss=test_loss, test_acc=test_acc,
                          wall_s=(history.wall_s[-1] if history.wall_s else 0.0) + seconds,
                          steps_per_s=num_steps / seconds if seconds > 0 else math.inf)
            for name, value in record.items():
                getattr(history, name).append(value)
            bar.set_postfix(loss=f"{mean_loss:.4f}", test_acc=f"{test_acc:.4f}")
            if on_epoch is not None:
                on_epoch(record)
    finally:
        bar.close()
    return params, history
