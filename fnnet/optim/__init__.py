"""The books' optimisers written by hand, a registry for ``--optimizer``, weight decay and
gradient clipping.

* :mod:`fnnet.optim.book` — SGD, Momentum, Nesterov (both books' forms), AdaGrad, RMSprop and
  Adam as ``optax.GradientTransformation`` s computing the book's ``common/optimizer.py``;
* :mod:`fnnet.optim.registry` — :data:`OPTIMIZERS` (each ``--optimizer`` name: builder and
  hyperparameters, with the closest optax call as ``optax-*``), :func:`get_optimizer`;
* :mod:`fnnet.optim.regularize` — the book's weight decay (:func:`weight_decay_penalty`,
  :func:`weight_mask`, :func:`with_weight_decay`) and the sequel's :func:`clip_grads`.
"""

from fnnet.optim.book import (
    EPS,
    NESTEROV_FORMS,
    AdaGradState,
    AdamState,
    MomentumState,
    RMSpropState,
    adagrad,
    adam,
    momentum,
    nesterov,
    rmsprop,
    sgd,
    sgd_update,
)
from fnnet.optim.registry import (
    CHOICES,
    HYPERPARAMETERS,
    OPTIMIZERS,
    OptimizerSpec,
    default_learning_rate,
    get_optimizer,
)
from fnnet.optim.regularize import (
    clip_grads,
    global_norm,
    weight_decay_penalty,
    weight_mask,
    with_weight_decay,
)

__all__ = [
    "CHOICES",
    "EPS",
    "HYPERPARAMETERS",
    "NESTEROV_FORMS",
    "OPTIMIZERS",
    "AdaGradState",
    "AdamState",
    "MomentumState",
    "OptimizerSpec",
    "RMSpropState",
    "adagrad",
    "adam",
    "clip_grads",
    "default_learning_rate",
    "get_optimizer",
    "global_norm",
    "momentum",
    "nesterov",
    "rmsprop",
    "sgd",
    "sgd_update",
    "weight_decay_penalty",
    "weight_mask",
    "with_weight_decay",
]
