"""Many models trained at once: the book's hyperparameter search (§6.5) as one vmapped program.

A sweep trains K *trials* of one model, each with its own learning rate η, weight decay λ and
seed, in one compiled program: :func:`jax.vmap` over the parameters, the optimiser state, the
model state, η and λ (traced per-trial values, not constants), the init key and the batch order.
Every matmul is batched across the trials, and Python dispatches once per epoch for all of them.

Trial k with seed ``s`` trains exactly as ``fnnet train --seed s`` (and as :func:`fnnet.train.fit`)
would, to float32 rounding:

* keys: ``init_key, data_key = split(key(s))``; the init is ``model.init(init_key)``;
* epoch ``e`` (1-based) draws its batches with ``batch_indices(data_key, epoch=e)`` and its
  dropout keys from ``fold_in(fold_in(fold_in(data_key, NOISE_STREAM), e), step)``, as ``fit``;
* the loss is ``L + ½·λ·ΣW²`` (:func:`fnnet.optim.weight_decay_penalty` with λ a traced array;
  the model itself is built once, without weight decay);
* the optimiser is the named one wrapped in ``optax.inject_hyperparams``, so η lives in the
  optimiser state as data (the other hyperparameters stay Python constants, as in ``fit``).

Trials are independent, so ``max_parallel`` cuts K into chunks of at most that many (memory),
and ``devices`` shards each chunk's trials over a 1-D mesh on a ``"trials"`` axis (no
collective: each device trains its own trials). ``max_parallel=1`` is the sequential
baseline, through the same code.

The data split follows the book: the first ``train_size`` training examples, shuffled with a
seed, of which the first ``int(n·fraction)`` are held out for validation
(:func:`validation_split`). Trials are chosen by validation accuracy; the test set is only
reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnnet import host_keys
from fnnet._checks import check_int
from fnnet._progress import tqdm
from fnnet.init import KeyPlan
from fnnet.layers import Model
from fnnet.optim import OPTIMIZERS, get_optimizer, weight_decay_penalty
from fnnet.parallel import choose_devices
from fnnet.train import (
    NOISE_STREAM,
    SAMPLINGS,
    TrainState,
    _step,
    batch_indices,
    eval_subset,
    metric_sums,
)

TRIALS_AXIS = "trials"
SEED_MAX = 2**32 - 1
Arrays = tuple[np.ndarray, np.ndarray]


# --- what to try ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One point of the search: learning rate η, weight decay λ, and the seed of its init
    and batch order (``fnnet train --seed``)."""

    lr: float
    weight_decay: float
    seed: int


def log_range(name: str, value: float | tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` of a log-uniform range; a single number is the fixed range ``(v, v)``.

    A range needs ``0 < low < high`` (both finite); a fixed value needs only ``v >= 0``
    (0 switches weight decay off). Raises ``ValueError`` naming ``name`` otherwise.

    >>> log_range("lr", (1e-6, 1e-2)), log_range("weight_decay", 0.0)
    ((1e-06, 0.01), (0.0, 0.0))
    """
    low, high = (value, value) if np.ndim(value) == 0 else tuple(value)
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name}: bounds must be finite; got {low:g}:{high:g}")
    if low == high:
        if low < 0:
            raise ValueError(f"{name}: must be >= 0; got {low:g}")
        return low, high
    if low > high:
        raise ValueError(f"{name}: the range {low:g}:{high:g} is inverted (low > high)")
    if low <= 0:
        raise ValueError(f"{name}: a log-uniform range needs bounds > 0; got {low:g}:{high:g}")
    return low, high


def sample_trials(num_trials: int, *, lr: float | tuple[float, float],
                  weight_decay: float | tuple[float, float] = 0.0, seed: int = 0) -> list[Trial]:
    """``num_trials`` trials with η and λ log-uniform in their ranges (the book's
    ``10 ** uniform(log10 low, log10 high)``) and a seed each in ``[0, 2³²)``.

    Trial ``k`` draws from ``numpy.random.default_rng([seed, k])`` (η, then λ, then its seed),
    so it does not depend on ``num_trials``: a sweep of 10 is the first 10 of a sweep of 100.
    A fixed value (``low == high``) is used as is.

    >>> [round(t.lr, 6) for t in sample_trials(2, lr=(1e-4, 1e-2), seed=0)]
    [0.001879, 0.006018]
    """
    num_trials = check_int("num_trials", num_trials)
    lr_range, wd_range = log_range("lr", lr), log_range("weight_decay", weight_decay)
    trials = []
    for k in range(num_trials):
        rng = np.random.default_rng([seed, k])
        u_lr, u_wd = rng.uniform(size=2)
        trials.append(Trial(_log_uniform(u_lr, lr_range), _log_uniform(u_wd, wd_range),
                            int(rng.integers(0, SEED_MAX, endpoint=True))))
    return trials


def _log_uniform(u: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if low == high:
        return low
    return float(10 ** (math.log10(low) + u * (math.log10(high) - math.log10(low))))


def validation_split(x: np.ndarray, t: np.ndarray, *, fraction: float,
                     train_size: int | None = None, seed: int = 0) -> tuple[Arrays, Arrays]:
    """``((x_train, t_train), (x_val, t_val))``, the book's §6.5 split.

    Keeps the first ``train_size`` examples (all when None), shuffles them with
    ``numpy.random.default_rng(seed).permutation`` and holds out the first
    ``int(n · fraction)`` of the shuffled ones for validation; the rest train.

    >>> (xt, tt), (xv, tv) = validation_split(np.arange(10.0)[:, None], np.arange(10),
    ...                                       fraction=0.2, train_size=5)
    >>> len(xt), sorted(tv.tolist() + tt.tolist())
    (4, [0, 1, 2, 3, 4])
    """
    n = len(x) if train_size is None else check_int("train_size", train_size)
    if n > len(x):
        raise ValueError(f"train_size must be in [1, {len(x)}] (the training set size); got {n}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1); got {fraction}")
    held = int(n * fraction)
    if not 1 <= held < n:
        raise ValueError(f"validation fraction {fraction} of {n} examples holds out {held}; "
                         f"need at least one validation and one training example")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:held], order[held:]
    return (x[train], t[train]), (x[val], t[val])


def trial_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(init_key, data_key)`` of a trial, as ``fnnet train --seed seed`` derives them."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    return init_key, data_key


# --- the optimiser with η as data -------------------------------------------------------------


def injected_optimizer(optimizer: str, **hyperparams: float) -> Callable[..., Any]:
    """``optax.inject_hyperparams`` of the named optimiser with only the learning rate
    injected: ``injected_optimizer(name, **h)(learning_rate=η)`` keeps η in its state (a traced
    value is fine), and its ``update`` reads η from there. The other hyperparameters stay
    Python constants, as :func:`fnnet.optim.get_optimizer` uses them, so the updates equal
    ``get_optimizer(name, η, **h)``'s to float32 rounding.
    """
    get_optimizer(optimizer, 1.0, **hyperparams)  # checks the name and the hyperparameters
    build = OPTIMIZERS[optimizer].build

    def with_lr(learning_rate):
        return build(learning_rate, **hyperparams)

    return optax.inject_hyperparams(with_lr)


# --- results ----------------------------------------------------------------------------------


CURVES = ("loss", "train_loss", "train_acc", "val_loss", "val_acc")


@dataclass
class SweepResult:
    """Every trial of a sweep, in the order given.

    ``curves[name]`` is ``(K, epochs)`` for ``loss`` (mean training loss of the epoch's steps,
    before each update, penalty included), ``train_loss``/``train_acc`` and
    ``val_loss``/``val_acc`` (after each epoch, eval mode, data loss only).
    ``test_loss``/``test_acc`` (K,) after the last epoch (NaN without a test set).
    ``diverged`` (K,): a non-finite loss occurred (the trial's later numbers are meaningless).
    ``params``: the final parameters stacked over trials (leading axis K), when kept.
    ``train_s``: seconds in the epoch programs (training and the per-epoch evaluation;
    compilation excluded);
    ``wall_s``: the whole sweep; ``compile_s``: compilation. ``chunks`` programs of
    ``chunk_size`` trials ran (the last chunk size used); ``plan``: how the trials were
    trained (``mode`` sequential or vmapped, and with ``adaptive`` the figures it chose by).
    """

    trials: list[Trial]
    epochs: int
    steps_per_epoch: int
    curves: dict[str, np.ndarray]
    test_loss: np.ndarray
    test_acc: np.ndarray
    diverged: np.ndarray
    train_s: float = 0.0
    wall_s: float = 0.0
    compile_s: float = 0.0
    chunks: int = 0
    chunk_size: int = 0
    params: Any = field(default=None, repr=False)
    plan: dict[str, Any] = field(default_factory=dict)

    @property
    def model_steps(self) -> int:
        """Train steps summed over trials: K · epochs · steps per epoch."""
        return len(self.trials) * self.epochs * self.steps_per_epoch

    @property
    def model_steps_per_s(self) -> float:
        """Model steps per second of training time (``train_s``)."""
        return self.model_steps / self.train_s if self.train_s > 0 else math.inf

    def val_acc(self) -> np.ndarray:
        """(K,) validation accuracy after the last epoch."""
        return self.curves["val_acc"][:, -1]

    def ranking(self) -> np.ndarray:
        """Trial indices, best final validation accuracy first (diverged trials last;
        ties by lower validation loss, then index)."""
        val_loss = np.nan_to_num(self.curves["val_loss"][:, -1], nan=np.inf)
        keys = (np.arange(len(self.trials)), val_loss, -self.val_acc(), self.diverged)
        return np.lexsort(keys)


# --- the compiled pieces ----------------------------------------------------------------------


def _with_penalty(model: Model, lam: jax.Array) -> Model:
    """``model`` whose training loss adds the book's ``½·λ·ΣW²`` with a traced ``λ`` (one per
    trial), so the sweep trains with ``fit``'s own step."""

    def loss_and_state(params, state, x, t, *, key=None):
        loss, state = model.loss_and_state(params, state, x, t, key=key)
        return loss + weight_decay_penalty(params, lam), state

    return model._replace(loss_and_state=loss_and_state)


class _Placement:
    """One device, or a 1-D mesh over ``"trials"``: per-trial arrays split, data replicated."""

    def __init__(self, devices: int | str | Sequence[jax.Device] | None):
        if devices is None:
            self.mesh, self.count = None, 1
            return
        chosen = choose_devices(devices)
        self.mesh, self.count = Mesh(np.array(chosen), (TRIALS_AXIS,)), len(chosen)

    def shardings(self) -> tuple[NamedSharding, NamedSharding]:
        """``(per-trial, replicated)`` shardings on the mesh."""
        return (NamedSharding(self.mesh, P(TRIALS_AXIS)), NamedSharding(self.mesh, P()))

    def shared(self, tree: Any) -> Any:
        if self.mesh is None:
            return jax.device_put(tree)
        return jax.device_put(tree, NamedSharding(self.mesh, P()))

    def per_trial(self, tree: Any) -> Any:
        if self.mesh is None:
            return jax.device_put(tree)
        return jax.device_put(tree, NamedSharding(self.mesh, P(TRIALS_AXIS)))


class _Programs(NamedTuple):
    """A chunk's compiled ``init``, ``epoch`` and ``test`` (see :func:`_make_programs`)."""

    init: Callable
    epoch: Callable
    test: Callable


def _make_programs(model: Model, optimizer: Callable[..., Any], place: _Placement, size: int,
                   *, steps: int, eval_batch_size: int, eval_train: np.ndarray | None,
                   key_plan: KeyPlan | None = None, unroll: int = 1) -> _Programs:
    """The jitted ``init``, ``epoch`` and ``test`` programs of a chunk of ``size`` trials.

    Every argument and result that is per trial has a leading axis of ``size``; the
    programs ``vmap`` over it (on a mesh, per-trial arrays are split over ``"trials"``, the
    data replicated). A chunk of one trial on one device runs the trial's functions as they
    are, without ``vmap``, which compiles faster (the sequential plan). With a ``key_plan``
    (:func:`host_key_plan`) ``init`` takes each trial's keys split on the host — the draws'
    ``(n, 2)``, the init key's and the data key's data — instead of its seed.
    """
    update_only = optimizer(learning_rate=1.0)  # update reads η from the state

    def start(params, lr, data_key):
        state = TrainState(params, optimizer(learning_rate=lr).init(params), model.init_state())
        return state, data_key

    def init_one(seed, lr):
        init_key, data_key = jax.random.split(jax.random.key(seed))
        return start(model.init(init_key), lr, data_key)

    def init_from_keys(draw_keys, init_key_data, data_key_data, lr):
        init_key, data_key = (jax.random.wrap_key_data(data, impl=host_keys.THREEFRY)
                              for data in (init_key_data, data_key_data))
        return start(model.init.from_keys(draw_keys, key_plan, init_key), lr, data_key)

    def epoch_one(train_state, data_key, lam, indices, epoch, x, t, x_val, t_val):
        noise_key = jax.random.fold_in(jax.random.fold_in(data_key, NOISE_STREAM), epoch)

        def body(state, indices_and_step):
            idx, i = indices_and_step
            return _step(_with_penalty(model, lam), update_only, state, x[idx], t[idx],
                         jax.random.fold_in(noise_key, i))

        train_state, losses = jax.lax.scan(
            body, train_state, (indices, jnp.arange(steps, dtype=jnp.uint32)), unroll=unroll)
        params, model_state = train_state.params, train_state.model_state
        x_eval, t_eval = (x, t) if eval_train is None else (x[eval_train], t[eval_train])
        (train_loss, train_hits), (val_loss, val_hits) = metric_sums(
            model, params, model_state, ((x_eval, t_eval), (x_val, t_val)), eval_batch_size)
        metrics = jnp.stack([train_loss, train_hits, val_loss, val_hits])
        return train_state, losses, metrics

    def test_one(train_state, x, t):
        [sums] = metric_sums(model, train_state.params, train_state.model_state, ((x, t),),
                             eval_batch_size)
        return jnp.stack(sums)

    per_trial = {"init": (0, 0) if key_plan is None else (0, 0, 0, 0),
                 "epoch": (0, 0, 0, 0, None, None, None, None, None), "test": (0, None, None)}
    functions = {"init": init_one if key_plan is None else init_from_keys, "epoch": epoch_one,
                 "test": test_one}
    if size == 1 and place.mesh is None:
        return _Programs(**{name: jax.jit(_one_trial(fn, per_trial[name]),
                                          donate_argnums=(0,) if name == "epoch" else ())
                            for name, fn in functions.items()})

    def place_on_mesh(axes: tuple) -> dict[str, Any]:
        """jit's shardings on the mesh: per-trial arguments and results split."""
        if place.mesh is None:
            return {}
        trial, shared = place.shardings()
        return {"in_shardings": tuple(trial if a == 0 else shared for a in axes),
                "out_shardings": trial}

    return _Programs(**{name: jax.jit(jax.vmap(fn, in_axes=per_trial[name]),
                                      donate_argnums=(0,) if name == "epoch" else (),
                                      **place_on_mesh(per_trial[name]))
                        for name, fn in functions.items()})


def host_key_plan(model: Model) -> KeyPlan | None:
    """The :class:`fnnet.init.KeyPlan` of ``model.init`` (fnnet's models:
    :func:`fnnet.init.draws_as_one`), so that a sweep's trials start from keys split on the
    host, as ``fnnet train`` does (:func:`fnnet.train.init_from_seed`), and their init
    program holds no key splitting; None where the host can't derive them."""
    plan_of = getattr(model.init, "key_plan", None)
    if plan_of is None or not host_keys.applies():
        return None
    example = host_keys.seed_data(0)
    plan = plan_of(jax.random.wrap_key_data(example, impl=host_keys.THREEFRY))
    return plan if plan is not None and plan.keys([example]) is not None else None


def trial_key_data(seeds: Sequence[int], key_plan: KeyPlan) -> tuple[np.ndarray, ...]:
    """Per trial, split on the host: the draws' key data ``(K, n, 2)``, and the data of
    ``init_key, data_key = split(key(seed))`` ``(K, 2)`` each (as :func:`trial_keys`)."""
    split = np.stack([host_keys.split(host_keys.seed_data(seed), (2,)) for seed in seeds])
    draws = np.stack([key_plan.keys([init_key]) for init_key in split[:, 0]])
    return draws, split[:, 0], split[:, 1]


def _one_trial(fn: Callable, axes: tuple) -> Callable:
    """``fn`` of one trial taking and returning the per-trial arrays of a chunk of one: the
    leading axis dropped from the arguments of ``axes`` 0, and put back on every result."""

    def run(*args):
        args = [jax.tree.map(lambda a: a[0], arg) if axis == 0 else arg
                for arg, axis in zip(args, axes, strict=True)]
        return jax.tree.map(lambda a: a[None], fn(*args))

    return run


CPU_TRIALS_PER_DEVICE = 4
"""Trials per CPU device in a chunk when none is asked for (:func:`default_max_parallel`).

Measured for the book's §6.5 search (the MLP, 400 training examples, 100 trials, 20 epochs)
on a 2-core Xeon (AVX-512), one CPU device per core: 1, 2, 4, 5, 8 trials per device gave
1 532, 1 766, 1 836, 1 813, 1 590 model-steps/s, all 50 at once 1 241; the two-layer net on
the same data is within 8% from 2 to 16 per device. Bigger batched matmuls do not run faster
on XLA:CPU, and a chunk's parameters and batches leave the cache. With more data per epoch
bigger chunks pay more (``experiments/sweep_scaling.py``)."""


def default_max_parallel(platform: str, devices: int) -> int | None:
    """Trials per chunk when the user gives none: on a CPU :data:`CPU_TRIALS_PER_DEVICE` per
    device; elsewhere None (all at once: one small model leaves a GPU idle, and K models fill
    it)."""
    return CPU_TRIALS_PER_DEVICE * devices if platform == "cpu" else None


def chunk_plan(num_trials: int, max_parallel: int | None, devices: int = 1) -> tuple[int, int]:
    """``(chunks, chunk_size)``: the fewest chunks of at most ``max_parallel`` trials, evenly
    sized, each a multiple of ``devices`` (the last chunk is padded with repeats of its last
    trial, whose results are dropped)."""
    if max_parallel is None:
        return 1, math.ceil(num_trials / devices) * devices
    limit = check_int("max_parallel", max_parallel)
    if limit < devices:
        raise ValueError(f"max_parallel ({limit}) must be at least the number of devices "
                         f"({devices}): each device trains whole trials")
    chunks = math.ceil(num_trials / limit)
    size = math.ceil(num_trials / chunks)
    size = math.ceil(size / devices) * devices
    if size > limit:  # rounding up to the devices overshot: more, smaller chunks
        size = limit - limit % devices
        chunks = math.ceil(num_trials / size)
    return chunks, size


VMAP_COMPILE_FACTOR = 1.3
"""How much longer the vmapped chunk programs take to compile than the one-trial programs, as
the adaptive plan assumes (measured on a 2-core CPU for the two-layer net and the §6.5 MLP:
1.1–1.4 with two devices)."""


def predicted_speedup(platform: str, devices: int, size: int) -> float:
    """The model-steps/s of chunks of ``size`` trials over ``devices``, relative to one trial
    at a time, that the adaptive plan assumes: on a CPU ``0.9`` per device (one small model
    keeps one core busy; batched matmuls are no faster: 1.92× measured with 2 devices), on an
    accelerator half the chunk (one small model leaves it idle)."""
    if platform == "cpu":
        return max(1.0, 0.9 * devices)
    return max(1.0, 0.5 * size)


def steady_train_s(epoch_s: Sequence[float]) -> float:
    """One trial's training time as the next trials will take it: its epochs' median time
    × their number. A new program's first run also pays one-off costs (buffers allocated,
    code paged in) that the first trial's total would charge to every later trial too.

    >>> steady_train_s([0.5, 0.1, 0.12, 0.1, 0.1])  # not 0.92: the first run's 0.4 is once
    0.5
    """
    return float(np.median(epoch_s)) * len(epoch_s) if epoch_s else 0.0


def choose_plan(first_train_s: float, first_compile_s: float, rest: int, *, platform: str,
                devices: int, size: int) -> dict[str, Any]:
    """The adaptive sweep's choice for the ``rest`` trials after the first, from the first
    trial's training and compile seconds: one at a time takes ``rest × first_train_s``; in
    chunks of ``size`` over ``devices`` it takes :data:`VMAP_COMPILE_FACTOR` ×
    ``first_compile_s`` to compile and :func:`predicted_speedup` times less to train.

    >>> choose_plan(0.1, 2.0, 31, platform="cpu", devices=2, size=8)["mode"]
    'sequential'
    >>> choose_plan(0.3, 2.0, 99, platform="cpu", devices=2, size=8)["mode"]
    'vmapped'
    """
    sequential_s = rest * first_train_s
    speedup = predicted_speedup(platform, devices, size)
    vmapped_s = VMAP_COMPILE_FACTOR * first_compile_s + sequential_s / speedup
    return {"mode": "vmapped" if vmapped_s < sequential_s else "sequential",
            "first_trial_train_s": first_train_s, "first_trial_compile_s": first_compile_s,
            "predicted_sequential_s": sequential_s, "predicted_vmapped_s": vmapped_s,
            "predicted_speedup": speedup}


def sweep(
    model: Model,
    trials: Sequence[Trial],
    train: Arrays,
    validation: Arrays,
    *,
    epochs: int,
    optimizer: str = "sgd",
    hyperparams: Mapping[str, float] | None = None,
    test: Arrays | None = None,
    batch_size: int = 100,
    sampling: str = "shuffle",
    max_parallel: int | None = None,
    devices: int | str | Sequence[jax.Device] | None = None,
    adaptive: bool = False,
    eval_batch_size: int = 1000,
    eval_train: int | None = None,
    keep_params: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Train every trial of ``trials`` for ``epochs`` epochs, ``max_parallel`` at a time.

    Args:
      model: built once, without weight decay (each trial's λ is added to its loss).
      trials: η, λ and seed of each trial (:func:`sample_trials`).
      train, validation: ``(x, t)`` host arrays; trials are judged on ``validation``.
      epochs: full epochs of ``len(train) // batch_size`` steps (last partial batch dropped).
      optimizer, hyperparams: a name of :data:`fnnet.optim.OPTIMIZERS` and its hyperparameters
        other than the learning rate.
      test: ``(x, t)`` evaluated once after training, only reported.
      sampling: ``"shuffle"`` or ``"replacement"``, as :func:`fnnet.train.fit`.
      max_parallel: at most this many trials in one program (default: all; `fnnet sweep` uses
        :func:`default_max_parallel`).
      devices: shard each chunk's trials over ``"all"``, a count, or a list of devices.
      adaptive: pick the faster plan, compile included: train the first trial alone (the
        sequential plan: one device, no ``vmap``), and from its compile and training times
        predict the rest both ways — one at a time, or in chunks of ``max_parallel`` over
        ``devices`` (compiling :data:`VMAP_COMPILE_FACTOR` times as long, running
        :func:`predicted_speedup` times as fast) — then train the rest the faster way.
        ``result.plan`` records the figures and the choice.
      eval_batch_size: examples per evaluation batch (up to twice as many are one batch:
        :func:`fnnet.train.metric_sums`).
      eval_train: evaluate the training loss and accuracy on a fixed sample of this many
        training examples (:func:`fnnet.train.eval_subset`; default: all of them).
      keep_params: return the final parameters (stacked over trials) in ``params``.
      progress: a tqdm bar over trials × epochs, drawn only on a terminal.

    Returns:
      a :class:`SweepResult`; trial k equals ``fit`` of that trial alone (see the module
      docstring) to float32 rounding, whichever plan trained it.
    """
    trials = list(trials)
    if not trials:
        raise ValueError("trials must not be empty")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}")
    epochs = check_int("epochs", epochs)
    batch_size = check_int("batch_size", batch_size)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size)
    x_train, t_train = (np.asarray(a) for a in train)
    if batch_size > len(x_train):
        raise ValueError(f"batch_size must be in [1, {len(x_train)}] (the training set size); "
                         f"got {batch_size}")
    for trial in trials:
        if not trial.lr > 0 or not trial.weight_decay >= 0 or not 0 <= trial.seed <= SEED_MAX:
            raise ValueError(f"trial {trial}: needs lr > 0, weight_decay >= 0 and a seed in "
                             f"[0, {SEED_MAX}]")
    start_wall = time.perf_counter()
    steps = len(x_train) // batch_size
    run = _Run(model, trials, injected_optimizer(optimizer, **dict(hyperparams or {})),
               (x_train, t_train), validation, test, epochs=epochs, steps=steps,
               batch_size=batch_size, sampling=sampling, eval_batch_size=eval_batch_size,
               eval_train=eval_subset(len(x_train), eval_train), keep_params=keep_params)
    place = _Placement(devices)
    size = chunk_plan(len(trials), max_parallel, place.count)[1]
    plan: dict[str, Any] = {"mode": "sequential" if size == 1 and place.mesh is None
                            else "vmapped", "adaptive": bool(adaptive)}
    todo = list(range(len(trials)))
    bar = tqdm(total=len(trials) * epochs, unit="epoch", disable=None if progress else True,
               leave=False,
               desc=f"{len(trials)} trials")
    try:
        if adaptive and plan["mode"] == "vmapped":
            alone = _Placement(None)
            run.train(alone, 1, todo[:1], bar)
            todo = todo[1:]
            plan.update(choose_plan(steady_train_s(run.epoch_s), run.timing["compile"],
                                    len(todo),
                                    platform=jax.devices()[0].platform, devices=place.count,
                                    size=size))
            if plan["mode"] == "sequential":
                place, size = alone, 1
            elif todo:
                size = chunk_plan(len(todo), max_parallel, place.count)[1]
        if todo:
            run.train(place, size, todo, bar)
    finally:
        bar.close()
    plan.update(chunk_size=size, devices=place.count)
    params = (jax.tree.map(lambda *a: np.concatenate(a), *run.kept) if keep_params else None)
    return SweepResult(trials=trials, epochs=epochs, steps_per_epoch=steps, curves=run.curves,
                       test_loss=run.test_metrics[:, 0], test_acc=run.test_metrics[:, 1],
                       diverged=run.diverged, train_s=run.timing["train"],
                       wall_s=time.perf_counter() - start_wall, compile_s=run.timing["compile"],
                       chunks=run.chunks, chunk_size=size, params=params, plan=plan)


class _Run:
    """The results of a sweep as they fill in, and the training of a list of its trials in
    chunks of one size over one placement (:meth:`train`)."""

    def __init__(self, model: Model, trials: list[Trial], optimizer: Callable[..., Any],
                 train: Arrays, validation: Arrays, test: Arrays | None, *, epochs: int,
                 steps: int, batch_size: int, sampling: str, eval_batch_size: int,
                 eval_train: np.ndarray | None, keep_params: bool):
        self.model, self.trials, self.optimizer = model, trials, optimizer
        self.train_set, self.validation, self.test_set = train, validation, test
        self.epochs, self.steps, self.keep_params = epochs, steps, keep_params
        self.options = dict(steps=steps, eval_batch_size=eval_batch_size,
                            eval_train=eval_train, key_plan=host_key_plan(model))
        self.batching = dict(num_examples=len(train[0]), batch_size=batch_size,
                             num_steps=steps, sampling=sampling)
        self.n_train = len(train[0]) if eval_train is None else len(eval_train)
        num = len(trials)
        self.curves = {name: np.full((num, epochs), np.nan) for name in CURVES}
        self.test_metrics = np.full((num, 2), np.nan)
        self.diverged = np.zeros(num, bool)
        self.kept: list[Any] = []
        self.timing = {"train": 0.0, "compile": 0.0}
        self.epoch_s: list[float] = []  # each epoch program's run, in order
        self.chunks = 0
        self._programs: dict[tuple, tuple[_Programs, dict[str, Any]]] = {}

    def _compiled(self, compiled: dict, name: str, fn, *args):
        """``fn`` compiled for ``args`` (once; the time goes to ``compile``)."""
        if name not in compiled:
            begin = time.perf_counter()
            compiled[name] = fn.lower(*args).compile()
            self.timing["compile"] += time.perf_counter() - begin
        return compiled[name]

    def train(self, place: _Placement, size: int, ids: list[int], bar: Any) -> None:
        """Train the trials ``ids`` in chunks of ``size`` on ``place`` (the last chunk padded
        with repeats of its last trial, whose results are dropped)."""
        plan = (place.count, size)  # the programs (and compiled executables) of this plan
        if plan not in self._programs:
            self._programs[plan] = (_make_programs(self.model, self.optimizer, place, size,
                                                   **self.options), {})
        programs, compiled = self._programs[plan]
        data = place.shared((*self.train_set, *(np.asarray(a) for a in self.validation)))
        test_data = (None if self.test_set is None else
                     place.shared(tuple(np.asarray(a) for a in self.test_set)))
        n_val = len(self.validation[0])
        for first in range(0, len(ids), size):
            chunk = ids[first:first + size]
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            seeds = np.array([self.trials[i].seed for i in padded], np.uint32)
            lrs = np.array([self.trials[i].lr for i in padded], np.float32)
            lams = np.array([self.trials[i].weight_decay for i in padded], np.float32)
            key_plan = self.options["key_plan"]
            starts = (seeds,) if key_plan is None else trial_key_data(seeds, key_plan)
            *starts, lrs, lams = place.per_trial((*starts, lrs, lams))
            state, data_keys = self._compiled(compiled, "init", programs.init, *starts,
                                              lrs)(*starts, lrs)
            data_key_data = np.asarray(jax.random.key_data(data_keys))  # (size, 2) uint32
            rows, k = np.array(chunk), len(chunk)

            def epoch_indices(epoch: int, keys: np.ndarray = data_key_data) -> Any:
                return place.per_trial(np.stack([
                    batch_indices(key, epoch=epoch, **self.batching) for key in keys]))

            indices = epoch_indices(1)
            for epoch in range(1, self.epochs + 1):
                args = (state, data_keys, lams, indices, np.uint32(epoch), *data)
                epoch_program = self._compiled(compiled, "epoch", programs.epoch, *args)
                begin = time.perf_counter()
                state, losses, metrics = epoch_program(*args)  # runs while the host goes on
                if epoch < self.epochs:  # the next epoch's batches, drawn meanwhile
                    indices = epoch_indices(epoch + 1)
                losses = np.asarray(losses)  # waits for the epoch
                metrics = np.asarray(metrics, np.float64)
                self.epoch_s.append(time.perf_counter() - begin)
                self.timing["train"] += self.epoch_s[-1]
                e = epoch - 1
                self.curves["loss"][rows, e] = losses[:k].mean(axis=1)
                self.curves["train_loss"][rows, e] = metrics[:k, 0] / self.n_train
                self.curves["train_acc"][rows, e] = np.round(metrics[:k, 1]) / self.n_train
                self.curves["val_loss"][rows, e] = metrics[:k, 2] / n_val
                self.curves["val_acc"][rows, e] = np.round(metrics[:k, 3]) / n_val
                self.diverged[rows] |= ~np.all(np.isfinite(losses[:k]), axis=1)
                self.diverged[rows] |= ~np.isfinite(metrics[:k, 0])
                bar.update(k)
                bar.set_postfix(best_val_acc=f"{np.nanmax(self.curves['val_acc'][:, e]):.3f}")
            if test_data is not None:
                sums = np.asarray(self._compiled(compiled, "test", programs.test, state,
                                                 *test_data)(state, *test_data),
                                  np.float64)[:k]
                n_test = len(self.test_set[0])
                self.test_metrics[rows] = np.stack([sums[:, 0] / n_test,
                                                    np.round(sums[:, 1]) / n_test], axis=1)
            if self.keep_params:
                self.kept.append(_leading(state.params, k))
            self.chunks += 1


def _leading(tree: Any, count: int) -> Any:
    """The first ``count`` entries (trials) of every leaf, on the host."""
    return jax.tree.map(lambda a: np.asarray(a)[:count], tree)


class TrialRecord(NamedTuple):
    """One trial's row of a report: index, the trial, and its final numbers."""

    index: int
    trial: Trial
    val_acc: float
    test_acc: float
    diverged: bool


def best_trials(result: SweepResult, count: int | None = None) -> list[TrialRecord]:
    """The ``count`` best trials by validation accuracy (all when None), best first."""
    order = result.ranking()[: count]
    return [TrialRecord(int(i), result.trials[i], float(result.val_acc()[i]),
                        float(result.test_acc[i]), bool(result.diverged[i])) for i in order]

