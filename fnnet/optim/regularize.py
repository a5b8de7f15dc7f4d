"""Regularising the update: the book's weight decay (section 6.4.1, ``½λ·ΣW²`` over the
weights, not the biases, added to the loss) and the sequel's gradient clipping by global norm
(its chapter 6)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp
import optax

from fnnet._checks import check_non_negative, check_positive


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


# --- gradient clipping ----------------------------------------------------------------------


def global_norm(grads: Any) -> jax.Array:
    """``√(Σ over every leaf of Σ g²)``, in at least float32."""
    leaves = jax.tree.leaves(grads)
    total = sum(jnp.sum(jnp.square(g.astype(jnp.promote_types(g.dtype, jnp.float32))))
                for g in leaves)
    return jnp.sqrt(jnp.asarray(total))


def clip_grads(max_norm: float) -> optax.GradientTransformation:
    """The sequel's ``clip_grads`` (its ``common/util.py``) as an optax transformation:

        n = √(Σ g²) over all parameters,   rate = max_norm / (n + 1e-6),
        g ← g·rate   when rate < 1   (else unchanged)

    It differs from ``optax.clip_by_global_norm(max_norm)`` (``g·max_norm/n`` when
    ``n > max_norm``) only through the book's 1e-6: the scales differ by the factor
    ``n/(n + 1e-6)``, a relative ``1e-6/n``, and the book clips once ``n > max_norm − 1e-6``.
    The book's function scales the arrays in place; this one returns new ones. Stateless.

    >>> import jax.numpy as jnp
    >>> updates, _ = clip_grads(1.0).update({"w": jnp.array([3.0, 4.0])}, optax.EmptyState())
    >>> [round(float(u), 5) for u in updates["w"]]  # norm 5 → scaled by 1/(5 + 1e-6)
    [0.6, 0.8]
    """
    max_norm = check_positive("max_norm", max_norm)

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: optax.EmptyState, params: Any = None):
        del params
        rate = max_norm / (global_norm(updates) + 1e-6)
        scale = jnp.where(rate < 1, rate, 1.0)
        return jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)
