"""The seq2seq nets (fnnet.nets.seq2seq): hand-rule and autodiff gradients agree per leaf
(float64 and float32, T_q ≠ T, N = 1 and H = 1 included), against central differences too;
greedy generation is one scan consistent with teacher forcing; accuracy is the exact match.

Compiling dominates: one jitted program per (net, shape, dtype) computes everything the
tests read from it (both gradients, generation, teacher forcing on the generated answer),
cached per module. The general shapes in float64 are the sample batches of the
central-difference check (``compare_model_grads`` also compares manual with autodiff there,
to 1e-10 relative per leaf).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.gradcheck import compare_model_grads
from fnnet.nets import seq2seq as nets

pytestmark = pytest.mark.usefixtures("highest_precision")

NETS = nets.SEQ2SEQ_NETS
# (N, T_q, T, V, D, H): the smallest (N = 1, H = 1) and a general one, T_q ≠ T in both.
SHAPES = {"tiny": (1, 3, 2, 5, 2, 1), "small": (3, 5, 3, 7, 3, 4)}


def random_params(config, seed: int):
    """The net's parameter pytree filled with N(0, 0.7²) values (the book's init is tiny:
    gradients there say little)."""
    like = jax.eval_shape(lambda: nets.init_params(config, jax.random.key(0)))  # no dispatch
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(0.7 * rng.standard_normal(p.shape), p.dtype),
                        like)


@functools.cache
def computed(net: str, shape: str, dtype: str):
    """Everything one (net, shape, dtype) case checks, from one compiled program."""
    N, T_q, T, V, D, H = SHAPES[shape]
    with jax.enable_x64(dtype == "float64"):
        config = nets.Seq2seqConfig(net, V, T_q, T, start_id=V - 1, wordvec_size=D,
                                    hidden_size=H, dtype=jnp.dtype(dtype))
        manual = nets.build(config)
        autodiff = nets.build(config._replace(grads="autodiff"))
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.integers(0, V, (N, T_q)), jnp.int32)
        t = jnp.asarray(rng.integers(0, V, (N, T)), jnp.int32)
        params = random_params(config, 2)

        @jax.jit
        def run(params, x, t):
            loss, g_manual = jax.value_and_grad(manual.loss)(params, x, t)
            loss_ad, g_autodiff = jax.value_and_grad(autodiff.loss)(params, x, t)
            ids, logits, weights = nets.generate(config, params, x)
            forced = nets.forced_logits(config, params, x, ids)
            return dict(loss=loss, loss_ad=loss_ad, g_manual=g_manual, g_autodiff=g_autodiff,
                        ids=ids, logits=logits, weights=weights, forced=forced)

        out = jax.tree.map(np.asarray, run(params, x, t))
    return out, config


def leaf_errors(a, b):
    """Per leaf: max |a − b| / max |b| (relative to the leaf's scale)."""
    return {jax.tree_util.keystr(path): float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)),
                                                                          1e-30))
            for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                                    jax.tree.leaves(b), strict=True)}


@pytest.mark.parametrize("net", NETS)
def test_manual_and_autodiff_gradients_agree_per_leaf_float64_at_n_1_h_1(net):
    out, _ = computed(net, "tiny", "float64")
    assert out["loss"] == pytest.approx(out["loss_ad"], rel=1e-13)
    errors = leaf_errors(out["g_manual"], out["g_autodiff"])
    assert len(errors) == 10
    assert max(errors.values()) < 1e-10, errors
    # Every leaf gets a gradient: the decoder's cotangent reaches the encoder.
    for leaf in jax.tree.leaves(out["g_manual"]["encoder"]):
        assert np.max(np.abs(leaf)) > 1e-6


def test_manual_and_autodiff_gradients_agree_per_leaf_float32():
    out, _ = computed("attention", "small", "float32")
    assert out["g_manual"]["decoder"]["lstm"]["Wx"].dtype == np.float32
    errors = leaf_errors(out["g_manual"], out["g_autodiff"])
    assert max(errors.values()) < 1e-5, errors


# Central differences cost the most to compile (a vmapped loop of perturbed losses): the
# attention net, which holds every rule the other two have, takes them; the other two are
# compared with autodiff on the same kind of batch.
@pytest.mark.parametrize("net, numerical", [("seq2seq", False), ("peeky", False),
                                            ("attention", True)])
def test_per_leaf_on_the_sample_batch(net, numerical):
    with jax.enable_x64(True):
        build, x, t = nets.sample_batch(net, batch_size=2, hidden_size=3, wordvec_size=2)
        assert x.shape[1] != t.shape[1]
        report = compare_model_grads(build, jnp.asarray(x), jnp.asarray(t), max_entries=8,
                                     seed=0, numerical=numerical)
    assert report.ok, report.format_table()
    assert len(report.leaves) == 10
    assert max(leaf.autodiff.max_rel for leaf in report.leaves) < 1e-10
    if numerical:
        assert all(leaf.numerical.entries > 0 for leaf in report.leaves)


@pytest.mark.parametrize("net, shape, dtype", [(net, "tiny", "float64") for net in NETS]
                         + [("attention", "small", "float32")])
def test_greedy_generation_agrees_with_teacher_forcing_on_its_own_answer(net, shape, dtype):
    out, _ = computed(net, shape, dtype)
    N, T_q, T, V, _, _ = SHAPES[shape]
    assert out["ids"].shape == (N, T) and out["ids"].dtype == np.int32
    assert out["logits"].shape == (N, T, V) and out["weights"].shape == (N, T, T_q)
    # Fed its own answers, the teacher-forced decoder computes the same logits.
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["forced"], out["logits"], **tol)
    assert (out["logits"].argmax(-1) == out["ids"]).all()
    if net == "attention":
        np.testing.assert_allclose(out["weights"].sum(-1), 1.0, rtol=1e-6)
    else:
        assert not out["weights"].any()


def test_accuracy_is_the_exact_match_of_the_whole_answer():
    out, _ = computed("attention", "small", "float32")
    ids = jnp.asarray(out["ids"])
    assert nets.exact_match(ids, ids).tolist() == [True] * 3
    assert nets.exact_match(ids, ids.at[0, -1].add(1)).tolist() == [False, True, True]


def test_the_module_shapes_and_the_book_init():
    net = nets.peeky_seq2seq(13, 7, 4, start_id=12)
    params = net.init(jax.random.key(0))
    assert net.input_shape == (7,) and net.output_shape == (4, 13) and net.input_range == 13
    assert params["decoder"]["lstm"]["Wx"].shape == (128 + 16, 512)
    assert params["decoder"]["affine"]["W"].shape == (256, 13)
    assert float(jnp.std(params["encoder"]["embed"]["W"])) == pytest.approx(0.01, rel=0.15)
    assert float(jnp.std(params["decoder"]["lstm"]["Wx"])) == pytest.approx(144 ** -0.5,
                                                                             rel=0.05)
    assert not params["decoder"]["lstm"]["b"].any()
    config = nets.Seq2seqConfig("attention", 60, 29, 10, 36, hidden_size=256)
    shapes = jax.eval_shape(lambda: nets.init_params(config, jax.random.key(0)))
    assert shapes["decoder"]["affine"]["W"].shape == (512, 60)
    assert shapes["decoder"]["lstm"]["Wx"].shape == (16, 1024)


@pytest.mark.parametrize("options, message", [
    (dict(net="transformer"), "net must be one of"),
    (dict(start_id=13), r"start_id must be in \[0, vocab_size\)"),
    (dict(hidden_size=0), "hidden_size"),
    (dict(grads="numerical"), "grads must be one of"),
])
def test_bad_configurations_name_the_argument(options, message):
    config = nets.Seq2seqConfig("seq2seq", 13, 7, 4, 12)._replace(**options)
    with pytest.raises(ValueError, match=message):
        nets.build(config)
