"""The ``--optimizer`` registry: the book's optimisers by hand and the closest optax call for
each, by name, with the hyperparameters each takes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import optax

from fnnet._checks import check_fraction, check_positive
from fnnet.optim.book import (
    EPS,
    NESTEROV_FORMS,
    adagrad,
    adam,
    momentum,
    nesterov,
    rmsprop,
    sgd,
)


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
    "nesterov": _spec(nesterov, "Nesterov as either book writes it (by hand; --nesterov-form)",
                      momentum=0.9, form="dlfs1"),
    "adagrad": _spec(adagrad, "the book's AdaGrad, h₀ = 0, ε = 1e-7 outside the root (by hand)"),
    "rmsprop": _spec(rmsprop, "the book's RMSprop (by hand)", decay_rate=0.99),
    "adam": _spec(adam, "the book's Adam, lr_t form, ε = 1e-7 on √v (by hand)",
                  beta1=0.9, beta2=0.999),
    "optax-sgd": _spec(_optax_sgd, "optax.sgd(lr)"),
    "optax-momentum": _spec(_optax_momentum, "optax.sgd(lr, momentum)", momentum=0.9),
    "optax-nesterov": _spec(_optax_nesterov, "optax.sgd(lr, momentum, nesterov=True) (= the "
                                              "first book's Nesterov)",
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
"""Every number in [0, 1) some optimiser in :data:`OPTIMIZERS` takes (CLI: ``--momentum``,
``--beta1``, ``--beta2``, ``--decay-rate``)."""

CHOICES: Mapping[str, tuple[str, ...]] = MappingProxyType({"form": NESTEROV_FORMS})
"""The hyperparameters that are a choice of names: Nesterov's ``form`` (CLI:
``--nesterov-form``)."""


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
