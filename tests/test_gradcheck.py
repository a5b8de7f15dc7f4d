"""fnnet.gradcheck: the book's net passes tightly in float64, a wrong rule is caught and named,
subsets are deterministic, float32 works, and the report serialises and prints."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnnet
from fnnet import autodiff, manual
from fnnet.data import load_dataset
from fnnet.gradcheck import (
    FLOORS,
    GradReport,
    _subset,
    compare_grads,
    compare_model_grads,
    gradcheck_model,
)

# --- a deliberately wrong rule (test only) -------------------------------------------------


@jax.custom_vjp
def wrong_square(x: jax.Array) -> jax.Array:
    """``x²`` whose backward drops the factor 2: ``dx = g·x`` instead of ``g·2x``."""
    return x * x


wrong_square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))


def _tiny_loss(square):
    """``L = mean(square(x·W)) + mean(x·v)``: params ``{"layer": {"W"}, "shift": {"v"}}``."""

    def loss(params, x):
        return jnp.mean(square(x @ params["layer"]["W"])) + jnp.mean(x @ params["shift"]["v"])

    return loss


LOSS_WRONG, LOSS_RIGHT = _tiny_loss(wrong_square), _tiny_loss(jnp.square)


def _tiny_problem(dtype=jnp.float64):
    rng = np.random.default_rng(0)
    params = {"layer": {"W": jnp.asarray(rng.standard_normal((4, 3)), dtype)},
              "shift": {"v": jnp.asarray(rng.standard_normal((4,)), dtype)}}
    return params, jnp.asarray(rng.standard_normal((5, 4)), dtype)


@pytest.fixture(scope="module")
def digits_batch():
    data = load_dataset("digits")
    rows = np.random.default_rng(0).permutation(len(data.x_train))[:3]
    return data.x_train[rows], data.t_train[rows]


# --- the book's nets pass --------------------------------------------------------------------


def test_two_layer_net_float64_passes_tightly_on_every_leaf(x64, digits_batch):
    x, t = digits_batch
    build = functools.partial(fnnet.two_layer_net, 64, 50, 10, dtype=jnp.float64)
    report = compare_model_grads(build, jnp.asarray(x, jnp.float64), t, key=jax.random.key(0))
    assert report.ok and report.failures == ()
    assert [leaf.path for leaf in report.leaves] == ["affine1/W", "affine1/b", "affine2/W",
                                                     "affine2/b"]
    for leaf in report.leaves:
        assert leaf.autodiff.max_rel <= 1e-10 and leaf.autodiff.entries == np.prod(leaf.shape)
        assert leaf.numerical.max_rel <= 1e-6
        assert leaf.numerical.entries == min(64, np.prod(leaf.shape))
        assert leaf.autodiff.cosine > 1 - 1e-12 and leaf.numerical.cosine > 1 - 1e-9
    assert report.numerical_dtype == "float64" and report.notes == ()
    assert report.leaf("affine1/W").floor == pytest.approx(FLOORS["float64"] * report.loss)


@pytest.fixture(scope="module")
def multi_layer_report() -> GradReport:
    """A check with the defaults (float64, matmul precision highest) of a 4-layer MLP."""
    return gradcheck_model(net="mlp", hidden=(20, 20, 20), weight_init="he", max_entries=16)


def test_gradcheck_model_on_real_samples_multi_layer(multi_layer_report):
    report = multi_layer_report
    assert not jax.config.jax_enable_x64  # float64 was on for the call only (scoped)
    assert report.ok, report.format_table()
    assert len(report.leaves) == 8 and report.leaf("affine4/b").shape == (10,)
    assert report.leaf("affine2/W").numerical.entries == 16


def test_gradcheck_model_float32_checks_against_a_float64_reference():
    report = gradcheck_model(hidden=(10,), dtype="float32", max_entries=8)
    assert report.ok, report.format_table()
    assert report.numerical_dtype == "float64"
    assert {leaf.dtype for leaf in report.leaves} == {"float32"}


def test_gradcheck_model_argument_errors():
    with pytest.raises(TypeError, match="positional"):
        gradcheck_model("two-layer")  # keyword-only: net=...
    with pytest.raises(ValueError, match=r"net must be one of .*got 'three-layer'"):
        gradcheck_model(net="three-layer")
    with pytest.raises(ValueError, match=r"exactly one hidden layer; got 2 hidden sizes"):
        gradcheck_model(net="two-layer", hidden=(10, 10))
    with pytest.raises(ValueError, match=r"dtype must be 'float32' or 'float64'; got 'int8'"):
        gradcheck_model(dtype="int8")
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1; got 0"):
        gradcheck_model(batch_size=0)


# --- a wrong rule is caught and named ------------------------------------------------------


def test_dropped_factor_two_fails_and_names_the_leaf(x64):
    params, x = _tiny_problem()
    report = compare_grads(LOSS_WRONG, LOSS_RIGHT, params, x)
    assert not report.ok
    assert report.failures == ("layer/W",)
    bad, good = report.leaf("layer/W"), report.leaf("shift/v")
    assert not bad.autodiff.ok and not bad.numerical.ok
    # Half the true gradient: relative error 1/2 everywhere — yet the direction is right, so
    # the cosine alone would not have caught it.
    assert bad.autodiff.max_rel == pytest.approx(0.5, rel=1e-9)
    assert bad.numerical.max_rel == pytest.approx(0.5, rel=1e-6)
    assert bad.autodiff.cosine == pytest.approx(1.0, abs=1e-12)
    assert good.ok and good.autodiff.max_abs == 0.0
    table = report.format_table()
    assert "FAIL: layer/W" in table
    assert [line.split()[-1] for line in table.splitlines() if line.startswith("layer/W")] == [
        "FAIL"]


def test_numerical_check_catches_what_manual_vs_autodiff_cannot(x64):
    # The same wrong rule on both sides: they agree perfectly; only central differences see it.
    params, x = _tiny_problem()
    report = compare_grads(LOSS_WRONG, LOSS_WRONG, params, x)
    bad = report.leaf("layer/W")
    assert bad.autodiff.ok and bad.autodiff.max_abs == 0.0
    assert not bad.numerical.ok and report.failures == ("layer/W",)
    autodiff_only = compare_grads(LOSS_WRONG, LOSS_WRONG, params, x,
                                  numerical=False)
    assert autodiff_only.ok and autodiff_only.leaf("layer/W").numerical is None


def test_tolerance_overrides(x64):
    params, x = _tiny_problem()
    args = (LOSS_WRONG, LOSS_RIGHT, params, x)
    assert compare_grads(*args, rtol=0.6).ok
    assert not compare_grads(*args, rtol=(0.6, 0.4)).ok  # (autodiff, numerical)
    assert compare_grads(*args, rtol=(1e-10, 1e-6), atol=10.0).ok
    loose = compare_grads(*args, rtol=0.6)
    assert loose.leaf("layer/W").autodiff.rtol == 0.6
    assert compare_grads(*args, floor=1e3, rtol=(2e-4, 2e-4)).leaf("layer/W").floor == (
        pytest.approx(1e3 * max(1.0, abs(loose.loss))))


# --- sampling, dtypes, shapes of params ----------------------------------------------------


def test_subset_sampling_is_deterministic_and_documented(x64, digits_batch):
    first = _subset(3200, 64, seed=0, leaf_index=0)
    np.testing.assert_array_equal(first, _subset(3200, 64, seed=0, leaf_index=0))
    assert len(np.unique(first)) == 64 and np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(
        first, np.sort(np.random.default_rng([0, 0]).choice(3200, 64, replace=False)))
    assert not np.array_equal(first, _subset(3200, 64, seed=1, leaf_index=0))
    assert not np.array_equal(first, _subset(3200, 64, seed=0, leaf_index=1))
    np.testing.assert_array_equal(_subset(10, 64, seed=0, leaf_index=3), np.arange(10))
    np.testing.assert_array_equal(_subset(100, None, seed=0, leaf_index=3), np.arange(100))

    x, t = digits_batch
    x = jnp.asarray(x, jnp.float64)
    models = [fnnet.two_layer_net(64, 10, 10, dtype=jnp.float64, grads=g)
              for g in ("manual", "autodiff")]
    params = models[0].init(jax.random.key(0))
    check = functools.partial(compare_grads, models[0].loss, models[1].loss, params, x, t)
    runs = [check(max_entries=5, seed=seed).to_dict() for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0]["leaves"][0]["numerical"] != runs[2]["leaves"][0]["numerical"]
    assert [leaf["numerical"]["entries"] for leaf in runs[0]["leaves"]] == [5, 5, 5, 5]
    every = check(max_entries=None)
    assert [leaf.numerical.entries for leaf in every.leaves] == [640, 10, 100, 10]
    assert every.ok


def test_float32_without_x64_computes_numerically_in_float32_and_says_so():
    assert not jax.config.jax_enable_x64
    rng = np.random.default_rng(1)
    build = functools.partial(fnnet.two_layer_net, 6, 5, 3, activation="sigmoid",
                              weight_init="xavier")
    x = jnp.asarray(rng.random((4, 6)), jnp.float32)
    report = compare_model_grads(build, x, jnp.array([0, 1, 2, 1]), key=jax.random.key(1))
    assert report.numerical_dtype == "float32"
    assert any("float32" in note for note in report.notes)
    assert report.ok, report.format_table()
    assert all(leaf.dtype == "float32" and leaf.autodiff.max_rel < 1e-5 for leaf in report.leaves)
    assert "note: numerical gradient computed in float32" in report.format_table()


def test_float32_params_with_x64_use_a_float64_reference(x64):
    params, x = _tiny_problem(jnp.float32)
    report = compare_grads(LOSS_RIGHT, LOSS_RIGHT, params, x)
    assert report.ok and report.numerical_dtype == "float64"
    assert all(leaf.numerical.max_rel < 1e-5 for leaf in report.leaves)


def test_any_pytree_of_params(x64):
    w = jnp.arange(1.0, 4.0, dtype=jnp.float64)
    single = compare_grads(lambda p: jnp.sum(manual.tanh(p)), lambda p: jnp.sum(autodiff.tanh(p)),
                           w)
    assert single.ok and [leaf.path for leaf in single.leaves] == ["params"]
    pair = compare_grads(lambda p, x: manual.mul(p[0], x).sum() + manual.sum(p[1]),
                         lambda p, x: autodiff.mul(p[0], x).sum() + autodiff.sum(p[1]),
                         [w, jnp.ones((2, 2), jnp.float64)], w)
    assert pair.ok and [leaf.path for leaf in pair.leaves] == ["0", "1"]


def test_argument_errors():
    with pytest.raises(TypeError, match=r"parameter step must be floating .*got int32"):
        compare_grads(jnp.sum, jnp.sum, {"step": jnp.arange(3)})
    with pytest.raises(ValueError, match=r"max_entries must be >= 1 or None; got 0"):
        compare_grads(jnp.sum, jnp.sum, jnp.ones(3), max_entries=0)


# --- the report ----------------------------------------------------------------------------


def test_to_dict_is_json_serialisable_and_format_table_names_every_leaf(x64):
    params, x = _tiny_problem()
    report = compare_grads(LOSS_WRONG, LOSS_RIGHT, params, x)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["ok"] is False and data["failures"] == ["layer/W"]
    assert [leaf["path"] for leaf in data["leaves"]] == ["layer/W", "shift/v"]
    assert data["leaves"][0]["shape"] == [4, 3] and data["leaves"][0]["ok"] is False
    assert data["leaves"][0]["autodiff"]["max_rel"] == pytest.approx(0.5)
    assert set(data["leaves"][0]["numerical"]) == {
        "max_abs", "mean_abs", "max_rel", "cosine", "entries", "rtol", "atol", "ok", "skipped",
        "max_magnitude", "zero_tol", "status"}
    assert data["leaves"][0]["status"] == "FAIL" and data["not_checked"] == []
    table = report.format_table()
    for path in ("layer/W", "shift/v"):
        assert path in table
    assert "manual vs autodiff" in table and "manual vs numerical" in table


def test_nan_gradients_fail_and_serialise_as_null(x64):
    def loss(p):
        return jnp.sum(jnp.sqrt(p))  # d/dp at 0 is inf; at -1 the value is NaN

    report = compare_grads(loss, loss, jnp.array([-1.0, 4.0]), numerical=False)
    assert not report.ok and report.failures == ("params",)
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["leaves"][0]["autodiff"]["max_abs"] is None
    assert isinstance(report, GradReport)


# --- kinks: not comparable, never failed ---------------------------------------------------


@jax.custom_vjp
def relu_without_mask(x: jax.Array) -> jax.Array:
    """ReLU whose backward forgets the mask (``dx = g``): wrong wherever ``x < 0``."""
    return jnp.maximum(x, 0)


relu_without_mask.defvjp(lambda x: (jnp.maximum(x, 0), None), lambda _, g: (g,))


def _relu_sum(relu):
    return lambda params, scale: scale * jnp.sum(relu(params["w"]))


def test_an_entry_whose_step_crosses_a_kink_is_not_comparable_rather_than_failed(x64):
    # w[0] sits 1e-7 from ReLU's kink: the central difference (step ~6e-6) straddles it and
    # gives about 1/2 where the true derivative is 1. Estimates at h and h/2 disagree there.
    params = {"w": jnp.array([1e-7, 0.5, -0.3, 2.0])}
    report = compare_grads(_relu_sum(jax.nn.relu), _relu_sum(jax.nn.relu), params, 1.0)
    leaf = report.leaf("w")
    assert report.ok, report.format_table()
    assert (leaf.numerical.entries, leaf.numerical.skipped) == (4, 1)
    assert "1 entry not comparable" in " ".join(report.notes)
    assert "4 (1 kink)" in report.format_table()


def test_a_wrong_rule_still_fails_beside_kinks(x64):
    params = {"w": jnp.array([1e-7, 0.5, -0.3, 2.0])}
    wrong = _relu_sum(relu_without_mask)
    report = compare_grads(wrong, wrong, params, 1.0)  # autodiff agrees: only numerical sees it
    assert report.failures == ("w",)
    assert report.leaf("w").numerical.skipped == 1


def test_a_kink_exactly_at_the_point_is_not_comparable_rather_than_failed(x64):
    # relu(b + x·w) with b = 0 and x = 0: the ReLU input is exactly 0, where the rules take the
    # subgradient 0 but central differences average the two slopes (0.5).
    def loss(ops):
        return lambda p, x: ops.sum(ops.relu(ops.add(p["b"], ops.mul(x, p["w"]))))

    params = {"b": jnp.zeros(3), "w": jnp.ones(3)}
    report = compare_grads(loss(fnnet.manual), loss(fnnet.autodiff), params, jnp.zeros(3))
    assert report.ok, report.format_table()
    assert report.leaf("b").numerical.skipped == 3
    assert any("not comparable" in note for note in report.notes)
    # Nothing of b was compared numerically: "not checked", never "ok" (issue 18).
    assert report.leaf("b").numerical.status == "not checked"
    assert report.leaf("b").status == "not checked" and report.not_checked == ("b",)
    row = next(line for line in report.format_table().splitlines() if line.startswith("b "))
    assert row.split()[-1] == "checked" and "0 of 3 (3 kinks)" in row and " ok" not in row
    assert report.format_table().endswith("OK (not checked numerically: b)")
    assert report.to_dict()["leaves"][0]["status"] == "not checked"


def test_a_gradient_zero_by_construction_is_reported_as_zero_with_its_tolerance(x64):
    """A bias before batch norm has a gradient of 0 up to rounding (the normalisation cancels
    any shift); its cosine is noise, so the report says "zero" and states the absolute
    tolerance instead (issue 18: cosines 0.66, 0.27, 0.000000 were shown as "ok")."""
    build = functools.partial(fnnet.multi_layer_net, 6, [4], 3, batchnorm=True,
                              dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(5, 6)))
    report = compare_model_grads(build, x, jnp.array([0, 1, 2, 0, 1]))
    b, W = report.leaf("affine1/b"), report.leaf("affine1/W")
    assert report.ok and b.status == "zero" and W.status == "ok"
    assert b.autodiff.status == b.numerical.status == "zero"
    assert b.numerical.zero_tol == pytest.approx(1e-6 * b.floor)  # rtol · floor
    assert b.numerical.max_magnitude <= b.numerical.zero_tol
    row = next(line for line in report.format_table().splitlines()
               if line.startswith("affine1/b "))
    assert row.split()[-1] == "zero" and row.split()[4] == "zero"  # no cosine of noise
    assert (f"|g| <= {b.autodiff.zero_tol:.1e} vs autodiff, <= {b.numerical.zero_tol:.1e} vs "
            f"numerical") in report.format_table()
    assert report.zero == ("affine1/b",) and report.to_dict()["leaves"][1]["status"] == "zero"


def test_gradcheck_model_checks_the_chapter_6_nets():
    """Batch norm and dropout; the chapter 7 conv net's check runs through the command in
    tests/test_cli.py (test_gradcheck_of_the_simple_conv_net_passes: the same call)."""
    report = gradcheck_model(max_entries=8, net="mlp", hidden=(12, 8), weight_init="he",
                             batchnorm=True, dropout=0.5)
    assert report.ok, report.format_table()
    assert {leaf.path.split("/")[0] for leaf in report.leaves} >= {"batchnorm1", "affine3"}


def test_the_report_states_its_matmul_precision_highest_by_default(multi_layer_report):
    report = multi_layer_report  # no matmul_precision given
    assert report.matmul_precision == "highest"
    assert "matmul precision: highest (float32 products: full float32" in report.format_table()
    assert report.to_dict()["matmul_precision"] == "highest"
    assert gradcheck_model(hidden=(5,), max_entries=4,
                           matmul_precision="default").matmul_precision == "default"
