"""Training: a jitted step, scan-fused epochs, batched evaluation and ``fit``.

Data flow: the dataset is put on the device once; each epoch draws a matrix of batch indices
``(steps, batch_size)`` and runs one ``lax.scan`` of train steps inside one ``jit``, each step
gathering its own batch on the device — Python is not in the per-step loop. Metrics come back
once per epoch.

The batch order is drawn on the host, by NumPy's default generator (PCG64) seeded with the
two 32-bit words of a ``jax.random`` key (and the epoch): the same key gives the same order,
and drawing it costs no XLA program (a permutation by ``jax.random`` is ~0.4 s of compiling
on a CPU, more than a small run's whole training).

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
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnnet import checkpoint, host_keys, parallel, precision
from fnnet._checks import check_int
from fnnet._progress import tqdm
from fnnet.compiles import CompileStats, count_compilations
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


def init_from_seed(model: Model, seed: int) -> tuple[Params, jax.Array]:
    """``(model.init(init_key), data_key)`` with ``init_key, data_key = split(key(seed))``, as
    ``fnnet train --seed`` starts (and :func:`fnnet.sweep.trial_keys` for a sweep's trial),
    computed as one compiled program.

    With JAX's partitionable threefry (the default) the two keys are split on the host
    (:mod:`fnnet.host_keys`) and an init that compiles itself (fnnet's models:
    :func:`fnnet.init.draws_as_one`) is called with them, so the program holds no key
    splitting; any other init is jitted with the splits inside.

    >>> import fnnet
    >>> params, data_key = init_from_seed(fnnet.two_layer_net(4, 3, 2), 0)
    >>> params["affine1"]["W"].shape
    (4, 3)
    """
    if host_keys.applies() and getattr(model.init, "compiles_itself", False):
        init_key, data_key = (jax.random.wrap_key_data(data, impl=host_keys.THREEFRY)
                              for data in host_keys.split(host_keys.seed_data(seed), (2,)))
        return model.init(init_key), data_key

    def start(seed: jax.Array) -> tuple[Params, jax.Array]:
        init_key, data_key = jax.random.split(jax.random.key(seed))
        return model.init(init_key), data_key

    return jax.jit(start)(np.uint32(seed))


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


def _scan_steps(model: Model, optimizer: optax.GradientTransformation, unroll: int) -> Callable:
    """The body of :func:`make_epoch`, not jitted (``fit``'s epoch program wraps it)."""
    step = partial(_step, model, optimizer)

    def run(train_state, x, t, batch_indices, key=None):
        def body(train_state, indices_and_step):
            indices, i = indices_and_step
            step_key = None if key is None else jax.random.fold_in(key, i)
            return step(train_state, x[indices], t[indices], step_key)

        steps = jnp.arange(batch_indices.shape[0], dtype=jnp.uint32)
        return jax.lax.scan(body, train_state, (batch_indices, steps), unroll=unroll)

    return run


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
    return jax.jit(_scan_steps(model, optimizer, unroll), donate_argnums=(0,) if donate else ())


def batch_indices(key: jax.Array, *, num_examples: int, batch_size: int, num_steps: int,
                  sampling: str = "shuffle", epoch: int | None = None) -> np.ndarray:
    """``(num_steps, batch_size)`` int32 example indices for one epoch, drawn on the host by
    ``np.random.default_rng([*key_data(key), epoch])`` (see the module docstring; ``key`` is a
    ``jax.random`` key or its uint32 data): a
    permutation cut into batches (``"shuffle"``; ``num_steps * batch_size`` must not exceed
    ``num_examples``) or batches drawn with replacement (``"replacement"``).

    >>> import jax
    >>> batch_indices(jax.random.key(0), num_examples=5, batch_size=2, num_steps=2).shape
    (2, 2)
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}")
    if sampling == "shuffle" and num_steps * batch_size > num_examples:
        raise ValueError(f"shuffle sampling: num_steps * batch_size = "
                         f"{num_steps * batch_size} exceeds num_examples = {num_examples}")
    typed = jnp.issubdtype(getattr(key, "dtype", np.uint32), jax.dtypes.prng_key)
    words = [int(w) for w in np.asarray(jax.random.key_data(key) if typed else key).ravel()]
    rng = np.random.default_rng(words if epoch is None else [*words, int(epoch)])
    if sampling == "shuffle":
        order = rng.permutation(num_examples)[: num_steps * batch_size]
    else:
        order = rng.integers(0, num_examples, num_steps * batch_size)
    return order.astype(np.int32).reshape(num_steps, batch_size)


# --- evaluation ----------------------------------------------------------------------------


def metric_sums(model: Model, params: Params, state: State,
                sets: Sequence[tuple[jax.Array, jax.Array]],
                batch_size: int) -> list[tuple[jax.Array, jax.Array]]:
    """Summed eval-mode loss and hits over **all** of each ``(x, t)`` of ``sets``, traceable
    (``jit``, ``vmap``): one ``(loss_sum, hits)`` per set, sums in at least float32.

    The sets are evaluated together, in one loop over batches of ``batch_size`` examples
    (the last batch padded, its padding masked out) — or as one batch when they hold at most
    ``2·batch_size`` examples together (a loop of two batches costs more to compile than the
    pass itself: ~0.1 s of a small run) — each example on its own:
    ``model.loss(params, x[i:i+1], t[i:i+1], train=False)`` and ``model.accuracy`` vmapped
    over the batch. So nothing is dropped, and the program has one forward pass to compile
    however many sets and sizes there are. In eval mode the models here treat examples
    independently (batch norm uses its running statistics, dropout is the identity), so this
    is the same as evaluating whole batches.
    """
    sizes = [x.shape[0] for x, _ in sets]
    total = sum(sizes)
    size = max(1, total if total <= 2 * batch_size else batch_size)
    pad = -total % size
    x_all = jnp.concatenate([x for x, _ in sets] +
                            [jnp.zeros((pad, *sets[0][0].shape[1:]), sets[0][0].dtype)])
    t_all = jnp.concatenate([t for _, t in sets] +
                            [jnp.zeros((pad, *sets[0][1].shape[1:]), sets[0][1].dtype)])
    which = np.repeat(np.arange(len(sets) + 1), [*sizes, pad])  # the set of each row

    def example(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        loss = model.loss(params, x[None], t[None], state=state, train=False)
        return (loss.astype(jnp.promote_types(loss.dtype, jnp.float32)),
                model.accuracy(params, x[None], t[None], state=state))

    losses, hits = jax.lax.map(lambda batch: jax.vmap(example)(*batch),
                               (x_all.reshape(-1, size, *x_all.shape[1:]),
                                t_all.reshape(-1, size, *t_all.shape[1:])))
    losses, hits = losses.reshape(-1), hits.reshape(-1)
    return [(jnp.sum(jnp.where(which == i, losses, 0)), jnp.sum(jnp.where(which == i, hits, 0)))
            for i in range(len(sets))]


@partial(jax.jit, static_argnums=(0, 4))
def _evaluate_sums(model: Model, params: Params, state: State, sets: tuple,
                   batch_size: int) -> list[tuple[jax.Array, jax.Array]]:
    return metric_sums(model, params, state, sets, batch_size)


def evaluate(model: Model, params: Params, x: jax.Array, t: jax.Array, *,
             state: State | None = None, batch_size: int = 1000) -> tuple[float, float]:
    """The model's own mean loss and accuracy over **all** of ``(x, t)``, in eval mode
    (:func:`metric_sums`, with the running statistics ``state`` of a net that has them).
    ``t`` is integer class indices ``(N,)`` or one-hot ``(N, C)``.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("evaluate: x has no examples")
    [(loss_sum, hits)] = _evaluate_sums(model, params, {} if state is None else state,
                                        ((x, t),), batch_size)
    return float(loss_sum) / n, round(float(hits)) / n


# --- fit -----------------------------------------------------------------------------------


class EpochRecords:
    """A per-epoch history dataclass's records (:class:`fnnet.train_lm.LMHistory`'s): its
    list fields are aligned by epoch; a field with ``repr=False`` is left out of
    :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """The metrics and timings as plain lists and numbers (``repr=False`` fields left
        out)."""
        hidden = {f.name for f in fields(self) if not f.repr}
        return {k: v for k, v in asdict(self).items() if k not in hidden}

    def last(self) -> dict[str, Any]:
        """The last epoch's record as a dict (empty before the first epoch)."""
        return {k: v[-1] for k, v in self.to_dict().items() if isinstance(v, list) and v}

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one epoch's ``record`` (a value for each of its list fields); return it."""
        for name, value in record.items():
            getattr(self, name).append(value)
        return record


@dataclass
class History:
    """Per-epoch metrics of a :func:`fit` run (lists aligned by epoch) and its timings.

    After a resume the lists hold the **whole run**: the ``resumed_epochs`` epochs restored
    from the checkpoint (which keeps the history), then the ones this call trained.
    ``loss`` is the mean training loss over the epoch's steps (each before its update);
    ``train_*``/``test_*`` are evaluated after the epoch (``train_*`` over
    ``train_eval_size`` examples: all, or the sample ``eval_train`` asked for). ``wall_s`` is
    cumulative training time (evaluation and compilation excluded); ``steps_per_s`` is the
    epoch's steps over its training time; :attr:`trained_s` is this call's share of
    ``wall_s``. ``step_loss`` is every step's training loss (before its update), when
    :func:`fit` was asked to record them (``record_steps=True``; the book's figure 4-11), else
    empty. ``compile_s`` is the time spent compiling (tracing,
    lowering, XLA) every program of the run, ``compilations`` their number and
    ``cache_hits`` how many of them came from the persistent compilation cache; ``eval_s``
    is evaluation time (compilation excluded); ``start_step`` is the step the run started
    from (non-zero after resuming).
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
    compilations: int = 0
    cache_hits: int = 0
    eval_s: float = 0.0
    train_eval_size: int = 0
    start_step: int = 0
    step_loss: list[float] = field(default_factory=list)
    resumed_epochs: int = 0
    state: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The metrics and timings as plain lists and numbers (``state`` left out)."""
        return {k: v for k, v in asdict(self).items() if k != "state"}

    @property
    def trained_epochs(self) -> int:
        """Epochs this call trained (0 when a resumed run had nothing left to do)."""
        return len(self.epoch) - self.resumed_epochs

    @property
    def trained_s(self) -> float:
        """Training seconds of this call (``wall_s`` less the resumed epochs' share)."""
        if not self.wall_s:
            return 0.0
        before = self.wall_s[self.resumed_epochs - 1] if self.resumed_epochs else 0.0
        return self.wall_s[-1] - (before or 0.0)

    def curves(self) -> dict[str, list]:
        """The per-epoch lists and ``step_loss``, non-finite numbers as None (what a
        checkpoint keeps of the run)."""
        return {name: [v if v is None or math.isfinite(v) else None for v in getattr(self, name)]
                for name in (*_EPOCH_FIELDS, "step_loss")}

    @classmethod
    def resumed(cls, curves: dict[str, list], *, start_step: int, epoch: int) -> History:
        """A history continuing ``curves`` (from a checkpoint at ``epoch``); empty (the
        earlier epochs unknown) if they do not end at that epoch."""
        epochs = curves.get("epoch", [])
        if not epochs or epochs[-1] != epoch or any(
                len(curves.get(name, [])) != len(epochs) for name in _EPOCH_FIELDS):
            return cls(start_step=start_step)
        return cls(start_step=start_step, resumed_epochs=len(epochs),
                   step_loss=list(curves.get("step_loss", [])),
                   **{name: list(curves[name]) for name in _EPOCH_FIELDS})

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
        return {k: getattr(self, k)[-1] for k in _EPOCH_FIELDS if getattr(self, k)}


_EPOCH_FIELDS = ("epoch", "step", "loss", "train_loss", "train_acc", "test_loss", "test_acc",
                 "wall_s", "steps_per_s")


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
    finite inputs (or, for a model with an ``input_range`` V, integer ids in ``[0, V)``);
    integer labels of shape ``(N, *output_shape[:-1])`` in ``[0, C)`` or one-hot/soft labels
    ``(N, *output_shape)`` (C = ``output_shape[-1]``, the classes); a non-empty training and
    test set.
    """
    classes = model.output_shape[-1]
    label_shape = tuple(model.output_shape[:-1])
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
        _check_inputs(model, x, split)
        if np.issubdtype(t.dtype, np.integer):
            if t.shape[1:] != label_shape:
                raise ValueError(f"data: integer t_{split} must be {('N', *label_shape)} class "
                                 f"indices; got shape {t.shape}")
            low, high = int(t.min()), int(t.max())
            if low < 0 or high >= classes:
                raise ValueError(f"data: t_{split} holds labels in [{low}, {high}] but the model "
                                 f"has {classes} classes (labels 0..{classes - 1})")
        elif t.shape[1:] != tuple(model.output_shape):
            raise ValueError(f"data: one-hot t_{split} must be {('N', *model.output_shape)} for "
                             f"a model with {classes} classes; got shape {t.shape}")


def _check_inputs(model: Model, x: np.ndarray, split: str) -> None:
    if model.input_range is not None:
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"data: x_{split} must be integer ids in [0, {model.input_range}); "
                             f"got {x.dtype}")
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= model.input_range:
            raise ValueError(f"data: x_{split} holds ids in [{low}, {high}] but the model takes "
                             f"ids in [0, {model.input_range})")
        return
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"data: x_{split} must be floating; got {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"data: x_{split} has {int(bad.sum())} non-finite values (first in "
                         f"example {int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))})")


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

    def batch_indices(self, indices: np.ndarray) -> jax.Array:
        """The epoch's batch indices on the device(s): on a mesh each device gets its slice
        of every batch."""
        if self.mesh is None:
            return jax.device_put(indices, self.device)
        return parallel.put(indices, parallel.batch_sharded(self.mesh, 2, 1))

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
    history: dict[str, list] | None = None  # the checkpoint's curves, after a resume


# The dropout keys of epoch e are fold_in(fold_in(fold_in(key, NOISE_STREAM), e), step): a
# stream apart from the batch order's fold_in(key, e).
NOISE_STREAM = 0x6E6F6973

EVAL_SUBSET_SEED = 0
"""Seeds the fixed sample of training examples ``fit(eval_train=N)`` evaluates."""


def eval_subset(num_examples: int, size: int | None) -> np.ndarray | None:
    """The sorted indices of ``size`` training examples drawn without replacement by
    ``np.random.default_rng(EVAL_SUBSET_SEED)`` (None: evaluate them all)."""
    if size is None or size >= num_examples:
        return None
    size = check_int("eval_train", size)
    rng = np.random.default_rng(EVAL_SUBSET_SEED)
    return np.sort(rng.choice(num_examples, size=size, replace=False))


class _Programs:
    """The compiled programs of a fit, each built once (and timed apart from training).

    * ``start(params) -> (opt_state, initial model state)``;
    * ``epoch(train_state, x, t, indices, key, epoch) -> (train_state, losses)``, one per
      epoch length: the epoch's dropout keys (see :data:`NOISE_STREAM`) are drawn inside it;
    * ``metrics(params, state, x_a, t_a, x_b, t_b)``: the loss and hit sums of both sets, so
      the training and the held-out evaluation are one program.
    """

    def __init__(self, model: Model, optimizer: optax.GradientTransformation,
                 place: _Placement, *, eval_batch_size: int, unroll: int):
        scan = _scan_steps(model, optimizer, unroll)

        def start(params):
            return optimizer.init(params), model.init_state()

        def epoch(train_state, x, t, indices, key, epoch):
            noise = jax.random.fold_in(jax.random.fold_in(key, NOISE_STREAM), epoch)
            return scan(train_state, x, t, indices, noise)

        def metrics(params, state, x_a, t_a, x_b, t_b):
            (loss_a, hits_a), (loss_b, hits_b) = metric_sums(
                model, params, state, ((x_a, t_a), (x_b, t_b)), eval_batch_size)
            return loss_a, hits_a, loss_b, hits_b

        self.place = place
        self.start = jax.jit(start)
        self.metrics = jax.jit(metrics)
        self._epoch = jax.jit(epoch)
        self._compiled: dict[int, Callable] = {}  # compiled ahead: kept out of the timing

    def epoch(self, train_state, x, t, indices, key, epoch: int) -> tuple[TrainState,
                                                                         np.ndarray, float]:
        """Run one epoch: ``(new train state, its losses on the host, training seconds)``."""
        arguments = (train_state, x, t, self.place.batch_indices(indices), key,
                     np.uint32(epoch))
        num_steps = indices.shape[0]
        if num_steps not in self._compiled:
            self._compiled[num_steps] = self._epoch.lower(*arguments).compile()
        begin = time.perf_counter()
        new_state, losses = self._compiled[num_steps](*arguments)
        losses = np.asarray(self.place.local(losses))  # waits for the epoch to finish
        return new_state, losses, time.perf_counter() - begin


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
    eval_train: int | None = None,
    unroll: int = 1,
    device: jax.Device | None = None,
    devices: int | str | Sequence[jax.Device] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    settings: dict[str, Any] | None = None,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_epoch_params: Callable[[dict[str, Any], Params, State], None] | None = None,
    matmul_precision: str = "default",
    record_steps: bool = False,
) -> tuple[Params, History]:
    """Train ``model`` from ``params`` on ``data`` and evaluate after every epoch.

    Args:
      model: a :class:`fnnet.layers.Model` (its ``loss_and_state`` is minimised; its own
        ``loss`` and ``accuracy`` in eval mode are reported).
      params: initial parameter pytree (not modified; copies are put on the device).
      data: anything with ``x_train, t_train, x_test, t_test`` (e.g. :class:`fnnet.data.Dataset`),
        checked against the model by :func:`check_data` before any training.
      optimizer: an ``optax.GradientTransformation`` (e.g. :func:`fnnet.optim.sgd`).
      key: ``jax.random`` key for the minibatch order (epoch ``e`` uses
        ``batch_indices(key, epoch=e)``)
        and for dropout (see :data:`NOISE_STREAM`).
      state: the model's initial state (batch-norm running statistics); default
        ``model.init_state()``. The final state is ``history.state``.
      batch_size: examples per step, ``1 ≤ batch_size ≤ N_train``.
      epochs / steps: exactly one; ``steps`` may end in a partial epoch.
      sampling: ``"shuffle"`` or ``"replacement"`` (see the module docstring).
      eval_batch_size: examples per evaluation batch (up to twice as many are one batch:
        :func:`metric_sums`).
      eval_train: evaluate the training loss and accuracy after each epoch on this many
        training examples, a fixed sample (:func:`eval_subset`), instead of all of them
        (None, the default: all — exact). The held-out set is always evaluated whole.
      unroll: train steps unrolled per iteration of the epoch's ``lax.scan``. Unrolling 4
        made long runs ~3% faster on a CPU, but its program takes ~40% longer to compile
        (a short run's main cost), and nets with batch norm or dropout round differently
        with it: pick one value per run (a resumed run must use the same).
      device: run on this one device (default: JAX's default device).
      devices: data parallel instead: ``"all"``, a count, or a list of devices (see
        :mod:`fnnet.parallel`); ``batch_size`` must divide by the device count.
      checkpoint_dir: save params, optimiser state, key, step, epoch and ``settings`` there
        every ``checkpoint_every`` epochs and at the end (see :mod:`fnnet.checkpoint`).
      resume: continue from the newest complete checkpoint in ``checkpoint_dir`` up to this
        call's total of ``epochs``/``steps``; the same plan as the interrupted run continues
        it exactly, and the history holds the whole run (the checkpoint keeps the earlier
        epochs' records; ``history.resumed_epochs`` of them).
        Without ``resume``, a ``checkpoint_dir`` that already holds checkpoints is refused.
      settings: JSON-able description of the run, stored in checkpoints.
      progress: show a tqdm bar over the steps, on stderr, when stderr is a terminal (never
        drawn into a file or a pipe); off by default, so library code stays quiet. The bar
        shows the epoch lines' rate (training steps/s, evaluation and compiling excluded).
      on_epoch: called with each epoch's record (a dict) after it is evaluated (this call's
        epochs only, not those restored by ``resume``).
      on_epoch_params: called after ``on_epoch`` with the record, the epoch's parameters and
        model state (readable by this process), e.g. to decode a few examples.
      matmul_precision: float32 matmul precision of the compiled steps and evaluation
        (:data:`fnnet.precision.MATMUL_PRECISIONS`; ``"default"``: TF32 on NVIDIA GPUs).
      record_steps: also keep every step's loss in ``history.step_loss`` (the book's figure
        4-11: the loss per iteration).

    Returns:
      ``(params, history)``.

    Compiled programs: the start (optimiser state, model state), one epoch program per
    epoch length (a ``steps`` plan ending in a partial epoch has two) and one evaluation
    program for the training and held-out sets together; ``history.compilations`` counts
    every program built during the call.

    Raises:
      ValueError: an argument or the data is unusable (nothing has been trained then).
      NonFiniteLossError: a step's loss, or the loss of the parameters at the end of an
        epoch, was NaN or infinite (training stops there; that epoch is not kept).
      KeyboardInterrupt: re-raised after saving a checkpoint of the last finished epoch
        (when ``checkpoint_dir`` is given).

      Both carry the :class:`History` of the finished epochs as their ``history``
      attribute.
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
    subset = eval_subset(num_examples, eval_train)
    with count_compilations() as compiles:
        place = _Placement(device, devices, batch_size)
        programs = _Programs(model, optimizer, place, eval_batch_size=eval_batch_size,
                             unroll=check_int("unroll", unroll))
        x_train, t_train = place.replicate((data.x_train, data.t_train))
        eval_device = device if place.mesh is None else jax.local_devices()[0]
        train_eval = ((data.x_train, data.t_train) if subset is None else
                      (data.x_train[subset], data.t_train[subset]))
        eval_sets = jax.device_put((*train_eval, data.x_test, data.t_test), eval_device)
        params = place.replicate(jax.tree.map(np.asarray, params))
        opt_state, initial_state = place.replicate(programs.start(params))
        train_state = TrainState(params, opt_state,
                                 initial_state if state is None else place.replicate(state))
        history, train_state = _train(model, programs, place, train_state, key,
                                      (x_train, t_train), eval_sets, plan, compiles,
                                      num_examples=num_examples, batch_size=batch_size,
                                      sampling=sampling, checkpoint_dir=checkpoint_dir,
                                      checkpoint_every=checkpoint_every, resume=resume,
                                      settings=settings, progress=progress, on_epoch=on_epoch,
                                      on_epoch_params=on_epoch_params,
                                      matmul_precision=matmul_precision,
                                      record_steps=record_steps)
    history.compile_s, history.compilations = compiles.seconds, compiles.programs
    history.cache_hits = compiles.cache_hits
    history.train_eval_size = len(train_eval[0])
    history.state = place.local(train_state.model_state)
    return train_state.params, history


def _train(model: Model, programs: _Programs, place: _Placement, train_state: TrainState,
           key: jax.Array, train_data: tuple, eval_sets: tuple,
           plan: list[int], compiles: CompileStats, *, num_examples: int, batch_size: int,
           sampling: str, checkpoint_dir, checkpoint_every: int, resume: bool, settings,
           progress: bool, on_epoch, on_epoch_params, matmul_precision: str,
           record_steps: bool) -> tuple[History, TrainState]:
    """The epoch loop of :func:`fit`: train, check, evaluate, record, checkpoint."""
    held = contextlib.ExitStack()  # the precision, the checkpoint directory's lock
    try:
        held.enter_context(precision.matmul_precision(matmul_precision))
        hold_checkpoint_dir(held, checkpoint_dir, resume)
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
                    settings=settings or {}, model_state=place.local(train_state.model_state),
                    history=history.curves())
                run.saved_step = run.step

        def evaluate_both(params, state) -> tuple[float, float, float, float]:
            """Train and held-out (loss, accuracy), timed apart from their compilation."""
            before, begin = compiles.copy(), time.perf_counter()
            sums = [float(v) for v in programs.metrics(params, state, *eval_sets)]
            history.eval_s += time.perf_counter() - begin - (compiles - before).seconds
            n_a, n_b = len(eval_sets[0]), len(eval_sets[2])
            return sums[0] / n_a, round(sums[1]) / n_a, sums[2] / n_b, round(sums[3]) / n_b

        history = (History(start_step=run.step) if run.history is None else
                   History.resumed(run.history, start_step=run.step, epoch=run.epoch))
        bar = progress_bar(sum(plan), min(run.step, sum(plan)), progress)
        try:
            for epoch, num_steps in todo:
                # Not donated: until an epoch has finished with finite losses, the previous
                # train state stays valid, so a NaN or a Ctrl-C mid-epoch still leaves the last
                # good state to save.
                indices = batch_indices(key, num_examples=num_examples, batch_size=batch_size,
                                        num_steps=num_steps, sampling=sampling, epoch=epoch)
                new_state, losses, seconds = programs.epoch(
                    train_state, *train_data, indices, key, epoch)
                _check_finite_losses(losses, run, epoch)
                local = place.local((new_state.params, new_state.model_state))
                train_loss, train_acc, test_loss, test_acc = evaluate_both(*local)
                _check_finite_params(train_loss, run, epoch, num_steps)
                train_state = new_state
                run.epoch, run.step = epoch, run.step + num_steps
                bar.update(num_steps)
                record = history.record(epoch=epoch, step=run.step, loss=float(np.mean(losses)),
                                        train_loss=train_loss, train_acc=train_acc,
                                        test_loss=test_loss, test_acc=test_acc, seconds=seconds,
                                        num_steps=num_steps)
                if record_steps:
                    history.step_loss.extend(float(v) for v in losses)
                if epoch % checkpoint_every == 0 or epoch == todo[-1][0]:
                    save()
                bar.set_postfix_str(bar_postfix(record), refresh=False)
                if on_epoch is not None:
                    on_epoch(record)
                if on_epoch_params is not None:
                    on_epoch_params(record, *local)
        except KeyboardInterrupt as error:
            if run.saved_step != run.step:
                save()
            error.history = history
            raise
        except NonFiniteLossError as error:
            error.history = history
            raise
        finally:
            bar.close()
    finally:
        held.close()
    return history, train_state


def hold_checkpoint_dir(held: contextlib.ExitStack, checkpoint_dir, resume: bool) -> None:
    """Before a run: lock ``checkpoint_dir`` for the length of ``held`` (process 0), and
    refuse one that already holds checkpoints unless the run resumes from them."""
    if checkpoint_dir is None:
        return
    if jax.process_index() == 0:
        held.enter_context(checkpoint.lock_directory(checkpoint_dir))
    if not resume and checkpoint.list_checkpoints(checkpoint_dir):
        raise ValueError(f"checkpoint_dir {checkpoint_dir} already holds checkpoints; resume "
                         f"from them, or use an empty directory (a new run would overwrite "
                         f"and prune another run's checkpoints)")


PROGRESS_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}{postfix}]"
"""The bar without tqdm's own rate (which counts evaluation and compiling): the rate shown is
the epoch lines' (:func:`bar_postfix`)."""


def progress_bar(total: int, initial: int, enabled: bool, *, file: Any = None) -> tqdm:
    """A tqdm bar over ``total`` steps on ``file`` (stderr), drawn only when ``enabled`` and
    ``file`` is a terminal (tqdm's ``disable=None``)."""
    return tqdm(total=total, initial=initial, unit="step", disable=None if enabled else True,
                leave=False, file=file, bar_format=PROGRESS_FORMAT, dynamic_ncols=True)


def bar_postfix(record: dict[str, Any]) -> str:
    """``loss 0.1234, test acc 0.9500, 3,100 steps/s``: the epoch line's numbers."""
    return (f"loss {record['loss']:.4f}, test acc {record['test_acc']:.4f}, "
            f"{record['steps_per_s']:,.0f} steps/s")


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
                      saved_step=restored.step, history=restored.history))


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


def _check_finite_losses(losses: np.ndarray, run: _RunState, epoch: int) -> None:
    """:class:`NonFiniteLossError` naming the first NaN/inf step of the epoch, if any."""
    if np.all(np.isfinite(losses)):
        return
    bad = int(np.argmax(~np.isfinite(losses)))
    raise NonFiniteLossError(
        f"non-finite loss ({losses[bad]}) at step {run.step + bad + 1} (epoch {epoch}); "
        f"stopped without keeping that epoch's parameters; last good checkpoint: "
        f"{run.checkpoint or 'none'}", step=run.step + bad + 1, checkpoint=run.checkpoint)


def _check_finite_params(value: float, run: _RunState, epoch: int, num_steps: int,
                         measure: str = "the training loss") -> None:
    """:class:`NonFiniteLossError` when the epoch's last update broke the parameters: finite
    step losses, but ``value`` (``measure``, evaluated after the epoch) NaN or infinite."""
    if math.isfinite(value):
        return
    raise NonFiniteLossError(
        f"non-finite parameters after step {run.step + num_steps} (epoch {epoch}): "
        f"{measure} is {value}; stopped without keeping that epoch's parameters; "
        f"last good checkpoint: {run.checkpoint or 'none'}", step=run.step + num_steps,
        checkpoint=run.checkpoint)
