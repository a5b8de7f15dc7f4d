"""word2vec (the sequel's chapter 4): the book's windows, the unigram sampler's distribution,
CBOW and skip-gram losses as the book sums them, hand rules against autodiff per leaf,
training with ``fit``, and the similarity queries."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.data import TOY_TEXT, Dataset, create_contexts_target, preprocess
from fnnet.gradcheck import compare_model_grads
from fnnet.nets import WORD2VEC_NETS, cbow, unigram_sampler
from fnnet.nets.word2vec import sample_batch, toy_net, word_vectors
from fnnet.optim import adam
from fnnet.train import fit, init_from_seed
from fnnet.word_vectors import analogy, cos_similarity, most_similar

pytestmark = pytest.mark.usefixtures("highest_precision")


# --- the book's windows --------------------------------------------------------------------


def test_contexts_and_target_are_the_books_window():
    corpus, word_to_id, id_to_word = preprocess(TOY_TEXT)
    assert id_to_word == ("you", "say", "goodbye", "and", "i", "hello", ".")
    assert word_to_id["hello"] == 5 and corpus.dtype == np.int32
    contexts, target = create_contexts_target(corpus, 1)
    assert contexts.tolist() == [[0, 2], [1, 3], [2, 4], [3, 1], [4, 5], [1, 6]]
    assert target.tolist() == [1, 2, 3, 4, 1, 5]
    contexts, target = create_contexts_target(np.arange(10), 3)
    assert contexts.shape == (4, 6) and contexts.dtype == np.int32
    assert contexts[0].tolist() == [0, 1, 2, 4, 5, 6] and target.tolist() == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="more than 6 tokens; the corpus has 6"):
        create_contexts_target(np.arange(6), 3)
    with pytest.raises(ValueError, match="1-D integer"):
        create_contexts_target(np.zeros(9), 1)
    with pytest.raises(ValueError, match="window_size"):
        create_contexts_target(np.arange(9), 0)


# --- the unigram sampler -------------------------------------------------------------------


SKEWED = np.array([0, 1, 1, 1, 2, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 7])  # word 6 never occurs
SAMPLER = unigram_sampler(SKEWED, vocabulary_size=9, sample_size=2)
SAMPLE = jax.jit(SAMPLER.sample)  # one program for every draw below
ROWS = 40_000


def test_sampler_weights_are_counts_to_the_power():
    counts = np.bincount(SKEWED, minlength=9)
    expected = counts**0.75 / np.sum(counts**0.75)
    np.testing.assert_allclose(SAMPLER.probabilities(), expected, rtol=1e-8, atol=0)
    assert SAMPLER.weights[6] == SAMPLER.weights[8] == 0 and SAMPLER.vocabulary_size == 9
    assert SAMPLER.cdf[-1] < 2**31


@pytest.mark.parametrize("target", [0, 5])
def test_sampler_draws_distinct_negatives_as_the_books_choice_without_replacement(target):
    """Every ordered pair (a, b) of 2 negatives has the probability of the book's
    ``np.random.choice(V, 2, replace=False, p)`` with ``p[target] = 0``:
    ``q_a/(1 − q_t) · q_b/(1 − q_t − q_a)``; the draws are a function of the key."""
    targets = jnp.full(ROWS, target, jnp.int32)
    drawn = np.asarray(SAMPLE(jax.random.key(target), targets))
    np.testing.assert_array_equal(drawn, SAMPLE(jax.random.key(target), targets))
    assert not np.array_equal(drawn, SAMPLE(jax.random.key(target + 1), targets))
    q = SAMPLER.probabilities()
    others = [w for w in range(9) if w != target and q[w] > 0]
    expected = {(a, b): q[a] / (1 - q[target]) * q[b] / (1 - q[target] - q[a])
                for a, b in itertools.permutations(others, 2)}
    pairs, counts = np.unique(drawn, axis=0, return_counts=True)
    seen = {tuple(p): c / ROWS for p, c in zip(pairs.tolist(), counts, strict=True)}
    assert set(seen) <= set(expected)  # distinct, never the target, never an unseen word
    z = [abs(seen.get(pair, 0.0) - p) / np.sqrt(p * (1 - p) / ROWS)
         for pair, p in expected.items()]
    assert max(z) < 4.5, max(z)


def test_sampler_takes_any_target_shape_and_vmaps():
    sampler = SAMPLER._replace(sample_size=3)
    targets = jnp.array([[0, 1, 5], [2, 7, 5]])
    drawn = jax.eval_shape(sampler.sample, jax.random.key(1), targets)
    assert drawn.shape == (2, 3, 3) and drawn.dtype == jnp.int32
    keys = jax.random.split(jax.random.key(1), 4)
    assert jax.eval_shape(jax.vmap(sampler.sample, in_axes=(0, None)), keys,
                          targets).shape == (4, 2, 3, 3)


def test_sampler_refuses_bad_corpora():
    with pytest.raises(ValueError, match="at least 6 distinct words"):
        unigram_sampler(np.array([0, 1, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"ids up to 7, outside the vocabulary \[0, 5\)"):
        unigram_sampler(SKEWED, vocabulary_size=5, sample_size=2)
    with pytest.raises(ValueError, match="1-D integer"):
        unigram_sampler(np.zeros(10))
    with pytest.raises(TypeError, match="targets must be integer"):
        unigram_sampler(SKEWED, sample_size=2).sample(jax.random.key(0), jnp.zeros(3))


# --- the nets ------------------------------------------------------------------------------


def _params(V: int, H: int, dtype) -> dict:
    rng = np.random.default_rng(0)
    return {name: {"W": (0.5 * rng.standard_normal((V, H))).astype(dtype)}
            for name in ("embedding_in", "embedding_out")}


def _book_loss(net: str, params: dict, x: np.ndarray, t: np.ndarray, key: jax.Array) -> float:
    W_in, W_out = (np.asarray(params[name]["W"]) for name in ("embedding_in", "embedding_out"))
    if net == "cbow":
        h, words = W_in[x].mean(axis=1), t
    else:
        h, words = np.repeat(W_in[x], 2, axis=0), t.reshape(-1)
    sampler = unigram_sampler(preprocess(TOY_TEXT)[0], sample_size=2)
    negatives = np.asarray(jax.jit(sampler.sample)(key, jnp.asarray(words)))  # one program
    positive = np.einsum("nh,nh->n", h, W_out[words])
    negative = np.einsum("nh,nkh->nk", h, W_out[negatives])
    softplus = functools.partial(np.logaddexp, 0.0)
    loss = np.mean(softplus(-positive)) + np.sum(np.mean(softplus(negative), axis=0))
    return 2 * loss if net == "skip-gram" else loss  # skip-gram: a sum over 2 positions


@pytest.mark.parametrize("net", ["cbow", "skip-gram"])
def test_manual_rules_match_autodiff_and_numerical_per_leaf_float64(net, x64):
    """Per leaf, on the toy batch (``say`` occurs twice: the scatter-adds meet repeated ids),
    at a loss that is the book's: its NegativeSamplingLoss sums 1 + k SigmoidWithLoss layers,
    each a batch mean (skip-gram: summed over the 2w positions too), here in NumPy from the
    same negatives."""
    x, t = sample_batch(net)
    assert np.sum(x == 1) + np.sum(t == 1) >= 2
    params = _params(7, 3, np.float64)
    report = compare_model_grads(functools.partial(toy_net, net, dtype=jnp.float64), x, t,
                                 params=params, key=jax.random.key(5), max_entries=None)
    assert report.ok, report.format_table()
    np.testing.assert_allclose(report.loss, _book_loss(net, params, x, t, jax.random.fold_in(
        jax.random.key(5), 1)), rtol=1e-12)
    assert [leaf.path for leaf in report.leaves] == ["embedding_in/W", "embedding_out/W"]
    assert all(leaf.autodiff.max_rel <= 1e-12 for leaf in report.leaves)
    assert all(leaf.numerical.max_rel <= 1e-6 for leaf in report.leaves)


@pytest.mark.parametrize("net", ["cbow", "skip-gram"])
def test_manual_rules_match_autodiff_per_leaf_float32(net):
    x, t = sample_batch(net, window_size=2)
    build = functools.partial(toy_net, net, window_size=2, hidden_size=4, sample_size=3)
    report = compare_model_grads(build, x, t, numerical=False)
    assert report.ok, report.format_table()
    assert report.leaves[0].shape == (7, 4)


def test_training_needs_a_key_and_evaluation_is_deterministic():
    model = toy_net("cbow")
    params = jax.tree.map(lambda w: w / 100, _params(7, 3, np.float32))
    x, t = (jnp.asarray(a) for a in sample_batch("cbow"))
    with pytest.raises(ValueError, match="needs a key"):
        model.loss(params, x, t)
    eval_loss = jax.jit(functools.partial(model.loss, train=False))
    first = eval_loss(params, x, t)
    assert float(first) == float(eval_loss(params, x, t))
    assert np.isclose(float(first), 3 * np.log(2), rtol=1e-3)  # tiny init: every σ(s) ≈ ½
    assert jax.eval_shape(model.apply, params, x).shape == (6, 7)
    assert jax.eval_shape(toy_net("skip-gram").apply, params, t).shape == (6, 2, 7)


def test_nets_refuse_a_sampler_of_another_vocabulary_and_ids_outside_it():
    sampler = unigram_sampler(SKEWED, sample_size=2)  # 8 words
    for build in WORD2VEC_NETS.values():
        with pytest.raises(ValueError, match="draws from 8 words but vocabulary_size is 9"):
            build(9, 3, 1, sampler)
    with pytest.raises(TypeError, match="UnigramSampler"):
        cbow(8, 3, 1, SKEWED)
    net = cbow(8, 3, 1, sampler)
    contexts, target = create_contexts_target(np.array([0, 1, 2, 9, 3]), 1)
    bad = Dataset("bad", contexts, target, contexts, target, 8, None)
    with pytest.raises(ValueError, match=r"ids in \[0, 9\] but the model takes ids in \[0, 8\)"):
        fit(net, _params(8, 3, np.float32), bad, optimizer=adam(0.01),
            key=jax.random.key(0), batch_size=2, epochs=1, progress=False)


# --- training ------------------------------------------------------------------------------


def _corpus() -> np.ndarray:
    """Two word families that never share a context: a learnable toy."""
    rng = np.random.default_rng(0)
    words = []
    for _ in range(150):
        family = rng.integers(2)
        words += [*rng.choice([0, 1, 2, 3] if family else [4, 5, 6, 7], 3), 8]
    return np.array(words, np.int32)


@pytest.mark.slow
def test_fit_trains_cbow_and_skip_gram():
    corpus = _corpus()
    sampler = unigram_sampler(corpus, sample_size=3)
    contexts, target = create_contexts_target(corpus, 2)
    for name, (x, t) in {"cbow": (contexts, target), "skip-gram": (target, contexts)}.items():
        net = WORD2VEC_NETS[name](9, 8, 2, sampler)
        data = Dataset("toy", x, t, x[:100], t[:100], 9, None)
        params, key = init_from_seed(net, 0)
        trained, history = fit(net, params, data, optimizer=adam(0.05), key=key,
                               batch_size=50, epochs=4, progress=False)
        assert history.loss[-1] < 0.85 * history.loss[0], (name, history.loss)
        assert history.test_loss[-1] < history.test_loss[0]
        assert 0 <= history.train_acc[-1] <= 1
    vectors = np.asarray(word_vectors(trained))
    same = np.mean([cos_similarity(vectors[a], vectors[b])
                    for a, b in itertools.combinations([0, 1, 2, 3], 2)])
    across = np.mean([cos_similarity(vectors[a], vectors[b])
                      for a in [0, 1, 2, 3] for b in [4, 5, 6, 7]])
    assert same > across + 0.3, (same, across)


# --- queries -------------------------------------------------------------------------------


def test_similarity_queries_and_analogies():
    words = ("king", "queen", "man", "woman", "car", "zero")
    word_to_id = {w: i for i, w in enumerate(words)}
    vectors = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.2, 1.0, 0.1],
                        [0.2, -1.0, 0.1], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert cos_similarity(vectors[5], vectors[0]) == 0.0  # the book's ε: no NaN
    nearest = most_similar("king", word_to_id, words, vectors, top=2)
    assert [w for w, _ in nearest] == ["man", "queen"]
    assert nearest[0][1] == pytest.approx(cos_similarity(vectors[0], vectors[2]))
    found = analogy("king", "man", "queen", word_to_id, words, vectors, top=1)
    assert found[0][0] == "woman"  # man − king + queen
    raw = analogy("king", "man", "queen", word_to_id, words, 10 * vectors, top=1,
                  normalize_rows=False)
    assert raw[0][0] == "woman"
    with pytest.raises(KeyError, match="'toyota' is not in the vocabulary"):
        most_similar("toyota", word_to_id, words, vectors)
