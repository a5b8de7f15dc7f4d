"""The book's optimisers (chapter 6, ``common/optimizer.py``) written by hand as optax
transformations.

Each is an ``optax.GradientTransformation`` (``init(params) -> state``,
``update(grads, state, params=None) -> (updates, state)``; state a NamedTuple of pytrees
shaped like ``params``), so it composes with ``optax.chain`` and plugs into the same train
step as the optax ones. Applied with ``optax.apply_updates`` (``θ ← θ + u``), each computes
the book's update with its constants (ε = 1e-7). Updates keep the gradients' dtype.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fnnet._checks import check_fraction, check_positive

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


NESTEROV_FORMS = ("dlfs1", "dlfs2")
"""The two books' Nesterov: ``dlfs1`` (*Deep Learning from Scratch*, chapter 6) and ``dlfs2``
(its sequel's ``common/optimizer.py``)."""


def nesterov(learning_rate: float, momentum: float = 0.9, *,
             form: str = "dlfs1") -> optax.GradientTransformation:
    """Nesterov's accelerated gradient as either book writes it, with α = ``momentum``
    (``v₀ = 0``), per leaf:

    * ``form="dlfs1"`` (the first book, whose chapter 6 the rest of this module follows; the
      default): θ first, with the *old* velocity, then the velocity::

        θ ← θ + α²·v − (1 + α)·η·g
        v ← α·v − η·g

      This is ``optax.sgd(η, momentum=α, nesterov=True)`` (Sutskever et al.'s form: optax
      keeps t = g + α·t and steps −η·(g + α·t), which is the above with v = −η·t), equal up
      to rounding.
    * ``form="dlfs2"`` (the sequel): the velocity first, then θ with the *new* one::

        v ← α·v − η·g
        θ ← θ + α²·v − (1 + α)·η·g

      For the same gradients its parameters run ahead of the first form's by exactly α²·v
      (the current velocity) after every step.

    >>> import jax.numpy as jnp
    >>> params, g = {"w": jnp.array(1.0)}, {"w": jnp.array(1.0)}
    >>> for form in NESTEROV_FORMS:  # first step: α²·0 − 1.5·0.1 and α²·(−0.1) − 1.5·0.1
    ...     opt = nesterov(0.1, momentum=0.5, form=form)
    ...     print(form, round(float(opt.update(g, opt.init(params))[0]["w"]), 6))
    dlfs1 -0.15
    dlfs2 -0.175
    """
    lr = check_positive("learning_rate", learning_rate)
    alpha = check_fraction("momentum", momentum)
    if form not in NESTEROV_FORMS:
        raise ValueError(f"form must be one of {NESTEROV_FORMS}; got {form!r}")

    def init(params: Any) -> MomentumState:
        return MomentumState(velocity=_zeros_like(params))

    def update(updates: Any, state: MomentumState, params: Any = None):
        del params
        velocity = jax.tree.map(lambda v, g: (alpha * v - lr * g).astype(g.dtype),
                                state.velocity, updates)
        ahead = velocity if form == "dlfs2" else state.velocity
        steps = jax.tree.map(
            lambda v, g: (alpha * alpha * v - (1 + alpha) * lr * g).astype(g.dtype),
            ahead, updates)
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
