"""Weight initialisers as values: callables ``init(key, shape, dtype) -> array``.

They have the signature of :mod:`jax.nn.initializers`, so either kind can be passed wherever
fnnet takes a ``weight_init``. The book's chapter-6 presets:

* :func:`normal` ``(std)``: ``W ~ N(0, std²)``; :data:`book_normal` is the book's
  ``std = 0.01``;
* :data:`xavier`: ``W ~ N(0, 1/fan_in)`` — the book's "Xavier" initial value (suited to
  sigmoid and tanh). JAX calls this scaling *LeCun normal*; note that
  ``jax.nn.initializers.lecun_normal`` draws from a *truncated* normal, while the book (and
  this one) uses the plain normal, ``variance_scaling(1.0, "fan_in", "normal")``;
* :data:`he`: ``W ~ N(0, 2/fan_in)`` — He et al.'s initial value for ReLU,
  ``variance_scaling(2.0, "fan_in", "normal")``.

Fan-in: a weight matrix is ``(fan_in, fan_out)``, so ``fan_in = shape[0]``; a convolution
kernel is ``(FN, C, FH, FW)`` (the book's layout), so ``fan_in = C·FH·FW``.

Compiling: XLA compiles each ``jax.random.normal`` of a program on its own, and on a CPU that
costs ~0.5 s per draw (a deep net's init took seconds). :func:`draws_as_one` runs an init so
that every draw of these presets becomes one batched draw, with the same values, and (called
with a concrete key) one program fed with the keys split on the host.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxpr_as_fun

from fnnet import host_keys
from fnnet._checks import check_positive

Initializer = Callable[..., jax.Array]
"""``init(key, shape, dtype=jnp.float32) -> array``, as in :mod:`jax.nn.initializers`."""

BOOK_STD = 0.01


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs feeding one output unit: ``shape[0]`` of ``(fan_in, fan_out)``; ``C·FH·FW`` of a
    kernel ``(FN, C, FH, FW)``.

    >>> fan_in((784, 50)), fan_in((30, 1, 5, 5))
    (784, 25)
    """
    if len(shape) < 2:
        raise ValueError(f"fan_in: a weight has at least 2 axes; got shape {tuple(shape)}")
    return shape[0] if len(shape) == 2 else math.prod(shape[1:])


# --- one draw for a whole init ---------------------------------------------------------------

_DRAW: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("fnnet_draw",
                                                                       default=None)


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``; inside :func:`draws_as_one` one slice of the
    init's single batched draw (the same values)."""
    draw = _DRAW.get()
    if draw is None:
        return jax.random.normal(key, shape, dtype)
    return draw(key, tuple(shape), jnp.dtype(dtype))


@contextlib.contextmanager
def _drawing(draw: Callable) -> Iterator[None]:
    token = _DRAW.set(draw)
    try:
        yield
    finally:
        _DRAW.reset(token)


def _typed(key: Any) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def _partitionable_threefry(keys: list[Any]) -> bool:
    """Whether every key of ``keys`` (typed, or raw of the default generator) is JAX's
    partitionable threefry (its default since 0.5), whose counters are the flat index: then
    ``normal(key, shape)`` equals the first ``prod(shape)`` values of ``normal(key, (M,))``,
    and :mod:`fnnet.host_keys` splits such keys as JAX does. False of the older threefry
    and other generators."""
    return all(host_keys.applies(jax.random.key_impl(key)) if _typed(key)
               else host_keys.applies() for key in keys)


@partial(jax.jit, static_argnames=("shapes", "dtype"))
def _normal_rows(keys: jax.Array, *, shapes: tuple[tuple[int, ...], ...],
                 dtype: jnp.dtype) -> tuple[jax.Array, ...]:
    """``normal(keys[i], shapes[i], dtype)`` for every ``i`` of the stacked ``keys``, as one
    draw of the longest size per key, each taking its prefix. One compiled program per set
    of shapes, shared by every model whose init draws those shapes.

    The draws are a ``lax.scan`` over the keys, not a ``vmap``: a vmapped draw is one fused
    kernel that XLA copies into every row's slice (the normal's erfinv polynomial compiled
    once per weight: ~35 ms a weight on a CPU); the scan's stacked result is a buffer, and
    the slices are plain copies of it. The values are the same. A single key is drawn
    twice: XLA unrolls a scan of one step, and its simplifier then folds the normal's
    ``√2`` into the caller's scale (``(√2·x)·s → x·(√2·s)``, rounded differently)."""
    size = max(math.prod(shape) for shape in shapes)
    draw = partial(jax.random.normal, shape=(size,), dtype=dtype)
    rows = keys if len(shapes) > 1 else jnp.concatenate([keys, keys])
    _, flat = jax.lax.scan(lambda carry, key: (carry, draw(key)), None, rows)
    return tuple(flat[row, :math.prod(shape)].reshape(shape)
                 for row, shape in enumerate(shapes))


def _batched(keys: jax.Array, plan: list[tuple[tuple[int, ...], jnp.dtype]]
             ) -> list[jax.Array]:
    """The draws ``plan[i] = (shape, dtype)`` from the stacked ``keys[i]``, one
    :func:`_normal_rows` per dtype."""
    values: list[jax.Array | None] = [None] * len(plan)
    for dtype in dict.fromkeys(dtype for _, dtype in plan):
        mine = [i for i, (_, d) in enumerate(plan) if d == dtype]
        rows = keys if len(mine) == len(plan) else keys[np.asarray(mine)]
        drawn = _normal_rows(rows, shapes=tuple(plan[i][0] for i in mine), dtype=dtype)
        for i, value in zip(mine, drawn, strict=True):
            values[i] = value
    return values  # type: ignore[return-value]


def _replaying(values: Iterator[jax.Array]) -> Callable:
    def replay(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
        value = next(values, None)
        if value is None or value.shape != shape or value.dtype != dtype:
            raise RuntimeError("draws_as_one: the init made other draws the second time; "
                               "it must be pure (same draws, same order)")
        return value

    return replay


def _recording(requests: list) -> Callable:
    def record(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> np.ndarray:
        requests.append((key, shape, dtype))
        return np.zeros(shape, dtype)  # a placeholder on the host: no device work

    return record


def _traced(init: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``init(*args, **kwargs)`` with its draws made as one batched draw, keys and all
    computed by JAX: under a trace, or (op by op) where the keys can't be derived on the
    host."""
    requests: list[tuple[jax.Array, tuple[int, ...], jnp.dtype]] = []
    with _drawing(_recording(requests)):
        init(*args, **kwargs)  # discovers the draws; its result is dead code
    if not requests or not _partitionable_threefry([key for key, _, _ in requests]):
        return init(*args, **kwargs)
    keys = jnp.stack([key for key, _, _ in requests])
    with _drawing(_replaying(iter(_batched(keys, [(shape, dtype) for _, shape, dtype
                                                  in requests])))):
        return init(*args, **kwargs)


def _from_key_data(init: Callable[..., Any], key_data: jax.Array, leaves: list, *,
                   plan: tuple, treedef: Any) -> Any:
    """``init`` at the arguments ``leaves`` (flattened by ``treedef``), its draws ``plan``
    (shape, dtype) made from the keys ``key_data (n, 2)`` derived on the host. The keys
    ``init`` derives itself are dead code here: XLA never sees them."""
    values = _batched(jax.random.wrap_key_data(key_data, impl=host_keys.THREEFRY), list(plan))
    args, kwargs = jax.tree.unflatten(treedef, leaves)
    with _drawing(_replaying(iter(values))):
        return init(*args, **kwargs)


_PROGRAMS: OrderedDict[tuple, Callable] = OrderedDict()
_PROGRAMS_KEPT = 256


def _shared_program(fun: Callable[..., Any], *args: Any) -> Any:
    """``fun(*args)`` as a compiled program shared by every function that traces to the same
    jaxpr with the same constants: models of the same shapes and initialisers (a net and its
    tanh twin, the trials of a test) compile their init once. The last
    ``_PROGRAMS_KEPT`` programs are kept."""
    closed, out_shape = jax.make_jaxpr(fun, return_shape=True)(*args)
    key = (str(closed.jaxpr), tuple(_fingerprint(const) for const in closed.consts))
    program = _PROGRAMS.pop(key, None) or jax.jit(_named(jaxpr_as_fun(closed), "init"))
    _PROGRAMS[key] = program
    if len(_PROGRAMS) > _PROGRAMS_KEPT:
        _PROGRAMS.popitem(last=False)
    return jax.tree.unflatten(jax.tree.structure(out_shape), program(*jax.tree.leaves(args)))


def _named(fun: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fun`` under ``name`` (what JAX's compile logs and profiles call the program)."""

    def named(*args: Any) -> Any:
        return fun(*args)

    named.__name__ = named.__qualname__ = name
    return named


def _fingerprint(value: Any) -> tuple:
    array = np.asarray(jax.random.key_data(value) if _typed(value) else value)
    return str(array.dtype), array.shape, array.tobytes()


class KeyPlan(NamedTuple):
    """An init's draws, ``plan[i] = (shape, dtype)``, and how their keys follow from the
    init's arguments: ``derivation`` (a jaxpr of split, slice and reshape) evaluated on the
    host by :meth:`keys`. The same for every key of the same kind, so one plan serves a
    sweep's trials (:meth:`keys` per trial: NumPy, microseconds)."""

    plan: tuple[tuple[tuple[int, ...], jnp.dtype], ...]
    derivation: Any

    def keys(self, leaves: list) -> np.ndarray | None:
        """The draws' key data ``(n, 2)`` at the init's arguments ``leaves`` (flattened;
        a typed key as itself or as its data); None where the host can't derive them."""
        data = [np.asarray(jax.random.key_data(leaf)) if _typed(leaf) else np.asarray(leaf)
                for leaf in leaves]
        keys = host_keys.derive(self.derivation, data)
        if keys is None or any(k.shape != (2,) for k in keys):
            return None
        return np.stack(keys).astype(np.uint32)


def _key_plan(init: Callable[..., Any], leaves: list, treedef: Any) -> KeyPlan | None:
    """``init``'s :class:`KeyPlan` at arguments like ``leaves``; None where its keys are not
    partitionable threefry keys or it makes no draw."""
    if not _partitionable_threefry(leaves):
        return None
    plan: list[tuple[tuple[int, ...], jnp.dtype]] = []

    def draw_keys(*leaves: Any) -> list[jax.Array]:
        requests: list[tuple[jax.Array, tuple[int, ...], jnp.dtype]] = []
        args, kwargs = jax.tree.unflatten(treedef, leaves)
        with _drawing(_recording(requests)):
            init(*args, **kwargs)
        plan[:] = [(shape, dtype) for _, shape, dtype in requests]
        return [jax.random.key_data(key) if _typed(key) else key for key, _, _ in requests]

    derivation = jax.make_jaxpr(draw_keys)(*leaves)
    return KeyPlan(tuple(plan), derivation) if plan else None


def draws_as_one(init: Callable[..., Any]) -> Callable[..., Any]:
    """``init`` (e.g. ``key -> params``), with every :func:`standard_normal` draw it makes
    computed by one batched draw (:func:`_normal_rows`): the same values, one random-number
    kernel to compile instead of one per weight.

    Called with concrete arrays (``init(jax.random.key(0))``, not under a trace), it runs as
    **one compiled program** whose input is the draws' keys: they are derived on the host
    (:mod:`fnnet.host_keys`, JAX's threefry splitting in NumPy), so the program holds no
    key-splitting loops (deep-conv's init with its compile: 0.65 → 0.40 s on a 2-core CPU),
    and models whose inits trace alike share it (:func:`_shared_program`). Where the keys
    can't be derived there (another generator; an operation other than split, slice,
    reshape) it runs op by op, as JAX would. Under a trace (``jax.jit``, ``jax.vmap``) it is
    traced inline. The function returned has ``compiles_itself = True``, and for programs
    of their own (a sweep's trials, :mod:`fnnet.sweep`): ``key_plan(*args)`` (the
    :class:`KeyPlan` at arguments like these, or None) and ``from_keys(key_data, key_plan,
    *args)`` (the init from the draws' keys, traceable).

    It runs ``init`` twice: once to collect the draws (keys and shapes, with host zeros in
    their place), once to build the result from their batched values. ``init`` must make the
    same draws, in the same order, both times (any pure init does). Draws by other means
    (``jax.random`` called directly, a user's initializer) are left as they are. Where the
    batched values would differ (a generator other than partitionable threefry) the draws
    are made one by one.
    """
    def run(*args: Any, **kwargs: Any) -> Any:
        leaves, treedef = jax.tree.flatten((args, kwargs))
        concrete = leaves and all(isinstance(leaf, (jax.Array, np.ndarray))
                                  and not isinstance(leaf, jax.core.Tracer) for leaf in leaves)
        if not concrete:
            return _traced(init, *args, **kwargs)
        key_plan = _key_plan(init, leaves, treedef)
        key_data = None if key_plan is None else key_plan.keys(leaves)
        if key_data is None:
            return _traced(init, *args, **kwargs)
        return _shared_program(partial(_from_key_data, init, plan=key_plan.plan,
                                       treedef=treedef), key_data, leaves)

    def key_plan(*args: Any, **kwargs: Any) -> KeyPlan | None:
        leaves, treedef = jax.tree.flatten((args, kwargs))
        return _key_plan(init, leaves, treedef)

    def from_keys(key_data: jax.Array, plan: KeyPlan, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef = jax.tree.flatten((args, kwargs))
        return _from_key_data(init, key_data, leaves, plan=plan.plan, treedef=treedef)

    run.compiles_itself = True  # type: ignore[attr-defined]
    run.key_plan, run.from_keys = key_plan, from_keys  # type: ignore[attr-defined]
    return run


# --- the presets ----------------------------------------------------------------------------


def normal(std: float = BOOK_STD) -> Initializer:
    """``W ~ N(0, std²)``; the book's two-layer net uses ``std = 0.01`` (:data:`book_normal`)."""
    std = check_positive("std", std)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return std * standard_normal(key, shape, dtype)

    return init


def _scaled_by_fan_in(gain: float, name: str) -> Initializer:
    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return math.sqrt(gain / fan_in(shape)) * standard_normal(key, shape, dtype)

    init.__name__ = init.__qualname__ = name
    return init


book_normal: Initializer = normal(BOOK_STD)
xavier: Initializer = _scaled_by_fan_in(1.0, "xavier")
he: Initializer = _scaled_by_fan_in(2.0, "he")

INITIALIZERS: dict[str, Initializer] = {"normal": book_normal, "xavier": xavier, "he": he}
"""The presets by the names the CLI and builders accept."""


def resolve(weight_init: str | float | Initializer) -> Initializer:
    """An initialiser from a preset name, a float std for :func:`normal`, or a callable as is."""
    if callable(weight_init):
        return weight_init
    if isinstance(weight_init, str):
        if weight_init not in INITIALIZERS:
            raise ValueError(f"weight_init must be one of {tuple(INITIALIZERS)}, a float std or "
                             f"an initializer (key, shape, dtype); got {weight_init!r}")
        return INITIALIZERS[weight_init]
    return normal(weight_init)
