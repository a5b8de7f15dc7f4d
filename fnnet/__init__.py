"""fnnet: the "Deep Learning from Scratch" network in functional JAX, with every backward rule
written by hand as a ``jax.custom_vjp`` and checked against ``jax.grad``.

* :mod:`fnnet.manual` — the ops with hand-derived backward rules;
* :mod:`fnnet.autodiff` — the same ops in plain ``jax.numpy`` (gradients by ``jax.grad``);
* :func:`two_layer_net`, :func:`multi_layer_net` — the book's networks as pure functions.
"""

from fnnet import autodiff as autodiff
from fnnet import manual as manual
from fnnet.layers import Model as Model
from fnnet.layers import multi_layer_net as multi_layer_net
from fnnet.layers import two_layer_net as two_layer_net

__version__ = "0.1.0"
