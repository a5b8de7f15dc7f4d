"""Layers as pure ``(init, apply)`` pairs over shapes, params, state and keys; the book's nets.

A :class:`Layer` is two pure functions (stax's ``(init_fun, apply_fun)`` with Haiku's
``transform_with_state``):

* ``init(key, input_shape) -> (output_shape, params, state)``;
* ``apply(params, state, x, *, key=None, train=False) -> (y, state)``.

Shapes exclude the batch axis: an MLP layer sees ``(D,)``, a conv layer ``(C, H, W)``, the
sequel's layers over word sequences ``(T,)`` ids or ``(T, D)`` vectors. A layer without
parameters or state returns empty dicts ``{}``.

The layers: :func:`affine_layer`, :func:`activation_layer`, :func:`flatten_layer`,
:func:`conv_layer`, :func:`max_pool_layer`, :func:`dropout_layer` (any shape: also the
sequel's TimeDropout), :func:`batch_norm_layer`; for sequences :func:`embedding_layer`,
:func:`recurrent_layer` (TimeRNN/TimeLSTM/TimeGRU; its carried ``h``/``c`` is state, an
empty state meaning zeros) and :func:`time_affine_layer`. ``key`` is the only source of
randomness (dropout); ``train`` switches batch statistics and dropout on.

:func:`serial` chains named layers: its params and state are dicts keyed by layer name holding
only the layers that have any, e.g. ``{"affine1": {"W": …, "b": …}, "affine2": {…}}``; it
threads the state through and splits the key, one per layer.

A :class:`Model` is a classifier built on a network: ``init``, ``apply``, ``loss`` and
``accuracy`` as pure functions of a parameter pytree. For a net without state or randomness
``jax.grad(net.loss)(params, x, t)`` is all it takes; nets with state use
``loss_and_state`` with ``has_aux=True``.

The ``grads`` switch (``"manual"`` or ``"autodiff"``) picks the ops for a whole model: the
hand rules of :mod:`fnnet.manual` or the references of :mod:`fnnet.autodiff`. The forward
values and the parameter pytrees are the same, so params move freely between the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnnet import autodiff, manual
from fnnet._checks import check_fraction, check_int, check_non_negative
from fnnet.init import Initializer, draws_as_one, resolve
from fnnet.ops.norm import batch_norm_statistics
from fnnet.optim import weight_decay_penalty

Shape = tuple[int, ...]
Params = dict[str, Any]
State = dict[str, Any]
GRADS = ("manual", "autodiff")
ACTIVATIONS = ("relu", "sigmoid", "tanh")


class Layer(NamedTuple):
    """``init(key, input_shape) -> (output_shape, params, state)`` and
    ``apply(params, state, x, *, key=None, train=False) -> (y, state)``."""

    init: Callable[[jax.Array, Shape], tuple[Shape, Params, State]]
    apply: Callable[..., tuple[jax.Array, State]]


class Model(NamedTuple):
    """A classifier as pure functions of a parameter pytree (``t``: class indices ``(N,)`` or
    one-hot rows ``(N, C)``).

    * ``init(key) -> params``; ``init_state() -> state`` (``{}`` for nets without state);
    * ``apply(params, x, *, state=None, key=None, train=False) -> logits``;
    * ``loss(params, x, t, *, state=None, key=None, train=True) -> scalar``: softmax
      cross-entropy, batch mean (a training-mode state update is discarded);
    * ``loss_and_state(params, state, x, t, *, key=None) -> (loss, new_state)``: the training
      loss and the updated state, for ``jax.value_and_grad(..., has_aux=True)``;
    * ``accuracy(params, x, t, *, state=None) -> scalar``: fraction of argmax hits, eval mode;
    * ``input_shape``, ``output_shape``: one example's shapes (no batch axis); the last axis
      of ``output_shape`` is the classes, so integer labels are ``(N, *output_shape[:-1])``;
    * ``input_range``: None for floating inputs; ``V`` for integer inputs (word ids) in
      ``[0, V)``.

    The models of the sequel (word2vec, seq2seq) are Models too: their ``accuracy`` is what
    the book scores them by.
    """

    init: Callable[[jax.Array], Params]
    init_state: Callable[[], State]
    apply: Callable[..., jax.Array]
    loss: Callable[..., jax.Array]
    loss_and_state: Callable[..., tuple[jax.Array, State]]
    accuracy: Callable[..., jax.Array]
    input_shape: Shape
    output_shape: Shape
    input_range: int | None = None


def ops_for(grads: str) -> ModuleType:
    """The op namespace for ``grads="manual"`` (hand rules) or ``"autodiff"`` (references)."""
    if grads == "manual":
        return manual
    if grads == "autodiff":
        return autodiff
    raise ValueError(f"grads must be one of {GRADS}; got {grads!r}")


def output_size(size: int, window: int, stride: int, pad: int, axis: str) -> int:
    """``(size + 2·pad − window)//stride + 1``, or a ``ValueError`` when the window does not
    fit the padded input along ``axis``."""
    if window > size + 2 * pad:
        raise ValueError(f"a window of {window} does not fit the {axis} {size} padded by {pad} "
                         f"on each side")
    return (size + 2 * pad - window) // stride + 1


def _stateless(init: Callable[[jax.Array, Shape], tuple[Shape, Params]],
               fn: Callable[[Params, jax.Array], jax.Array]) -> Layer:
    """A layer without state or randomness: ``init -> (shape, params)`` and ``fn(params, x)``."""

    def init_with_state(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        return (*init(key, tuple(input_shape)), {})

    def apply(params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None,
              train: bool = False) -> tuple[jax.Array, State]:
        del key, train
        return fn(params, x), state

    return Layer(init_with_state, apply)


def affine_layer(
    output_size: int,
    *,
    weight_init: str | float | Initializer = "normal",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """Affine layer ``y = x·W + b`` over the last axis: ``(…, D) -> (…, M)``; ``W (D, M)`` from
    ``weight_init``, ``b = 0``."""
    output_size = check_int("output_size", output_size)
    initializer = resolve(weight_init)
    affine = ops_for(grads).affine

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        if len(input_shape) < 1:
            raise ValueError(f"affine layer: input shape must have a feature axis (…, D); "
                             f"got {input_shape}")
        W = initializer(key, (input_shape[-1], output_size), dtype)
        return (*input_shape[:-1], output_size), {"W": W, "b": jnp.zeros((output_size,), dtype)}

    return _stateless(init, lambda params, x: affine(x, params["W"], params["b"]))


def activation_layer(name: str, *, grads: str = "manual") -> Layer:
    """Elementwise activation (``"relu"``, ``"sigmoid"`` or ``"tanh"``), any input shape."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {name!r}")
    fn = getattr(ops_for(grads), name)
    return _stateless(lambda key, shape: (shape, {}), lambda params, x: fn(x))


def flatten_layer() -> Layer:
    """``(C, H, W) -> (C·H·W,)`` (any shape to one axis), row-major as the book's reshape."""
    return _stateless(lambda key, shape: ((math.prod(shape),), {}),
                      lambda params, x: x.reshape(x.shape[0], -1))


def conv_layer(
    filters: int,
    kernel: int | tuple[int, int],
    *,
    stride: int = 1,
    pad: int = 0,
    weight_init: str | float | Initializer = "he",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """The book's Convolution layer: ``(C, H, W) -> (FN, OH, OW)`` with ``W (FN, C, FH, FW)``
    from ``weight_init`` (fan-in ``C·FH·FW``) and ``b = 0``; ``OH = (H + 2·pad − FH)//stride
    + 1`` (see :func:`fnnet.ops.conv.conv2d`)."""
    filters = check_int("filters", filters)
    fh, fw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    fh, fw = check_int("kernel height", fh), check_int("kernel width", fw)
    stride, pad = check_int("stride", stride), check_int("pad", pad, minimum=0)
    initializer = resolve(weight_init)
    conv2d = ops_for(grads).conv2d

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        if len(input_shape) != 3:
            raise ValueError(f"conv layer: input shape must be (C, H, W); got {input_shape}")
        c, h, w = input_shape
        oh, ow = (output_size(h, fh, stride, pad, "height"),
                  output_size(w, fw, stride, pad, "width"))
        W = initializer(key, (filters, c, fh, fw), dtype)
        return (filters, oh, ow), {"W": W, "b": jnp.zeros((filters,), dtype)}

    return _stateless(init, lambda params, x: conv2d(x, params["W"], params["b"],
                                                     stride=stride, pad=pad))


def max_pool_layer(pool: int | tuple[int, int] = 2, *, stride: int | None = None,
                   pad: int = 0, grads: str = "manual") -> Layer:
    """The book's Pooling layer (max): ``(C, H, W) -> (C, OH, OW)``; ``stride`` defaults to
    the pool height, as in the book (see :func:`fnnet.ops.conv.max_pool2d`)."""
    ph, pw = (pool, pool) if isinstance(pool, int) else tuple(pool)
    ph, pw = check_int("pool height", ph), check_int("pool width", pw)
    stride = ph if stride is None else check_int("stride", stride)
    pad = check_int("pad", pad, minimum=0)
    max_pool2d = ops_for(grads).max_pool2d

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        if len(input_shape) != 3:
            raise ValueError(f"pool layer: input shape must be (C, H, W); got {input_shape}")
        c, h, w = input_shape
        return (c, output_size(h, ph, stride, pad, "height"),
                output_size(w, pw, stride, pad, "width")), {}

    return _stateless(init, lambda params, x: max_pool2d(x, pool_h=ph, pool_w=pw,
                                                         stride=stride, pad=pad))


def dropout_layer(rate: float, *, scale_at: str = "train", grads: str = "manual") -> Layer:
    """The book's Dropout layer: in training mode each unit is dropped with probability
    ``rate`` using the layer's ``key``; in eval mode the identity (inverted dropout, scaled by
    ``1/(1 − rate)`` at train time) or, with ``scale_at="test"``, the book's ``x·(1 − rate)``.
    A training-mode call needs a key."""
    rate = check_fraction("dropout rate", rate)
    dropout = ops_for(grads).dropout

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        return tuple(input_shape), {}, {}

    def apply(params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None,
              train: bool = False) -> tuple[jax.Array, State]:
        if train and rate > 0 and key is None:
            raise ValueError("dropout layer: training mode needs a key (pass key=...; fit and "
                             "the train step do)")
        return dropout(x, key, rate=rate, train=train, scale_at=scale_at), state

    return Layer(init, apply)


def batch_norm_layer(*, momentum: float = 0.9, eps: float = 1e-5,
                     grads: str = "manual", dtype: jnp.dtype = jnp.float32) -> Layer:
    """The book's BatchNormalization layer over ``(D,)`` features or ``(C, H, W)`` channels.

    Params ``gamma = 1``, ``beta = 0``; state: the running ``mean`` (0) and ``var`` (1). In
    training mode it normalises with the batch's statistics (:func:`fnnet.ops.norm.batch_norm`,
    the hand rule) and returns the state ``running ← momentum·running + (1 − momentum)·batch``
    (the book's momentum 0.9; the statistics carry no gradient); in eval mode it normalises
    with the running statistics (:func:`fnnet.ops.norm.batch_norm_inference`).

    The running variance starts at 1 (as PyTorch and Keras do), the book's at 0: with tiny
    initial weights the book's 0 makes eval mode agree with the batch statistics sooner (its
    running variance is then close to the small batch variances), fnnet's 1 for the first few
    epochs less so; training is the same. ``experiments/batch_norm_comparison.py`` starts at
    0 like the book (``--running-var-init``).
    """
    momentum = check_fraction("batch norm momentum", momentum)
    ops = ops_for(grads)

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        if len(input_shape) not in (1, 3):
            raise ValueError(f"batch norm layer: input shape must be (D,) or (C, H, W); got "
                             f"{input_shape}")
        features = (input_shape[0],)
        return (tuple(input_shape), {"gamma": jnp.ones(features, dtype),
                                     "beta": jnp.zeros(features, dtype)},
                {"mean": jnp.zeros(features, jnp.float32),
                 "var": jnp.ones(features, jnp.float32)})

    def apply(params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None,
              train: bool = False) -> tuple[jax.Array, State]:
        del key
        if not state:
            raise ValueError("batch norm layer: needs its running statistics; pass the "
                             "model's state (model.init_state(), or the state training "
                             "returned)")
        if not train:
            return ops.batch_norm_inference(x, params["gamma"], params["beta"],
                                            state["mean"].astype(x.dtype),
                                            state["var"].astype(x.dtype), eps=eps), state
        y = ops.batch_norm(x, params["gamma"], params["beta"], eps=eps)
        mean, var = jax.lax.stop_gradient(batch_norm_statistics(x))
        new_state = {name: momentum * state[name] + (1 - momentum) * batch.astype(jnp.float32)
                     for name, batch in (("mean", mean), ("var", var))}
        return y, new_state

    return Layer(init, apply)


# --- the sequel's layers: word ids, recurrent cells over time, time-distributed affine -------

CELLS = ("rnn", "lstm", "gru")
"""The recurrent cells :func:`recurrent_layer` takes (the book's TimeRNN, TimeLSTM, TimeGRU)."""
_CARRIED = {"rnn": ("h",), "lstm": ("h", "c"), "gru": ("h",)}
_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}


def embedding_layer(
    vocabulary_size: int,
    vector_size: int,
    *,
    weight_init: str | float | Initializer = 0.01,
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """The sequel's (Time)Embedding layer: integer ids ``(…)`` → rows of ``W`` ``(…, D)``.

    Params ``{"W": (V, D)}`` from ``weight_init`` (the book's ``randn(V, D)/100``: a normal of
    std 0.01). Backward: the scatter-add of :func:`fnnet.ops.embedding.embedding`.
    """
    vocabulary_size = check_int("vocabulary_size", vocabulary_size)
    vector_size = check_int("vector_size", vector_size)
    initializer = resolve(weight_init)
    embedding = ops_for(grads).embedding

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        return ((*input_shape, vector_size),
                {"W": initializer(key, (vocabulary_size, vector_size), dtype)})

    return _stateless(init, lambda params, ids: embedding(params["W"], ids))


def recurrent_layer(
    cell: str,
    hidden_size: int,
    *,
    stateful: bool = False,
    weight_init: str | float | Initializer = "xavier",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """The book's TimeRNN / TimeLSTM / TimeGRU: ``(T, D) → (T, H)`` with the hand BPTT of
    :mod:`fnnet.ops.bptt` (``cell`` one of :data:`CELLS`).

    Params ``{"Wx": (D, k·H), "Wh": (H, k·H), "b": (k·H,)}`` (``k`` = 1, 4 (f, g, i, o) or
    3 (z, r, h̃)); ``Wx`` and ``Wh`` from ``weight_init`` (the book's ``randn/√fan_in``:
    ``"xavier"``), ``b = 0``.

    State: the carried ``h`` (and the LSTM's ``c``), each ``(N, H)``. An empty state (``{}``,
    what ``init`` returns) means zeros. With ``stateful=True`` (the book's
    ``stateful=True``) the layer starts from the state it is given and returns its final
    ``h`` (``c``) as the new state, so truncated BPTT carries it from one chunk of a
    sequence to the next (no gradient crosses chunks: the state is an input, not a
    parameter); with ``stateful=False`` every call starts from zeros and the state stays
    ``{}``.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}; got {cell!r}")
    hidden_size = check_int("hidden_size", hidden_size)
    initializer = resolve(weight_init)
    time_op = getattr(ops_for(grads), f"time_{cell}")
    k = _BLOCKS[cell]

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        if len(input_shape) != 2:
            raise ValueError(f"{cell} layer: input shape must be (T, D); got {input_shape}")
        T, D = input_shape
        key_x, key_h = jax.random.split(key)
        return ((T, hidden_size),
                {"Wx": initializer(key_x, (D, k * hidden_size), dtype),
                 "Wh": initializer(key_h, (hidden_size, k * hidden_size), dtype),
                 "b": jnp.zeros((k * hidden_size,), dtype)}, {})

    def apply(params: Params, state: State, xs: jax.Array, *, key: jax.Array | None = None,
              train: bool = False) -> tuple[jax.Array, State]:
        del key, train
        zeros = jnp.zeros((xs.shape[0], hidden_size), xs.dtype)
        carried = [state.get(name, zeros) if stateful else zeros for name in _CARRIED[cell]]
        hs, *final = time_op(xs, *carried, params["Wx"], params["Wh"], params["b"])
        return hs, (dict(zip(_CARRIED[cell], final, strict=True)) if stateful else {})

    return Layer(init, apply)


def time_affine_layer(
    output_size: int,
    *,
    weight_init: str | float | Initializer = "xavier",
    grads: str = "manual",
    dtype: jnp.dtype = jnp.float32,
) -> Layer:
    """The book's TimeAffine: ``(T, D) → (T, M)``, the same ``x·W + b`` at every step
    (:func:`fnnet.ops.time_layers.time_affine`); ``W (D, M)`` from ``weight_init`` (the
    book's ``randn(D, M)/√D``: ``"xavier"``), ``b = 0``."""
    output_size = check_int("output_size", output_size)
    initializer = resolve(weight_init)
    time_affine = ops_for(grads).time_affine

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params]:
        if len(input_shape) != 2:
            raise ValueError(f"time affine layer: input shape must be (T, D); got {input_shape}")
        W = initializer(key, (input_shape[-1], output_size), dtype)
        return (input_shape[0], output_size), {"W": W, "b": jnp.zeros((output_size,), dtype)}

    return _stateless(init, lambda params, xs: time_affine(xs, params["W"], params["b"]))


def serial(*named_layers: tuple[str, Layer]) -> Layer:
    """Chain ``(name, layer)`` pairs; params and state are ``{name: …}`` for layers having any.

    ``apply`` splits ``key`` into one key per layer (``None`` stays ``None``) and returns the
    new state of every stateful layer.
    """
    names = [name for name, _ in named_layers]
    if len(set(names)) != len(names):
        raise ValueError(f"serial: layer names must be unique; got {names}")

    def init(key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        params: Params = {}
        state: State = {}
        keys = jax.random.split(key, len(named_layers))
        shape = tuple(input_shape)
        for layer_key, (name, layer) in zip(keys, named_layers, strict=True):
            shape, layer_params, layer_state = layer.init(layer_key, shape)
            if layer_params:
                params[name] = layer_params
            if layer_state:
                state[name] = layer_state
        return shape, params, state

    def apply(params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None,
              train: bool = False) -> tuple[jax.Array, State]:
        keys = [None] * len(named_layers) if key is None else jax.random.split(key,
                                                                               len(named_layers))
        new_state: State = {}
        for layer_key, (name, layer) in zip(keys, named_layers, strict=True):
            x, layer_state = layer.apply(params.get(name, {}), state.get(name, {}), x,
                                         key=layer_key, train=train)
            if layer_state:
                new_state[name] = layer_state
        return x, new_state

    return Layer(init, apply)


def output_shape_of(layer: Layer, input_shape: Shape) -> Shape:
    """The output shape ``layer.init`` announces for ``input_shape``, without computing params."""
    shapes: list[Shape] = []

    def trace() -> None:
        shapes.append(tuple(layer.init(jax.random.key(0), tuple(input_shape))[0]))

    jax.eval_shape(trace)
    return shapes[0]


def classifier(network: Layer, input_shape: Shape, *, grads: str = "manual",
               weight_decay: float = 0.0) -> Model:
    """A :class:`Model` with the book's Softmax-with-Loss on top of ``network``'s logits.

    With ``weight_decay = λ > 0`` the training loss (``loss_and_state``, and ``loss`` with
    ``train=True``) is the book's ``L + ½·λ·ΣW²`` over the weights, not the biases
    (:func:`fnnet.optim.weight_decay_penalty`); in eval mode the loss is the data loss alone,
    so reported test losses compare across λ.
    """
    input_shape = tuple(input_shape)
    weight_decay = check_non_negative("weight_decay", weight_decay)

    def with_decay(data_loss: jax.Array, params: Params) -> jax.Array:
        return data_loss + weight_decay_penalty(params, weight_decay) if weight_decay else data_loss
    output_shape = output_shape_of(network, input_shape)
    ops = ops_for(grads)

    # The init's draws as one batched draw (fnnet.init.draws_as_one); called with a concrete
    # key, one compiled program fed with the keys derived on the host. The state's initial
    # values never depend on the key, and jit drops the params.
    init = draws_as_one(lambda key: network.init(key, input_shape)[1])
    initial_state = jax.jit(lambda: network.init(jax.random.key(0), input_shape)[2])

    def init_state() -> State:
        return initial_state()

    def apply(params: Params, x: jax.Array, *, state: State | None = None,
              key: jax.Array | None = None, train: bool = False) -> jax.Array:
        return network.apply(params, {} if state is None else state, x, key=key, train=train)[0]

    def loss_and_state(params: Params, state: State, x: jax.Array, t: jax.Array, *,
                       key: jax.Array | None = None) -> tuple[jax.Array, State]:
        logits, new_state = network.apply(params, state, x, key=key, train=True)
        return with_decay(ops.softmax_cross_entropy(logits, t), params), new_state

    def loss(params: Params, x: jax.Array, t: jax.Array, *, state: State | None = None,
             key: jax.Array | None = None, train: bool = True) -> jax.Array:
        data_loss = ops.softmax_cross_entropy(apply(params, x, state=state, key=key,
                                                    train=train), t)
        return with_decay(data_loss, params) if train else data_loss

    def accuracy(params: Params, x: jax.Array, t: jax.Array, *,
                 state: State | None = None) -> jax.Array:
        predicted = jnp.argmax(apply(params, x, state=state), axis=-1)
        labels = t if jnp.issubdtype(jnp.asarray(t).dtype, jnp.integer) else jnp.argmax(t, -1)
        return jnp.mean(predicted == labels)

    return Model(init, init_state, apply, loss, loss_and_state, accuracy, input_shape,
                 output_shape)
