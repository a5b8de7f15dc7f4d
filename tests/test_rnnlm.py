"""The sequel's layers over sequences (embedding, recurrent, time affine) and its language
models: the carried state, weight tying, manual against autodiff, bad arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.layers import (
    embedding_layer,
    output_shape_of,
    recurrent_layer,
    serial,
    time_affine_layer,
)
from fnnet.nets import (
    BOOK_RUNS,
    LM_NETS,
    SAMPLED_NETS,
    better_rnnlm,
    language_model,
    rnnlm,
    sample_ids,
    simple_rnnlm,
)
from tests.helpers import assert_tree_allclose

pytestmark = pytest.mark.usefixtures("highest_precision")


def test_a_stateful_layer_carries_its_state_from_chunk_to_chunk():
    """For the RNN and the LSTM (h, and h with c; the GRU carries h as the RNN does): two
    chunks with the state carried give the hidden states of the whole sequence and its final
    state; a stateless layer starts every chunk from zeros."""
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 3)), jnp.float32)
    layers = {cell: (recurrent_layer(cell, 4, stateful=True), recurrent_layer(cell, 4))
              for cell in ("rnn", "lstm")}
    params = {cell: stateful.init(jax.random.key(0), (5, 3))[1]
              for cell, (stateful, _) in layers.items()}

    @jax.jit
    def run(params):
        out = {}
        for cell, (stateful, stateless) in layers.items():
            p = params[cell]
            whole, final = stateful.apply(p, {}, xs)
            first, carried = stateful.apply(p, {}, xs[:, :3])
            second, again = stateful.apply(p, carried, xs[:, 3:])
            fresh, no_state = stateless.apply(p, carried, xs[:, 3:])
            out[cell] = (whole, final, jnp.concatenate([first, second], axis=1), again,
                         fresh, stateful.apply(p, {}, xs[:, 3:])[0], no_state)
        return out

    for cell, (whole, final, chunked, again, fresh, from_zeros, no_state) in run(params).items():
        np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-6)
        assert set(final) == ({"h", "c"} if cell == "lstm" else {"h"})
        assert_tree_allclose(again, final, jnp.float32)
        np.testing.assert_array_equal(final["h"], whole[:, -1])
        np.testing.assert_array_equal(fresh, from_zeros)
        assert no_state == {}


def test_the_books_shapes_and_init():
    net = rnnlm(50, 8, 6)
    params = net.init(jax.random.key(0))
    assert jax.tree.map(jnp.shape, params) == {
        "embedding": {"W": (50, 8)}, "lstm": {"Wx": (8, 24), "Wh": (6, 24), "b": (24,)},
        "affine": {"W": (6, 50), "b": (50,)}}
    assert net.input_shape == (35,) and net.output_shape == (35, 50) and net.input_range == 50
    assert float(jnp.std(params["embedding"]["W"])) == pytest.approx(0.01, rel=0.2)
    assert float(jnp.std(params["lstm"]["Wh"])) == pytest.approx(6 ** -0.5, rel=0.2)
    assert not jnp.any(params["lstm"]["b"]) and not jnp.any(params["affine"]["b"])
    assert set(jax.eval_shape(simple_rnnlm(50).init, jax.random.key(0))) == {
        "embedding", "rnn", "affine"}
    assert set(LM_NETS) == set(BOOK_RUNS) == set(SAMPLED_NETS) - {
        "cbow", "skip-gram", "seq2seq", "peeky", "attention"}
    net = serial(("embedding", embedding_layer(50, 8)), ("gru", recurrent_layer("gru", 6)),
                 ("affine", time_affine_layer(50)))
    assert output_shape_of(net, (7,)) == (7, 50)
    assert BOOK_RUNS["rnnlm"][:7] == (100, 100, 20, 35, 20.0, 0.25, 4)


def test_weight_tying_is_one_parameter_with_both_gradients_summed():
    """A tied output weight is the embedding transposed: its gradient is the embedding's own
    plus the output affine's, transposed; BetterRnnlm ties its weights so."""
    assert set(jax.eval_shape(better_rnnlm(12, 4, 4).init, jax.random.key(0))["affine"]) == {"b"}

    def build(tie_to):
        return language_model([("embedding", embedding_layer(12, 4, weight_init=1.0)),
                               ("rnn", recurrent_layer("rnn", 4, stateful=True))], 12,
                              time_size=3, tie_to=tie_to)

    tied, untied = build("embedding"), build(None)
    params = tied.init(jax.random.key(0))
    untied_params = {**params, "affine": {"W": params["embedding"]["W"].T,
                                          "b": params["affine"]["b"]}}
    x, t = sample_ids(tied, 2, 0)

    @jax.jit
    def grads(params, untied_params):
        return (jax.value_and_grad(tied.loss)(params, x, t),
                jax.value_and_grad(untied.loss)(untied_params, x, t))

    (loss, g), (loss_u, g_u) = grads(params, untied_params)
    assert float(loss) == pytest.approx(float(loss_u), rel=1e-6)
    summed = g_u["embedding"]["W"] + g_u["affine"]["W"].T
    np.testing.assert_allclose(g["embedding"]["W"], summed, rtol=1e-5, atol=1e-8)
    assert float(jnp.min(jnp.abs(g_u["affine"]["W"]).sum(0))) > 0  # both uses contribute
    assert float(jnp.max(jnp.abs(g_u["embedding"]["W"]))) > 0
    np.testing.assert_allclose(g["rnn"]["Wh"], g_u["rnn"]["Wh"], rtol=1e-5, atol=1e-9)


def test_eval_mode_carries_the_state_drops_no_units_and_scores_next_words():
    """``loss_and_state(train=False)``: BetterRnnlm's dropout off (no key needed), the state
    returned; the accuracy counts the labelled positions only."""
    net = better_rnnlm(20, 4, 4, dropout=0.5, time_size=4)
    params = net.init(jax.random.key(1))
    x, t = sample_ids(net, 3, 1)
    t[0, 1] = -1  # an ignored position

    @jax.jit
    def run(params):
        loss, state = net.loss_and_state(params, {}, x, t, train=False)
        return loss, state, net.loss(params, x, t, train=False), net.apply(params, x), \
            net.accuracy(params, x, t)

    loss, state, loss_again, logits, accuracy = run(params)
    assert set(state) == {"lstm1", "lstm2"} and state["lstm2"]["c"].shape == (3, 4)
    assert float(loss) == float(loss_again)
    assert logits.shape == (3, 4, 20)
    hits = (np.argmax(logits, -1) == t)[t != -1]
    assert float(accuracy) == pytest.approx(hits.mean())
    with pytest.raises(ValueError, match="dropout layer: training mode needs a key"):
        net.loss(params, x, t)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match=r"weight tying needs wordvec_size = hidden_size; got "
                                         r"8 and 6"):
        better_rnnlm(20, 8, 6)
    with pytest.raises(ValueError, match=r"cell must be one of \('rnn', 'lstm', 'gru'\)"):
        rnnlm(20, cell="transformer")
    with pytest.raises(ValueError, match=r"tie_to='embed' is not one of the layers"):
        language_model([("embedding", embedding_layer(5, 3))], 5, tie_to="embed")
    with pytest.raises(ValueError, match=r"weight tying needs the embedding 'embedding' to be "
                                         r"\(V, H\) = \(5, 4\)"):
        language_model([("embedding", embedding_layer(5, 3)),
                        ("lstm", recurrent_layer("lstm", 4))], 5,
                       tie_to="embedding").init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"lstm layer: input shape must be \(T, D\)"):
        recurrent_layer("lstm", 3).init(jax.random.key(0), (4,))
