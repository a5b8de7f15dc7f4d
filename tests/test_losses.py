"""Losses: the cotangent is used, extreme logits, label forms, out-of-range labels, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet import autodiff, manual
from tests.helpers import assert_tree_allclose

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

BOTH = [manual, autodiff]
IDS = ["manual", "autodiff"]
LOSSES = ["softmax_cross_entropy", "cross_entropy_error", "mean_squared_error"]


def _loss_args(name: str, dtype=jnp.float32):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((4, 5)), dtype)
    if name == "mean_squared_error":
        return x, jnp.asarray(rng.standard_normal((4, 5)), dtype)
    if name == "cross_entropy_error":
        x = jax.nn.softmax(x)
    return x, jnp.array([0, 4, 2, 2])


@pytest.mark.parametrize("name", LOSSES)
def test_the_incoming_cotangent_scales_the_gradient(name):
    x, t = _loss_args(name)
    loss = getattr(manual, name)

    @jax.jit  # one program (eagerly, each primitive would compile on its own)
    def grads(x, t):
        return (jax.grad(loss)(x, t), jax.grad(lambda v: 2 * loss(v, t))(x),
                jax.grad(lambda v: 2 * getattr(autodiff, name)(v, t))(x))

    once, twice, reference = grads(x, t)
    np.testing.assert_allclose(twice, 2 * once, rtol=1e-6)
    np.testing.assert_allclose(twice, reference, rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_gradient_is_y_minus_t_over_n():
    logits = jnp.array([[2.0, 1.0, 0.1], [0.0, 0.0, 3.0]])
    labels = jnp.array([0, 1])
    y = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = (y - np.eye(3)[labels]) / 2
    np.testing.assert_allclose(jax.jit(jax.grad(manual.softmax_cross_entropy))(logits, labels),
                               expected, rtol=1e-6)


def test_extreme_logits_give_finite_loss_and_gradients_equal_to_the_reference(dtype):
    logits = jnp.array([[1e4, -1e4, -jnp.inf, 0.0],
                        [-1e4, 1e4, 5.0, -jnp.inf],
                        [0.0, 1e4, -1e4, 3.0]], dtype)
    indices = jnp.array([0, 2, 0])  # no label sits on a -inf logit
    forms = {"int": indices, "onehot": jnp.asarray(np.eye(4)[[0, 2, 0]], dtype)}

    @jax.jit  # both label forms, manual and reference: one program per dtype
    def run(logits, forms):
        return {form: [jax.value_and_grad(ops.softmax_cross_entropy)(logits, labels)
                       for ops in BOTH] for form, labels in forms.items()}

    for form, ((loss_m, grad_m), (loss_r, grad_r)) in run(logits, forms).items():
        assert np.isfinite(loss_m) and np.all(np.isfinite(grad_m)), form
        # row 0 is right with certainty (0); rows 1 and 2 are wrong by 1e4 − 5 and 1e4.
        np.testing.assert_allclose(float(loss_m), (0 + (1e4 - 5) + 1e4) / 3, rtol=1e-6)
        assert_tree_allclose(loss_m, loss_r, dtype)
        assert_tree_allclose(grad_m, grad_r, dtype)
        np.testing.assert_allclose(grad_m[1], [0, 1 / 3, -1 / 3, 0], atol=1e-7)


def test_a_label_on_a_minus_inf_logit_gives_an_infinite_loss():
    logits = jnp.array([[0.0, -jnp.inf]])
    for ops in BOTH:
        assert float(ops.softmax_cross_entropy(logits, jnp.array([1]))) == np.inf


def test_integer_and_one_hot_labels_agree(dtype):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.standard_normal((6, 7)), dtype)
    labels = jnp.asarray(rng.integers(0, 7, 6))
    one_hot = jnp.asarray(np.eye(7)[np.asarray(labels)], dtype)

    @jax.jit  # every (ops, loss, label form) in one program per dtype
    def run(logits, labels, one_hot):
        results = []
        for ops in BOTH:
            for name in ("softmax_cross_entropy", "cross_entropy_error"):
                scores = logits if name == "softmax_cross_entropy" else jax.nn.softmax(logits)
                loss = getattr(ops, name)
                results.append((jax.value_and_grad(loss)(scores, labels),
                                jax.value_and_grad(loss)(scores, one_hot)))
        return results

    for by_index, by_one_hot in run(logits, labels, one_hot):
        assert_tree_allclose(by_index, by_one_hot, dtype)


def test_soft_labels_that_do_not_sum_to_one_use_the_general_rule():
    logits = jnp.array([[1.0, 2.0, 3.0]])
    labels = jnp.array([[0.5, 0.5, 1.0]])  # Σt = 2: dx = y·Σt − t, not y − t
    grad, reference = jax.jit(lambda x, t: [jax.grad(ops.softmax_cross_entropy)(x, t)
                                            for ops in BOTH])(logits, labels)
    y = np.exp(logits[0] - 3.0) / np.exp(logits[0] - 3.0).sum()
    np.testing.assert_allclose(grad[0], 2 * y - labels[0], atol=1e-7)
    np.testing.assert_allclose(grad, reference, atol=1e-7)  # 2y − t cancels to ~0.01 in column 1


def test_book_cross_entropy_saturates_where_softmax_cross_entropy_does_not():
    # The book's −log(y + 1e-7) caps the loss at ≈ 16.1 once the true class is certain-wrong.
    logits = jnp.array([[0.0, 40.0]])
    labels = jnp.array([0])

    def book_loss(z, t):
        return manual.cross_entropy_error(manual.softmax(z), t)

    @jax.jit  # one program (eagerly, each primitive would compile on its own)
    def run(z, t):
        return (jax.value_and_grad(book_loss)(z, t),
                jax.value_and_grad(manual.softmax_cross_entropy)(z, t))

    (book, book_grad), (exact, exact_grad) = run(logits, labels)
    np.testing.assert_allclose(float(book), -np.log(1e-7), rtol=1e-5)
    np.testing.assert_allclose(float(exact), 40.0, rtol=1e-6)
    assert abs(float(book_grad[0, 0])) < 1e-9  # (y − t)/N would be −1
    np.testing.assert_allclose(exact_grad[0, 0], -1.0)


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_out_of_range_labels_raise_eagerly_and_give_nan_under_jit(ops):
    logits = jnp.zeros((2, 3))
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(ValueError, match=r"labels must lie in \[0, C\) = \[0, 3\)"):
            ops.softmax_cross_entropy(logits, jnp.array(bad))
    loss, grad = jax.jit(jax.value_and_grad(ops.softmax_cross_entropy))(logits, jnp.array([0, 3]))
    assert np.isnan(float(loss))
    assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(grad[0]))


@pytest.mark.parametrize("name", LOSSES)
def test_bfloat16_in_bfloat16_gradient_out(name):
    x, t = _loss_args(name, jnp.bfloat16)
    (value, grad), reference = jax.jit(lambda x, t: (
        jax.value_and_grad(getattr(manual, name))(x, t),
        jax.grad(getattr(autodiff, name))(x, t)))(x, t)
    assert value.dtype == jnp.bfloat16 and grad.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(grad, np.float32), np.asarray(reference, np.float32),
                               rtol=2e-2, atol=1e-3)


def test_mean_squared_error_value_and_rule():
    y = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [3.0, 3.0]])
    results = jax.jit(lambda y, t: [(ops.mean_squared_error(y, t),
                                     jax.grad(ops.mean_squared_error, (0, 1))(y, t))
                                    for ops in BOTH])(y, t)
    for value, (dy, dt) in results:
        np.testing.assert_allclose(float(value), (1 + 4) / (2 * 2))
        np.testing.assert_allclose(dy, (y - t) / 2)
        np.testing.assert_allclose(dt, -(y - t) / 2)


def test_softmax_rows_sum_to_one_even_for_huge_logits():
    x = jnp.array([[1e4, 1e4 - 1.0, -1e4], [0.0, 0.0, 0.0]])
    for y in jax.jit(lambda x: [ops.softmax(x) for ops in BOTH])(x):
        assert np.all(np.isfinite(y))
        np.testing.assert_allclose(y.sum(axis=-1), [1.0, 1.0], rtol=1e-6)


BAD_INPUTS = [
    ("softmax_cross_entropy", (jnp.zeros(3), jnp.array([0])), ValueError,
     r"logits must be 2-D \(batch N, classes C\); got shape \(3,\)"),
    ("softmax_cross_entropy", (jnp.zeros((2, 1)), jnp.array([0, 0])), ValueError,
     r"needs C >= 2 classes; got shape \(2, 1\)"),
    ("softmax_cross_entropy", (jnp.zeros((2, 3)), jnp.array([0, 1, 2])), ValueError,
     r"integer labels must be class indices of shape \(N,\) = \(2,\); got shape \(3,\)"),
    ("softmax_cross_entropy", (jnp.zeros((2, 3)), jnp.zeros((2, 4))), ValueError,
     r"float \(one-hot or soft\) labels must have the shape of logits, \(N, C\) = \(2, 3\); "
     r"got \(2, 4\)"),
    ("softmax_cross_entropy", (jnp.zeros((2, 3)), jnp.zeros((2, 3), jnp.int32)), ValueError,
     r"integer labels must be class indices .* got shape \(2, 3\)"),
    ("softmax_cross_entropy", (jnp.zeros((2, 3)), jnp.array([True, False])), TypeError,
     r"labels must be integer class indices .* got dtype bool"),
    ("softmax_cross_entropy", (jnp.zeros((2, 3), jnp.int32), jnp.array([0, 1])), TypeError,
     r"logits must have a floating-point dtype .* got int32"),
    ("cross_entropy_error", (jnp.full((2, 3), 1 / 3), jnp.zeros((2, 2))), ValueError,
     r"cross_entropy_error: float \(one-hot or soft\) labels must have the shape of probs"),
    ("mean_squared_error", (jnp.zeros((2, 3)), jnp.zeros((3,))), ValueError,
     r"t must have the same shape as y, \(2, 3\); got \(3,\)"),
    ("mean_squared_error", (jnp.zeros(()), jnp.zeros(())), ValueError, r"batch axis"),
    ("softmax", (jnp.zeros(()),), ValueError, r"softmax: x must have a class axis"),
]


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
@pytest.mark.parametrize(("name", "args", "error", "message"), BAD_INPUTS,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_is_a_clear_error(ops, name, args, error, message):
    with pytest.raises(error, match=message):
        getattr(ops, name)(*args)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "cross_entropy_error"])
def test_manual_gradient_rows_of_out_of_range_labels_are_nan_under_jit(name):
    # Guards the rules' formulation: XLA rewrites a * convert(pred) into select(pred, a, 0),
    # which would silently turn NaN rows into zeros under jit.
    x = jax.nn.softmax(jnp.ones((3, 4))) if name == "cross_entropy_error" else jnp.zeros((3, 4))
    grad = jax.jit(jax.grad(getattr(manual, name)))(x, jnp.array([0, 4, -1]))
    assert np.all(np.isfinite(grad[0])) and np.all(np.isnan(grad[1:]))
