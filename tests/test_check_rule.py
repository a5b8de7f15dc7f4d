"""fnnet.check_rule: fnnet's own ops pass; every diagnosis is caught and named when planted
into an otherwise correct rule; the report serialises and prints; bad calls raise."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet.check import check_rule
from fnnet.ops.table import OPS
from tests.test_ops_agreement import FIRST_OF_EACH_OP

# One dtype, jit only, no fresh arguments: each op compiles three small programs (the
# public defaults run 2 dtypes × eager/jit/vmap × example and fresh arguments).
CHEAP = dict(dtypes=("float64",), modes=("jit",), fresh=0)


# The central-difference comparison costs a program per op; every op's numerical gradient is
# checked in test_ops_agreement, so here it runs on the ops that exercise each kind of input
# check_rule's numerical path handles: kinks (relu, max pooling), integer labels and indices
# (traced, not differentiated; ignored labels), several outputs (cells and time layers), a
# key, static keyword options, broadcasting, batch statistics. The others are compared with
# their reference under jit, as every op is.
NUMERICAL_OPS = {"relu", "max_pool2d", "softmax_cross_entropy", "embedding",
                 "time_softmax_cross_entropy", "lstm", "time_gru", "dropout", "conv2d", "add",
                 "batch_norm", "time_attention"}


def test_the_numerical_subset_names_ops_of_the_table():
    assert NUMERICAL_OPS.issubset(case.op for case in FIRST_OF_EACH_OP)


@pytest.mark.parametrize("case", FIRST_OF_EACH_OP, ids=repr)
def test_check_rule_passes_every_op_of_the_table(case):
    args = case.make(np.random.default_rng(0), jnp.float32)
    numerical = case.numerical and case.op in NUMERICAL_OPS
    report = check_rule(functools.partial(OPS[case.op].manual, **case.static), *args,
                        reference=functools.partial(OPS[case.op].reference, **case.static),
                        argnums=case.diff, numerical=numerical, **CHEAP)
    assert report.ok, report.format_table()
    assert report.arguments == tuple(report.cases[0].leaves[i].path
                                     for i in range(len(case.diff)))
    assert all((leaf.numerical is not None and leaf.numerical.entries > 0) == numerical
               for leaf in report.cases[0].leaves)


# --- rules with one planted bug ----------------------------------------------------------------


def _rule(forward, bwd, nondiff_argnums=()):
    """A custom_vjp of ``forward`` whose residuals are the arguments."""
    f = jax.custom_vjp(forward, nondiff_argnums=nondiff_argnums)
    f.defvjp(lambda *args: (forward(*args), args), bwd)
    return f


def _sce(s, t):
    return -jnp.mean(jnp.sum(t * jax.nn.log_softmax(s), axis=-1))


def _sce_rule(scale):
    """Softmax-with-loss whose backward is ``scale(N)·(y − t)`` times ``g``."""
    return _rule(_sce, lambda res, g: (g * scale(res[0].shape[0])
                                       * (jax.nn.softmax(res[0]) - res[1]), None))


RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((5, 4)), jnp.float32)
SQUARE_W = jnp.asarray(RNG.standard_normal((4, 4)), jnp.float32)
W = jnp.asarray(RNG.standard_normal((4, 3)), jnp.float32)
B = jnp.asarray(RNG.standard_normal(3), jnp.float32)
LOGITS = jnp.asarray(RNG.standard_normal((5, 3)), jnp.float32)
ONE_HOT = jax.nn.one_hot(jnp.array([0, 2, 1, 1, 0]), 3)
TABLE = jnp.asarray(RNG.standard_normal((6, 3)), jnp.float32)
IDX = jnp.array([1, 3, 1, 0, 5])


def _matmul(x, w):
    return x @ w


def _affine(x, w, b):
    return x @ w + b


BUGS = {
    # name: (rule, args, argument diagnosed, words in its diagnosis)
    "factor 2 missing": (_rule(lambda x: x * x, lambda res, g: (g * res[0],)), (X,), "x",
                         "a factor 2 missing"),
    "transposed": (_rule(_matmul, lambda res, g: (g @ res[1].T, g.T @ res[0])), (X, SQUARE_W),
                   "w", "transposed: equals the expected gradient's transpose"),
    "transposed, non-square": (_rule(_matmul, lambda res, g: (g @ res[1].T, g.T @ res[0])),
                               (X, W), "w", "has shape (3, 4) where (4, 3) is expected: "
                                            "transposed?"),
    "sign flipped": (_rule(_matmul, lambda res, g: (-(g @ res[1].T), res[0].T @ g)), (X, W),
                     "x", "sign flipped"),
    "divided by N twice": (_sce_rule(lambda n: 1 / n / n), (LOGITS, ONE_HOT), "s",
                           "5× too small, exactly 1/N (s.shape[0]) = 1/5: divided by the "
                           "batch size twice?"),
    "not divided by N": (_sce_rule(lambda n: 1.0), (LOGITS, ONE_HOT), "s",
                         "5× too large, exactly N (s.shape[0]) = 5"),
    "ignores the cotangent": (
        _rule(_sce, lambda res, g: ((jax.nn.softmax(res[0]) - res[1]) / res[0].shape[0],
                                    None)), (LOGITS, ONE_HOT), "s", "ignores the cotangent"),
    "repeated indices overwrite": (
        _rule(lambda w, i: w[i], lambda res, g: (jnp.zeros_like(res[0]).at[res[1]].set(g),
                                                 None)), (TABLE, IDX), "w",
        "wrong only where an integer argument repeats an index into w"),
    "broadcast not summed": (
        _rule(lambda x, y: x + y, lambda res, g: (g, g[:res[1].shape[0]])), (X, X[:1]), "y",
        "wrong only where inputs are broadcast (y (1, 4) → (5, 4))"),
    "bias not summed": (_rule(_affine, lambda res, g: (g @ res[1].T, res[0].T @ g, g)),
                        (X, W, B), "b", "has shape (5, 3) where (3,) is expected: not summed"
                                        " over the axes the input was broadcast along"),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_planted_bug_is_caught_and_named(bug):
    rule, args, argument, words = BUGS[bug]
    argnums = (0,) if rule.fun is _sce else None
    report = check_rule(rule, *args, argnums=argnums, numerical=False, **CHEAP)
    assert not report.ok
    assert report.diagnosis(argument) is not None, report.format_table()
    assert words in report.diagnosis(argument)
    assert f"{argument}: {report.diagnosis(argument)}" in report.format_table()


def test_ignoring_the_cotangent_fails_the_linearity_check():
    rule, args, _, _ = BUGS["ignores the cotangent"]
    report = check_rule(rule, *args, argnums=(0,), numerical=False, **CHEAP)
    linearity = next(c for c in report.checks if c.name == "linearity")
    assert not linearity.ok and "ignores the cotangent" in linearity.detail


def test_a_correct_rule_passes_every_default_mode_and_dtype():
    rule = _rule(_affine, lambda res, g: (g @ res[1].T, res[0].T @ g, g.sum(axis=0)))
    report = check_rule(rule, X, W, B)
    assert report.ok, report.format_table()
    assert report.reference == "_affine"  # the undecorated primal, rule.fun
    assert [(c.dtype, c.args, c.mode) for c in report.cases] == [
        (dtype, args, mode) for dtype in ("float32", "float64")
        for args, mode in [("example", "eager"), ("example", "jit"), ("fresh 1", "eager"),
                           ("fresh 1", "jit"), ("3 stacked", "vmap")]]
    assert all(leaf.numerical is not None and leaf.numerical.entries > 0
               for c in report.cases if c.mode == "jit" for leaf in c.leaves)
    assert {c.name for c in report.checks} == {"forward", "dtypes", "linearity", "bwd shapes"}
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] and data["arguments"] == ["x", "w", "b"] and len(data["cases"]) == 10
    assert report.format_table().endswith("OK")


def test_a_rule_wrong_only_in_float32_precision_is_named():
    def bwd(res, g):  # computes in float16 for float32 arguments
        low = jnp.float16 if res[0].dtype == jnp.float32 else res[0].dtype
        return ((g * 2 * res[0]).astype(low).astype(res[0].dtype),)

    report = check_rule(_rule(lambda x: x * x, bwd), X, modes=("jit",), fresh=0,
                        numerical=False)
    assert report.failing_arguments == ("x",)
    assert not any(c.ok for c in report.cases if c.dtype == "float32")
    assert "wrong only in float32" in report.diagnosis("x")


def test_a_cotangent_of_the_wrong_dtype_fails_the_dtype_check():
    rule = _rule(lambda x: x * 3, lambda res, g: ((3 * g).astype(jnp.float16),))
    report = check_rule(rule, X, numerical=False, **CHEAP)
    dtypes = next(c for c in report.checks if c.name == "dtypes")
    assert not dtypes.ok and "cotangent of x is float16 for a float64 x" in dtypes.detail


def test_extremes_catch_a_rule_that_overflows():
    def naive_bwd(res, g):
        e = jnp.exp(-res[0])
        return (g * e / (1 + e) ** 2,)  # inf/inf at x = -1e3

    def stable_bwd(res, g):
        y = jax.nn.sigmoid(res[0])
        return (g * y * (1 - y),)

    extremes = [(jnp.array([-1e3, 0.0, 1e3]),)]
    args = (jnp.array([-1.0, 0.5, 2.0]),)
    naive = check_rule(_rule(jax.nn.sigmoid, naive_bwd), *args, extremes=extremes, **CHEAP)
    stable = check_rule(_rule(jax.nn.sigmoid, stable_bwd), *args, extremes=extremes, **CHEAP)
    assert next(c for c in naive.checks if c.name == "extremes 1").detail.endswith(
        "NaN/inf entries in the outputs or cotangents at these arguments")
    assert not naive.ok
    assert stable.ok, stable.format_table()


def test_a_reference_that_is_not_the_forward_fails_the_forward_check():
    rule = _rule(lambda x: x * x, lambda res, g: (2 * g * res[0],))
    report = check_rule(rule, X, reference=lambda x: x * x * 1.5, **CHEAP)
    forward = next(c for c in report.checks if c.name == "forward")
    assert not forward.ok and "the forwards differ" in forward.detail


def test_a_wrapper_shape_error_is_diagnosed_from_the_jax_message():
    inner = BUGS["transposed, non-square"][0]

    def wrapper(x, w):  # not a custom_vjp itself: bwd cannot be called directly
        return inner(x, w)

    report = check_rule(wrapper, X, W, reference=_matmul, numerical=False, **CHEAP)
    assert report.cases[0].error.startswith("ValueError: Custom VJP bwd rule")
    assert "transposed?" in report.diagnosis("bwd")


def test_make_args_draws_the_fresh_arguments_and_integer_arguments_are_traced():
    calls = []

    def make(rng):
        calls.append(1)
        return (jnp.asarray(rng.standard_normal((5, 3)), jnp.float32),
                jnp.asarray(rng.integers(0, 3, 5)))

    def loss(s, t):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(s), t[:, None], axis=1))

    def bwd(res, g):
        s, t = res
        return (g * (jax.nn.softmax(s) - jax.nn.one_hot(t, 3, dtype=s.dtype)) / s.shape[0], None)

    report = check_rule(_rule(loss, bwd), LOGITS, jnp.array([0, 2, 1, 1, 0]), make_args=make,
                        dtypes=("float32",), modes=("jit", "vmap"), fresh=1, numerical=False)
    assert report.ok, report.format_table()
    assert report.arguments == ("s",) and len(calls) == 2  # 1 fresh, 1 more for the vmap stack


def test_static_nondiff_arguments_stay_python_values():
    def repeat(D, x):
        return jnp.stack([x] * D)

    rule = _rule(repeat, lambda D, res, g: (g.sum(axis=0),), nondiff_argnums=(0,))
    report = check_rule(rule, 3, X, dtypes=("float32",), modes=("eager", "jit", "vmap"),
                        fresh=0, numerical=False)
    assert report.ok, report.format_table()
    assert report.arguments == ("x",)


def test_bad_calls_raise_naming_the_argument():
    with pytest.raises(TypeError, match=r"not a jax\.custom_vjp.*pass reference="):
        check_rule(_matmul, X, W)
    with pytest.raises(TypeError, match="no argument to differentiate"):
        check_rule(_rule(lambda i: i * 2, lambda res, g: (None,)), jnp.arange(3))
    with pytest.raises(ValueError, match="modes entries must be one of"):
        check_rule(BUGS["sign flipped"][0], X, W, modes=("grad",))
    with pytest.raises(ValueError, match="dtypes entries must be one of"):
        check_rule(BUGS["sign flipped"][0], X, W, dtypes=("float16",))
    with pytest.raises(ValueError, match="fresh must be an int >= 0"):
        check_rule(BUGS["sign flipped"][0], X, W, fresh=-1)
    with pytest.raises(TypeError, match="argnums entry 1 must be a floating array"):
        check_rule(BUGS["repeated indices overwrite"][0], TABLE, IDX, argnums=(1,))


def test_exported_lazily_from_fnnet():
    assert fnnet.check_rule is check_rule
    assert "check_rule" in fnnet.__all__ and "check_layer" in fnnet.__all__


def test_float32_tolerances_follow_the_references_own_rounding():
    # Column 0 holds two close samples: its batch variance is tiny, so any float32 VJP of
    # batch norm (fnnet's rule and autodiff of the reference alike) is ~1e-3 off float64.
    x = jnp.array([[1.2812, 1.0907, 1.6615], [1.2658, 0.7925, 1.4555]], jnp.float32)
    gamma, beta = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.1, 0.2, 0.3])
    args = (functools.partial(OPS["batch_norm"].manual, eps=1e-5), x, gamma, beta)
    options = dict(reference=functools.partial(OPS["batch_norm"].reference, eps=1e-5),
                   dtypes=("float32",), modes=("eager",), fresh=0, numerical=False, seed=2)
    report = check_rule(*args, **options)
    assert report.ok, report.format_table()
    assert any("tolerances widened to 4× the reference's own float32 rounding" in note
               for note in report.notes)
    assert not check_rule(*args, rtol=1e-5, **options).ok  # a fixed rtol is not widened
