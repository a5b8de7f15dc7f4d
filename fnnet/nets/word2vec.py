"""word2vec with negative sampling (the sequel's chapter 4): CBOW and skip-gram, and the
unigram sampler they draw their negative examples from.

Both nets have two tables of word vectors, ``embedding_in/W`` and ``embedding_out/W``, each
``(V, H)`` and drawn from N(0, 0.01²) as in the book; the input table holds the word vectors
the book keeps (:func:`word_vectors`).

* **CBOW** (:func:`cbow`) predicts a word from the ``2w`` words around it: its input is the
  contexts ``(N, 2w)``, its label the target ``(N,)``; ``h = (1/2w)·Σ_c W_in[context_c]``.
* **skip-gram** (:func:`skip_gram`) predicts the ``2w`` words around a word from it: its input
  is the target ``(N,)``, its labels the contexts ``(N, 2w)``; ``h = W_in[target]``.

**Negative sampling** (the book's ``NegativeSamplingLoss``). For a hidden vector ``h`` and the
word ``y`` to predict, the positive score is ``s₀ = h·W_out[y]`` and the negatives' are
``sⱼ = h·W_out[nⱼ]`` for ``k`` words ``nⱼ`` drawn by the :class:`UnigramSampler` (``k = 5``
in the book); the loss of that prediction is the binary cross-entropy
``−log σ(s₀) − Σⱼ log(1 − σ(sⱼ))``. The book sums its ``1 + k`` Sigmoid-with-Loss layers,
each a batch mean; so does fnnet: CBOW's loss is ``(1 + k)·mean`` of the ``N·(1 + k)``
binary cross-entropies, skip-gram's ``2w·(1 + k)·mean`` of its ``N·2w·(1 + k)`` (the book's
sum over the context positions).

Every gradient comes from the hand rules (``grads="manual"``: :func:`fnnet.manual.embedding`'s
scatter-add, ``embedding_dot``, ``sigmoid_cross_entropy``, the ``sum`` and ``repeat`` nodes)
or from ``jax.grad`` of their references (``grads="autodiff"``); the reshapes and CBOW's
constant ``1/2w`` are differentiated by JAX in both.

The nets are :class:`fnnet.layers.Model` s over word ids (``input_range = V``), so
:func:`fnnet.train.fit` trains them on :func:`fnnet.data.create_contexts_target`'s examples.
The training loss needs a key (the negatives; ``fit`` passes one each step). In eval mode
without a key the negatives are drawn from a key made from the batch's ids
(:data:`EVAL_SEED`), so evaluating the same examples gives the same loss. ``apply`` gives
the scores ``h·W_outᵀ`` of every word (``(N, V)``; skip-gram ``(N, 2w, V)``, the same for
each position) and ``accuracy`` is how often the word to predict scores highest of all
``V`` — a harsh measure (the book reports none; its evaluation is the similarity queries of
:mod:`fnnet.word_vectors`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnnet._checks import check_int, check_positive
from fnnet.data.text import TOY_TEXT, create_contexts_target, preprocess
from fnnet.init import Initializer, draws_as_one, resolve
from fnnet.layers import Model, Params, State, ops_for

SCALE_BITS = 30
"""The sampler's probabilities are integers summing to about ``2**30``: exact arithmetic,
each word's probability to ``2⁻³¹`` (relative error ≤ 0.05% for PTB's rarest words)."""
EVAL_SEED = 0x77327620
"""Seeds the eval-mode negatives (folded with the batch's ids)."""


def _mulhi(a: jax.Array, b: jax.Array) -> jax.Array:
    """The high 32 bits of the 64-bit product of uint32 ``a`` and ``b``, in uint32 limbs."""
    mask = jnp.uint32(0xFFFF)
    a1, a0, b1, b0 = a >> 16, a & mask, b >> 16, b & mask
    cross1, cross2, low = a1 * b0, a0 * b1, a0 * b0
    carry = ((cross1 & mask) + (cross2 & mask) + (low >> 16)) >> 16
    return a1 * b1 + (cross1 >> 16) + (cross2 >> 16) + carry


def _scaled(bits: jax.Array, span: jax.Array) -> jax.Array:
    """Integers uniform in ``[0, span)`` from uint32 random ``bits`` (int32 ``span`` per
    entry, ``0 < span < 2³¹``): ``⌊bits·span / 2³²⌋`` (Lemire's multiply-shift). Each value has
    ``⌊2³²/span⌋`` or one more of the 2³² bit patterns, so an interval of ``w`` values is
    hit with probability ``w/span`` to within ``2⁻³²``. (``jax.random.randint`` is not
    uniform over spans near 2³⁰: in [0, 9.64e8) it put 22.4% of 200 000 draws in the first
    fifth and 17.9% in the last.)"""
    return _mulhi(bits, span.astype(jnp.uint32)).astype(jnp.int32)


class UnigramSampler(NamedTuple):
    """Negative samples drawn ∝ ``count(w)^power`` (the book's ``UnigramSampler``).

    ``weights``: int64 ``(V,)`` integer weights ∝ ``count^power`` (0 for words never seen);
    ``cdf``: their running sum; ``sample_size``: ``k``, the negatives per word to predict.
    Build one with :func:`unigram_sampler`; draw with :meth:`sample`.
    """

    weights: np.ndarray
    cdf: np.ndarray
    sample_size: int
    power: float

    @property
    def vocabulary_size(self) -> int:
        return len(self.weights)

    def probabilities(self) -> np.ndarray:
        """``(V,)`` float64: the probability of each word in one unrestricted draw."""
        return self.weights / self.weights.sum()

    def sample(self, key: jax.Array, targets: jax.Array) -> jax.Array:
        """``k`` negatives for each entry of ``targets``: ``targets.shape + (k,)`` int32.

        As the book's CPU sampler (``np.random.choice(V, k, replace=False, p=p)`` with
        ``p[target] = 0``): ``k`` *distinct* words, none of them the target, drawn one after
        another, each ∝ ``count^power`` among the words not yet excluded. Each draw is exact
        in integers: a uniform integer ``r`` below the weight left, moved past the excluded
        words' intervals (in order of id), then the word whose interval of the running sum
        holds it (a binary search) — ``O(k² + k·log V)`` per target, where the book's draw
        costs ``O(V)``.
        """
        targets = jnp.asarray(targets)
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise TypeError(f"UnigramSampler.sample: targets must be integer word ids; got "
                            f"{targets.dtype}")
        V, k = self.vocabulary_size, self.sample_size
        weights = jnp.asarray(self.weights, jnp.int32)
        cdf = jnp.asarray(self.cdf, jnp.int32)
        flat = targets.reshape(-1).astype(jnp.int32)
        # Excluded ids per row: the target, then each word drawn; V (past every id) is none.
        excluded = jnp.full((flat.shape[0], k + 1), V, jnp.int32).at[:, 0].set(flat)

        def draw(excluded: jax.Array, bits_and_slot: tuple[jax.Array, jax.Array]):
            bits, slot = bits_and_slot
            ids = jnp.sort(excluded, axis=1)  # by id = by position on the running sum
            real = (ids >= 0) & (ids < V)
            safe = jnp.where(real, ids, 0)
            width = jnp.where(real, weights[safe], 0)
            start = cdf[safe] - width
            r = _scaled(bits, cdf[-1] - width.sum(axis=1))
            for c in range(k + 1):  # the r-th unit of the line with the excluded cut out
                r = r + jnp.where(real[:, c] & (r >= start[:, c]), width[:, c], 0)
            word = jnp.searchsorted(cdf, r, side="right").astype(jnp.int32)
            return excluded.at[:, slot].set(word), word

        bits = jax.random.bits(key, (k, flat.shape[0]), jnp.uint32)  # one draw for all k
        _, drawn = jax.lax.scan(draw, excluded, (bits, jnp.arange(1, k + 1)))
        return drawn.T.reshape(*targets.shape, k)


def unigram_sampler(corpus: np.ndarray, *, vocabulary_size: int | None = None,
                    power: float = 0.75, sample_size: int = 5) -> UnigramSampler:
    """The sampler of the words of ``corpus`` (1-D ids), weights ∝ ``count^power``.

    The book's settings: ``power = 0.75`` (rare words drawn more often than their
    frequency), ``sample_size = 5``. ``vocabulary_size`` defaults to ``max(corpus) + 1``;
    at least ``sample_size + 1`` distinct words must occur, so any target has ``k`` others.

    >>> sampler = unigram_sampler(np.array([0, 1, 2, 3, 4, 1, 5, 6]), sample_size=2)
    >>> sampler.sample(jax.random.key(0), jnp.array([1, 5])).shape
    (2, 2)
    """
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or not np.issubdtype(corpus.dtype, np.integer) or corpus.size == 0:
        raise ValueError(f"unigram_sampler: corpus must be non-empty 1-D integer word ids; got "
                         f"shape {corpus.shape}, dtype {corpus.dtype}")
    if corpus.min() < 0:
        raise ValueError(f"unigram_sampler: word ids must be >= 0; got {corpus.min()}")
    V = int(corpus.max()) + 1 if vocabulary_size is None else check_int(
        "vocabulary_size", vocabulary_size)
    if corpus.max() >= V:
        raise ValueError(f"unigram_sampler: the corpus holds ids up to {corpus.max()}, outside "
                         f"the vocabulary [0, {V})")
    power = float(check_positive("power", power))
    sample_size = check_int("sample_size", sample_size)
    counts = np.bincount(corpus, minlength=V).astype(np.float64)
    if np.count_nonzero(counts) < sample_size + 1:
        raise ValueError(f"unigram_sampler: {sample_size} distinct negatives per word need at "
                         f"least {sample_size + 1} distinct words in the corpus; it has "
                         f"{np.count_nonzero(counts)}")
    scaled = counts**power / np.sum(counts**power) * 2**SCALE_BITS
    weights = np.where(counts > 0, np.maximum(1, np.rint(scaled)), 0).astype(np.int64)
    return UnigramSampler(weights, np.cumsum(weights), sample_size, power)


# --- the nets ------------------------------------------------------------------------------


def _negative_sampling_loss(ops, h: jax.Array, W_out: jax.Array, words: jax.Array,
                            sampler: UnigramSampler, key: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of ``h (M, H)`` scoring ``words (M,)`` as positives and
    their ``k`` sampled negatives, times ``1 + k`` (the book's sum of its ``1 + k`` layers)."""
    k = sampler.sample_size
    negatives = sampler.sample(key, words)
    ids = jnp.concatenate([words[:, None].astype(jnp.int32), negatives], axis=1)  # (M, 1 + k)
    labels = jnp.zeros(ids.shape, jnp.int32).at[:, 0].set(1)
    rows = ops.repeat(h, 1 + k, axis=1).reshape(-1, h.shape[-1])  # each h once per score
    scores = ops.embedding_dot(rows, W_out, ids.reshape(-1)).reshape(ids.shape)
    return (1 + k) * ops.sigmoid_cross_entropy(scores, labels)


def _eval_key(x: jax.Array, t: jax.Array) -> jax.Array:
    """A key from the batch's ids: the same examples, the same negatives."""
    x, t = (jnp.asarray(a).astype(jnp.uint32).reshape(-1) for a in (x, t))
    mix = jnp.sum(x * jnp.uint32(2654435761)) ^ jnp.sum(t * jnp.uint32(40503))
    return jax.random.fold_in(jax.random.key(EVAL_SEED), mix)


def _word2vec(name: str, vocabulary_size: int, hidden_size: int, window_size: int,
              sampler: UnigramSampler, *, grads: str, dtype: jnp.dtype,
              weight_init: str | float | Initializer, hidden: Callable, shapes: tuple) -> Model:
    V = check_int("vocabulary_size", vocabulary_size)
    H = check_int("hidden_size", hidden_size)
    check_int("window_size", window_size)
    if not isinstance(sampler, UnigramSampler):
        raise TypeError(f"{name}: sampler must be a UnigramSampler (fnnet.nets.word2vec."
                        f"unigram_sampler(corpus)); got {type(sampler).__name__}")
    if sampler.vocabulary_size != V:
        raise ValueError(f"{name}: the sampler draws from {sampler.vocabulary_size} words but "
                         f"vocabulary_size is {V}")
    ops = ops_for(grads)
    initializer = resolve(weight_init)
    input_shape, output_shape, scale = shapes

    def draw(key: jax.Array) -> Params:
        key_in, key_out = jax.random.split(key)
        return {"embedding_in": {"W": initializer(key_in, (V, H), dtype)},
                "embedding_out": {"W": initializer(key_out, (V, H), dtype)}}

    init_params = draws_as_one(draw)

    def loss(params: Params, x: jax.Array, t: jax.Array, *, state: State | None = None,
             key: jax.Array | None = None, train: bool = True) -> jax.Array:
        del state
        if key is None:
            if train:
                raise ValueError(f"{name}: the training loss samples negatives and needs a key "
                                 f"(pass key=...; fit and the train step do)")
            key = _eval_key(x, t)
        h, words = hidden(ops, params["embedding_in"]["W"], x, t)
        return scale * _negative_sampling_loss(ops, h, params["embedding_out"]["W"], words,
                                                   sampler, key)

    def loss_and_state(params: Params, state: State, x: jax.Array, t: jax.Array, *,
                       key: jax.Array | None = None) -> tuple[jax.Array, State]:
        return loss(params, x, t, key=key), state

    def apply(params: Params, x: jax.Array, *, state: State | None = None,
              key: jax.Array | None = None, train: bool = False) -> jax.Array:
        del state, key, train
        W_in, W_out = params["embedding_in"]["W"], params["embedding_out"]["W"]
        scores = hidden(ops, W_in, x, None)[0] @ W_out.T
        return jnp.broadcast_to(scores[:, None], (x.shape[0], *output_shape)) \
            if len(output_shape) == 2 else scores

    def accuracy(params: Params, x: jax.Array, t: jax.Array, *,
                 state: State | None = None) -> jax.Array:
        return jnp.mean(jnp.argmax(apply(params, x), axis=-1) == t)

    return Model(init_params, lambda: {}, apply, loss, loss_and_state, accuracy, input_shape,
                 output_shape, V)


def cbow(vocabulary_size: int, hidden_size: int, window_size: int, sampler: UnigramSampler,
         *, grads: str = "manual", dtype: jnp.dtype = jnp.float32,
         weight_init: str | float | Initializer = "normal") -> Model:
    """The book's ``CBOW`` with negative sampling (chapter 4).

    Input: contexts ``(N, 2w)`` word ids; label: the target ``(N,)``. Forward:
    ``h = (1/2w)·Σ_c W_in[contexts[:, c]]`` (one :func:`~fnnet.manual.embedding` of all
    contexts, then a Sum node), then the negative-sampling loss of ``h`` predicting the target
    (see the module docstring). Backward, by the hand rules: the loss's ``dh`` is scaled by
    ``1/2w``, copied to each context position (Sum's rule) and scatter-**added** into
    ``W_in`` (a word twice in a window gets both); ``W_out`` gets ``embedding_dot``'s
    scatter-add.

    Args:
      vocabulary_size: V, the words (ids in ``[0, V)``).
      hidden_size: H, the vector size (the book: 100).
      window_size: w, context words on each side (the book: 5).
      sampler: the negatives' :class:`UnigramSampler` over the same V words.
      grads: ``"manual"`` or ``"autodiff"``.
      dtype: the tables' dtype.
      weight_init: both tables' init (default N(0, 0.01²), the book's).

    >>> import numpy as np
    >>> corpus = np.array([0, 1, 2, 3, 4, 1, 5, 6])
    >>> net = cbow(7, 3, 1, unigram_sampler(corpus, sample_size=2))
    >>> net.input_shape, net.output_shape, net.input_range
    ((2,), (7,), 7)
    """
    window_size = check_int("window_size", window_size)

    def hidden(ops, W_in, contexts, target):
        vectors = ops.embedding(W_in, contexts)  # (N, 2w, H)
        return ops.sum(vectors, axis=1) * (1.0 / (2 * window_size)), target

    return _word2vec("cbow", vocabulary_size, hidden_size, window_size, sampler, grads=grads,
                     dtype=dtype, weight_init=weight_init, hidden=hidden,
                     shapes=((2 * window_size,), (vocabulary_size,), 1.0))


def skip_gram(vocabulary_size: int, hidden_size: int, window_size: int,
              sampler: UnigramSampler, *, grads: str = "manual",
              dtype: jnp.dtype = jnp.float32,
              weight_init: str | float | Initializer = "normal") -> Model:
    """The book's ``SkipGram`` with negative sampling (chapter 4).

    Input: the target ``(N,)`` word ids; labels: its contexts ``(N, 2w)``. Forward:
    ``h = W_in[target]``, then for each of the ``2w`` positions the negative-sampling loss of
    ``h`` predicting that context word (its own ``k`` negatives), summed over the positions
    as the book does. Backward: ``h`` is copied to every position (a Repeat node), so its
    cotangent is their sum, scatter-added into ``W_in``. Arguments as :func:`cbow`.

    >>> import numpy as np
    >>> corpus = np.array([0, 1, 2, 3, 4, 1, 5, 6])
    >>> skip_gram(7, 3, 1, unigram_sampler(corpus, sample_size=2)).output_shape
    (2, 7)
    """
    window_size = check_int("window_size", window_size)
    positions = 2 * window_size

    def hidden(ops, W_in, target, contexts):
        h = ops.embedding(W_in, target)  # (N, H)
        if contexts is None:  # apply: the scores need h alone
            return h, None
        return (ops.repeat(h, positions, axis=1).reshape(-1, h.shape[-1]),
                contexts.reshape(-1))

    return _word2vec("skip_gram", vocabulary_size, hidden_size, window_size, sampler,
                     grads=grads, dtype=dtype, weight_init=weight_init, hidden=hidden,
                     shapes=((), (positions, vocabulary_size), float(positions)))


WORD2VEC_NETS: dict[str, Callable[..., Model]] = {"cbow": cbow, "skip-gram": skip_gram}
"""The word2vec nets by name: ``build(vocabulary_size, hidden_size, window_size, sampler,
*, grads, dtype, weight_init) -> Model``."""


def word_vectors(params: Params) -> jax.Array:
    """The word vectors the book keeps: the input table ``W_in``, ``(V, H)``."""
    return params["embedding_in"]["W"]


# --- a small deterministic case for gradient checks ----------------------------------------


def sample_batch(net: str = "cbow", *, window_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch ``(x_ids, t_ids)`` for checking ``net``'s gradients: every example of
    the book's toy corpus "You say goodbye and I say hello." (8 tokens, 7 words; ``say``
    occurs twice, so the scatter-adds meet repeated ids).

    CBOW: ``x`` the contexts ``(8 − 2w, 2w)``, ``t`` the targets; skip-gram the other way
    round. Build the net to check with :func:`toy_net`.

    >>> x, t = sample_batch("cbow")
    >>> x.tolist()[:2], t.tolist()[:2]
    ([[0, 2], [1, 3]], [1, 2])
    """
    if net not in WORD2VEC_NETS:
        raise ValueError(f"net must be one of {tuple(WORD2VEC_NETS)}; got {net!r}")
    contexts, target = create_contexts_target(preprocess(TOY_TEXT)[0], window_size)
    return (contexts, target) if net == "cbow" else (target, contexts)


def toy_net(net: str = "cbow", *, hidden_size: int = 3, window_size: int = 1,
            sample_size: int = 2, grads: str = "manual",
            dtype: jnp.dtype = jnp.float32) -> Model:
    """``net`` over the toy corpus's 7 words, its sampler from that corpus (``sample_size``
    negatives): the model :func:`sample_batch` is for, e.g.
    ``compare_model_grads(functools.partial(toy_net, "cbow", dtype=jnp.float64),
    *sample_batch("cbow"))``."""
    if net not in WORD2VEC_NETS:
        raise ValueError(f"net must be one of {tuple(WORD2VEC_NETS)}; got {net!r}")
    corpus, word_to_id, _ = preprocess(TOY_TEXT)
    sampler = unigram_sampler(corpus, sample_size=sample_size)
    return WORD2VEC_NETS[net](len(word_to_id), hidden_size, window_size, sampler, grads=grads,
                              dtype=dtype)
