"""The book's optimisers (chapter 6) written by hand, a registry for ``--optimizer``, and the
book's weight decay.

Every optimiser is an ``optax.GradientTransformation`` (``init(params) -> state``,
``update(grads, state, params=None) -> (updates, state)``; state a NamedTuple of pytrees
shaped like ``params``), so it composes with ``optax.chain`` and plugs into the same train
step as the optax ones. Applied with ``optax.apply_updates`` (``θ ← θ + u``), each computes
the book's ``common/optimizer.py`` update with its constants (ε = 1e-7). Updates keep the
gradients' dtype.

:data:`OPTIMIZERS` maps each ``--optimizer`` name to an :class:`OptimizerSpec` (builder and
the hyperparameters it takes); :func:`get_optimizer` builds one by name.

Weight decay (section 6.4.1) adds ``½λ·ΣW²`` over the weights, not the biases, to the loss:
:func:`weight_decay_penalty`, :func:`weight_mask`, and :func:`with_weight_decay` (the same
gradient as ``optax.add_decayed_weights`` chained in front of an optimiser).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fnnet._checks import check_fraction, check_non_negative, check_positive

EPS = 1e-7
"""The book's ε, added to √h (AdaGrad, RMSprop) or √v (Adam) outside the root."""

# ---------------------------------------------------------------------------------------------
# The book's optimisers.


class MomentumState(NamedTuple):
    """``velocity``: the book's ``v``, shaped like params, starting at 0."""

    velocity: Any


class AdaGradState(NamedTuple):
    """``h``: the running sum of squared gradients, shaped like params, starting at 0."""

    h: Any


class RMSpropState(NamedTuple):
    """``h``: the moving average of squared gradients, shaped like params, starting at 0."""

    h: Any


class AdamState(NamedTuple):
    """``count``: steps taken (int32, the book's ``iter``); ``m``, ``v``: the first and
    second moment estimates, shaped like params, starting at 0."""

    count: jax.Array
    m: Any
    v: Any


def _zeros_like(params: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, params)


def sgd_update(params: Any, grads: Any, learning_rate: float) -> Any:
    """One SGD step over matching pytrees: ``θ ← θ − η·∂L/∂θ`` for every leaf."""
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def sgd(learning_rate: float) -> optax.GradientTransformation:
    """Plain SGD by hand, as a stateless ``GradientTransformation``.

    ``update(g) = −η·g``; applied with ``optax.apply_updates`` this is ``θ ← θ − η·g``,
    the book's ``SGD.update``. It computes the same numbers as ``optax.sgd(η)``.

    >>> import jax.numpy as jnp, optax
    >>> opt = sgd(0.5)
    >>> updates, _ = opt.update({"w": jnp.array(2.0)}, opt.init({"w": jnp.array(1.0)}))
    >>> float(optax.apply_updates({"w": jnp.array(1.0)}, updates)["w"])
    0.0
    """
    lr = check_positive("learning_rate", learning_rate)

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: optax.EmptyState, params: Any = None):
        del params
        return jax.tree.map(lambda g: (-lr * g).astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


def momentum(learning_rate: float, momentum: float = 0.9) -> optax.GradientTransformation:
    """Momentum SGD, the book's ``Momentum``: with α = ``momentum``, per leaf

        v ← α·v − η·g        (v₀ = 0)
        θ ← θ + v            (the update is v)

    It equals ``optax.sgd(η, momentum=α)`` up to rounding (optax keeps t = g + α·t and
    returns −η·t, which is v in exact arithmetic).

    >>> import jax.numpy as jnp, optax
    >>> opt, params = momentum(0.1, momentum=0.9), {"w": jnp.array(1.0)}
    >>> state = opt.init(params)
    >>> for _ in range(2):  # v = −0.1, then 0.9·(−0.1) − 0.1 = −0.19
    ...     updates, state = opt.update({"w": jnp.array(1.0)}, state)
    ...     params = optax.apply_updates(params, updates)
    >>> round(float(params["w"]), 6)
    0.71
    """
    lr = check_positive("learning_rate", learning_rate)
    alpha = check_fraction("momentum", momentum)

    def init(params: Any) -> MomentumState:
        return MomentumState(velocity=_zeros_like(params))

    def update(updates: Any, state: MomentumState, params: Any = None):
        del params
        velocity = jax.tree.map(lambda v, g: (alpha * v - lr * g).astype(g.dtype),
                                state.velocity, updates)
        return velocity, MomentumState(velocity=velocity)

    return optax.GradientTransformation(init, update)


def nesterov(learning_rate: float, momentum: float = 0.9) -> optax.GradientTransformation:
    """Nesterov's accelerated gradient in the book's form (``common/optimizer.py``): per leaf

        v ← α·v − η·g                    (v₀ = 0)
        θ ← θ + α·α·v − (1 + α)·η·g      (with the *new* v)

    This is not ``optax.sgd(η, momentum=α, nesterov=True)``: optax's step is
    α·α·v_old − (1 + α)·η·g (Sutskever/Bengio's form), so for the same gradients the book's
    parameters are ahead of optax's by exactly α²·v (the current velocity) after every step.

    >>> import jax.numpy as jnp, optax
    >>> opt, params = nesterov(0.1, momentum=0.5), {"w": jnp.array(1.0)}
    >>> updates, _ = opt.update({"w": jnp.array(1.0)}, opt.init(params))
    >>> round(float(updates["w"]), 6)  # 0.25·(−0.1) − 1.5·0.1
    -0.175
    """
    lr = check_positive("learning_rate", learning_rate)
    alpha = check_fraction("momentum", momentum)

    def init(params: Any) -> MomentumState:
        return MomentumState(velocity=_zeros_like(params))

    def update(updates: Any, state: MomentumState, params: Any = None):
        del params
        velocity = jax.tree.map(lambda v, g: (alpha * v - lr * g).astype(g.dtype),
                                state.velocity, updates)
        steps = jax.tree.map(
            lambda v, g: (alpha * alpha * v - (1 + alpha) * lr * g).astype(g.dtype),
            velocity, updates)
        return steps, MomentumState(velocity=velocity)

    return optax.GradientTransformation(init, update)


def adagrad(learning_rate: float) -> optax.GradientTransformation:
    """AdaGrad, the book's ``AdaGrad``: per leaf

        h ← h + g·g                      (h₀ = 0)
        θ ← θ − η·g / (√h + 1e-7)

    optax's ``adagrad`` differs: its accumulator starts at 0.1 by default and its ε is
    inside the root (g/√(h + ε)); see the README for how close it comes.

    >>> import jax.numpy as jnp, optax
    >>> opt = adagrad(0.1)
    >>> updates, _ = opt.update({"w": jnp.array(2.0)}, opt.init({"w": jnp.array(1.0)}))
    >>> round(float(updates["w"]), 6)  # −0.1·2 / (√4 + 1e-7)
    -0.1
    """
    lr = check_positive("learning_rate", learning_rate)

    def init(params: Any) -> AdaGradState:
        return AdaGradState(h=_zeros_like(params))

    def update(updates: Any, state: AdaGradState, params: Any = None):
        del params
        h = jax.tree.map(lambda h, g: (h + g * g).astype(g.dtype), state.h, updates)
        steps = jax.tree.map(lambda h, g: (-(lr * g / (jnp.sqrt(h) + EPS))).astype(g.dtype),
                             h, updates)
        return steps, AdaGradState(h=h)

    return optax.GradientTransformation(init, update)


def rmsprop(learning_rate: float, decay_rate: float = 0.99) -> optax.GradientTransformation:
    """RMSprop, the book's ``RMSprop``: with ρ = ``decay_rate``, per leaf

        h ← ρ·h + (1 − ρ)·g·g            (h₀ = 0)
        θ ← θ − η·g / (√h + 1e-7)

    Equal up to rounding to ``optax.rmsprop(η, decay=ρ, eps=1e-7, eps_in_sqrt=False)``
    (optax's defaults are ρ = 0.9, ε = 1e-8 inside the root).

    >>> import jax.numpy as jnp, optax
    >>> opt = rmsprop(0.1, decay_rate=0.75)
    >>> updates, _ = opt.update({"w": jnp.array(2.0)}, opt.init({"w": jnp.array(1.0)}))
    >>> round(float(updates["w"]), 6)  # h = 0.25·4 = 1: −0.1·2 / (1 + 1e-7)
    -0.2
    """
    lr = check_positive("learning_rate", learning_rate)
    rho = check_fraction("decay_rate", decay_rate)

    def init(params: Any) -> RMSpropState:
        return RMSpropState(h=_zeros_like(params))

    def update(updates: Any, state: RMSpropState, params: Any = None):
        del params
        h = jax.tree.map(lambda h, g: (rho * h + (1 - rho) * g * g).astype(g.dtype),
                         state.h, updates)
        steps = jax.tree.map(lambda h, g: (-(lr * g / (jnp.sqrt(h) + EPS))).astype(g.dtype),
                             h, updates)
        return steps, RMSpropState(h=h)

    return optax.GradientTransformation(init, update)


def adam(learning_rate: float = 0.001, beta1: float = 0.9,
         beta2: float = 0.999) -> optax.GradientTransformation:
    """Adam, the book's ``Adam``: per step t = 1, 2, … and per leaf

        lr_t = η·√(1 − β₂ᵗ) / (1 − β₁ᵗ)
        m ← m + (1 − β₁)·(g − m)         (m₀ = 0)
        v ← v + (1 − β₂)·(g·g − v)       (v₀ = 0)
        θ ← θ − lr_t·m / (√v + 1e-7)

    Algebraically this is bias-corrected Adam, m̂/(√v̂ + ε_t), with a step-dependent
    ε_t = 1e-7/√(1 − β₂ᵗ) (3.2e-6 at t = 1 for β₂ = 0.999, → 1e-7): ``optax.adam(η, β₁, β₂,
    eps=1e-7)`` is the closest fixed-ε optax call (optax's default ε is 1e-8). lr_t is
    computed in the default float dtype (float32, or float64 under x64), the update is cast
    back to each leaf's dtype.

    >>> import jax.numpy as jnp, optax
    >>> opt = adam(0.001)
    >>> updates, _ = opt.update({"w": jnp.array(3.0)}, opt.init({"w": jnp.array(1.0)}))
    >>> round(float(updates["w"]), 6)  # the first step is ≈ −η·sign(g)
    -0.001
    """
    lr = check_positive("learning_rate", learning_rate)
    b1 = check_fraction("beta1", beta1)
    b2 = check_fraction("beta2", beta2)

    def init(params: Any) -> AdamState:
        return AdamState(count=jnp.zeros((), jnp.int32), m=_zeros_like(params),
                         v=_zeros_like(params))

    def update(updates: Any, state: AdamState, params: Any = None):
        del params
        count = optax.safe_increment(state.count)
        t = count.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
        lr_t = lr * jnp.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        m = jax.tree.map(lambda m, g: (m + (1 - b1) * (g - m)).astype(g.dtype),
                         state.m, updates)
        v = jax.tree.map(lambda v, g: (v + (1 - b2) * (g * g - v)).astype(g.dtype),
                         state.v, updates)
        steps = jax.tree.map(
            lambda m, v, g: (-(lr_t * m / (jnp.sqrt(v) + EPS))).astype(g.dtype), m, v, updates)
        return steps, AdamState(count=count, m=m, v=v)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------------
# The closest optax calls, with the book's constants and the same argument checks.


def _optax_sgd(learning_rate: float) -> optax.GradientTransformation:
    return optax.sgd(check_positive("learning_rate", learning_rate))


def _optax_momentum(learning_rate: float, momentum: float = 0.9) -> optax.GradientTransformation:
    return optax.sgd(check_positive("learning_rate", learning_rate),
                     momentum=check_fraction("momentum", momentum))


def _optax_nesterov(learning_rate: float, momentum: float = 0.9) -> optax.GradientTransformation:
    return optax.sgd(check_positive("learning_rate", learning_rate),
                     momentum=check_fraction("momentum", momentum), nesterov=True)


def _optax_adagrad(learning_rate: float) -> optax.GradientTransformation:
    return optax.adagrad(check_positive("learning_rate", learning_rate),
                         initial_accumulator_value=0.0, eps=0.0)


def _optax_rmsprop(learning_rate: float, decay_rate: float = 0.99) -> optax.GradientTransformation:
    return optax.rmsprop(check_positive("learning_rate", learning_rate),
                         decay=check_fraction("decay_rate", decay_rate), eps=EPS,
                         eps_in_sqrt=False)


def _optax_adam(learning_rate: float = 0.001, beta1: float = 0.9,
                beta2: float = 0.999) -> optax.GradientTransformation:
    return optax.adam(check_positive("learning_rate", learning_rate),
                      b1=check_fraction("beta1", beta1), b2=check_fraction("beta2", beta2),
                      eps=EPS)


# ---------------------------------------------------------------------------------------------
# The registry read by the CLI.


@dataclass(frozen=True)
class OptimizerSpec:
    """One ``--optimizer`` choice.

    ``build(learning_rate, **hyperparams)`` returns the transformation; ``hyperparams`` maps
    each keyword hyperparameter it takes (beyond the learning rate) to its default; ``summary``
    is one line for ``--help``. CLI flags are ``--`` + the name with ``_`` → ``-``.
    """

    build: Callable[..., optax.GradientTransformation]
    hyperparams: Mapping[str, float]
    summary: str


def _spec(build: Callable[..., optax.GradientTransformation], summary: str,
          **hyperparams: float) -> OptimizerSpec:
    return OptimizerSpec(build, MappingProxyType(hyperparams), summary)


OPTIMIZERS: Mapping[str, OptimizerSpec] = MappingProxyType({
    "sgd": _spec(sgd, "θ ← θ − η·g (by hand)"),
    "momentum": _spec(momentum, "the book's Momentum (by hand)", momentum=0.9),
    "nesterov": _spec(nesterov, "the book's Nesterov (by hand)", momentum=0.9),
    "adagrad": _spec(adagrad, "the book's AdaGrad, h₀ = 0, ε = 1e-7 outside the root (by hand)"),
    "rmsprop": _spec(rmsprop, "the book's RMSprop (by hand)", decay_rate=0.99),
    "adam": _spec(adam, "the book's Adam, lr_t form, ε = 1e-7 on √v (by hand)",
                  beta1=0.9, beta2=0.999),
    "optax-sgd": _spec(_optax_sgd, "optax.sgd(lr)"),
    "optax-momentum": _spec(_optax_momentum, "optax.sgd(lr, momentum)", momentum=0.9),
    "optax-nesterov": _spec(_optax_nesterov, "optax.sgd(lr, momentum, nesterov=True)",
                            momentum=0.9),
    "optax-adagrad": _spec(_optax_adagrad,
                           "optax.adagrad(lr, initial_accumulator_value=0, eps=0)"),
    "optax-rmsprop": _spec(_optax_rmsprop,
                           "optax.rmsprop(lr, decay, eps=1e-7, eps_in_sqrt=False)",
                           decay_rate=0.99),
    "optax-adam": _spec(_optax_adam, "optax.adam(lr, b1, b2, eps=1e-7)", beta1=0.9, beta2=0.999),
})
"""``--optimizer`` name → :class:`OptimizerSpec`: the book's six by hand and the closest
optax call for each (``optax-*``, given the book's constants where optax has a choice)."""

HYPERPARAMETERS: tuple[str, ...] = ("momentum", "beta1", "beta2", "decay_rate")
"""Every hyperparameter some optimiser in :data:`OPTIMIZERS` takes (CLI: ``--momentum``,
``--beta1``, ``--beta2``, ``--decay-rate``)."""


def get_optimizer(name: str, learning_rate: float,
                  **hyperparams: float) -> optax.GradientTransformation:
    """The optimiser :data:`OPTIMIZERS` names ``name``, built with ``learning_rate`` and the
    given hyperparameters (the rest at the book's defaults).

    Raises ``ValueError`` for an unknown name, a hyperparameter that optimiser does not take
    (e.g. ``beta1`` for ``momentum``), or a value out of range.

    >>> get_optimizer("adam", 0.001, beta2=0.99)  # doctest: +ELLIPSIS
    GradientTransformation(init=<function adam.<locals>.init at ...>, ...)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}; got {name!r}")
    spec = OPTIMIZERS[name]
    unknown = sorted(set(hyperparams) - set(spec.hyperparams))
    if unknown:
        takes = ", ".join(spec.hyperparams) or "only learning_rate"
        raise ValueError(f"optimizer {name!r} takes no hyperparameter {unknown[0]!r}; "
                         f"it takes {takes}")
    return spec.build(learning_rate, **hyperparams)


# ---------------------------------------------------------------------------------------------
# Weight decay.


def _leaf_name(path: tuple) -> object:
    """The last key on a pytree path: a dict key, or an attribute name (NamedTuple fields)."""
    if not path:
        return None
    last = path[-1]
    if isinstance(last, jax.tree_util.DictKey):
        return last.key
    if isinstance(last, jax.tree_util.GetAttrKey):
        return last.name
    return None


def weight_mask(params: Any, *, names: Collection[str] = ("W",)) -> Any:
    """A pytree of bools shaped like ``params``: True for the weights that decay.

    The rule: a leaf is a weight when its own key is in ``names`` (default ``"W"``), as in
    the book, which decays only the ``W`` of its Affine (and Convolution) layers. So affine
    ``W (D, H)`` and conv kernels ``W (FN, C, FH, FW)`` decay; biases ``b``, batch-norm
    ``gamma``/``beta`` and anything else do not. Batch-norm running statistics are state,
    not params, and never reach an optimiser. Usable as ``mask=`` of
    ``optax.add_decayed_weights`` (a callable of params).

    >>> import jax.numpy as jnp
    >>> weight_mask({"affine1": {"W": jnp.ones((2, 3)), "b": jnp.zeros(3)}})
    {'affine1': {'W': True, 'b': False}}
    """
    names = frozenset(names)
    return jax.tree_util.tree_map_with_path(lambda path, _: _leaf_name(path) in names, params)


def weight_decay_penalty(params: Any, weight_decay: float) -> jax.Array:
    """The book's weight-decay term, ``½·λ·Σ_W ΣW²`` over the leaves :func:`weight_mask`
    marks (biases excluded); add it to the loss. Its gradient is ``λ·W`` on weights, 0
    elsewhere. A 0-d array; 0 when there are no weights.

    >>> import jax.numpy as jnp
    >>> params = {"affine1": {"W": jnp.array([[1.0, 2.0]]), "b": jnp.array([5.0])}}
    >>> float(weight_decay_penalty(params, 0.1))  # 0.5·0.1·(1 + 4)
    0.25
    """
    lam = check_non_negative("weight_decay", weight_decay)
    leaves = jax.tree.leaves(params)
    mask = jax.tree.leaves(weight_mask(params))
    total = sum(jnp.sum(jnp.square(w)) for w, is_w in zip(leaves, mask, strict=True) if is_w)
    return jnp.asarray(0.5 * lam * total)


def with_weight_decay(optimizer: optax.GradientTransformation,
                      weight_decay: float) -> optax.GradientTransformation:
    """``optimizer`` fed ``g + λ·W`` on the weights (``g`` elsewhere): the gradient of
    ``loss + weight_decay_penalty(params, λ)``, without touching the loss. It is
    ``optax.chain(optax.add_decayed_weights(λ, mask=weight_mask), optimizer)``, so ``update``
    needs ``params``. With λ = 0 it returns ``optimizer`` itself (same state layout).
    """
    lam = check_non_negative("weight_decay", weight_decay)
    if isinstance(lam, float) and lam == 0.0:
        return optimizer
    return optax.chain(optax.add_decayed_weights(lam, mask=weight_mask), optimizer)


def default_learning_rate(name: str) -> float:
    """The learning rate ``fnnet train --optimizer name`` uses when ``--lr`` is not given:
    0.1 for SGD (the book's chapter 5), 0.001 for Adam, 0.01 for the others (chapter 6).

    >>> default_learning_rate("adam"), default_learning_rate("optax-momentum")
    (0.001, 0.01)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}; got {name!r}")
    base = name.removeprefix("optax-")
    return {"sgd": 0.1, "adam": 0.001}.get(base, 0.01)
