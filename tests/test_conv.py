"""conv2d and max_pool2d: im2col/col2im adjointness, the rules in closed form, dtypes, the tie
rule of max pooling, bad arguments. (Their agreement with jax.grad of the references under
jit and vmap, in float32 and float64, and numerically, runs from the op table in
tests/test_ops_agreement.py.)"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnnet.ops import conv
from tests.helpers import normal

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")


def test_col2im_is_the_adjoint_of_im2col(x64):
    # <im2col(x), c> = <x, col2im(c)> for all x, c: what makes dx = col2im(dcol) right.
    rng = np.random.default_rng(2)
    x = normal(rng, (2, 3, 6, 7), jnp.float64)
    col_shape = jax.eval_shape(lambda x: conv._im2col(x, 3, 2, 2), x).shape
    c = normal(rng, col_shape, jnp.float64)
    # one program (eagerly, each primitive would compile on its own)
    lhs, rhs = jax.jit(lambda x, c: (jnp.vdot(conv._im2col(x, 3, 2, 2), c),
                                     jnp.vdot(x, conv._col2im(c, x.shape, 3, 2, 2))))(x, c)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_conv2d_rule_in_closed_form():
    # A 1×1 kernel is an affine map over channels at each pixel.
    rng = np.random.default_rng(3)
    x, W, b = normal(rng, (2, 3, 2, 2), jnp.float32), normal(rng, (4, 3, 1, 1), jnp.float32), \
        normal(rng, (4,), jnp.float32)
    g = normal(rng, (2, 4, 2, 2), jnp.float32)
    dx, dW, db = jax.jit(lambda x, W, b, g: jax.vjp(conv.conv2d, x, W, b)[1](g))(x, W, b, g)
    x, W, g = (np.asarray(a, np.float64) for a in (x, W, g))
    np.testing.assert_allclose(dx, np.einsum("nfhw,fc->nchw", g, W[:, :, 0, 0]), rtol=1e-5)
    np.testing.assert_allclose(dW[:, :, 0, 0], np.einsum("nfhw,nchw->fc", g, x), rtol=1e-5)
    np.testing.assert_allclose(db, g.sum(axis=(0, 2, 3)), rtol=1e-5)


def test_mixed_dtypes_give_each_primal_its_own_cotangent_dtype():
    x = jnp.ones((1, 2, 4, 4), jnp.bfloat16)
    W, b = jnp.ones((3, 2, 2, 2), jnp.float32), jnp.zeros((3,), jnp.float32)
    grads = jax.jit(jax.grad(lambda *a: conv.conv2d(*a, pad=1).sum(), argnums=(0, 1, 2)))(
        x, W, b)
    assert [g.dtype for g in grads] == [jnp.bfloat16, jnp.float32, jnp.float32]
    dx = jax.jit(jax.grad(lambda x: conv.max_pool2d(x, pool_h=2, pool_w=2, stride=2).sum()))(x)
    assert dx.dtype == jnp.bfloat16


# --- ties in max pooling -------------------------------------------------------------------

POOL_FNS = [conv.max_pool2d, conv.max_pool2d_reference]
POOL_IDS = ["manual", "reference"]


def _numbered_windows_grad(fn, x, **kwargs):
    """The VJP of ``fn`` under the cotangent 1, 2, 3, … (one number per window), jitted."""

    @jax.jit
    def run(x):
        y, pullback = jax.vjp(functools.partial(fn, **kwargs), x)
        return pullback(jnp.arange(1, 1 + y.size, dtype=y.dtype).reshape(y.shape))[0]

    return run(x)


@pytest.mark.parametrize("fn", POOL_FNS, ids=POOL_IDS)
def test_ties_route_all_of_g_to_the_first_maximum_in_row_major_order(fn):
    # The manual rule is the book's np.argmax (first maximum). jax.grad of reduce_window max
    # does the same (select_and_scatter_add with select_prim=ge keeps the earlier entry on a
    # tie); this test pins both, so a change in either shows here.
    grad = _numbered_windows_grad
    x = jnp.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(grad(fn, x, pool_h=2, pool_w=2, stride=2)[0, 0],
                                  [[1, 0], [0, 0]])
    # Overlapping 2×2 windows, stride 1, cotangents 1, 2, 3, 4 in the four windows:
    # window (0,0) ties at (0,1),(1,0) → (0,1); window (0,1) ties at (0,1),(0,2),(1,2) → (0,1);
    # window (1,0) ties at (1,0),(2,0) → (1,0); window (1,1) has one maximum, (1,2).
    x = jnp.array([[[[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(grad(fn, x, pool_h=2, pool_w=2, stride=1)[0, 0],
                                  [[0, 1 + 2, 0], [3, 0, 4], [0, 0, 0]])
    # −0.0 and 0.0 are equal: a tie, the first wins.
    x = jnp.array([[[[0.0, -0.0], [-0.0, 0.0]]]])
    np.testing.assert_array_equal(grad(fn, x, pool_h=2, pool_w=2, stride=2)[0, 0],
                                  [[1, 0], [0, 0]])


@pytest.mark.parametrize("fn", POOL_FNS, ids=POOL_IDS)
def test_padding_is_minus_infinity_so_it_is_never_the_maximum(fn):
    x = -jnp.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    pool = functools.partial(fn, pool_h=2, pool_w=2, stride=2, pad=1)
    y, dx = jax.jit(lambda x: (pool(x), jax.grad(lambda x: pool(x).sum())(x)))(x)
    np.testing.assert_array_equal(y[0, 0], [[-1, -2], [-4, -5]])
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


# --- bad arguments -------------------------------------------------------------------------

CONV_FNS = [conv.conv2d, conv.conv2d_reference]
CONV_IDS = ["manual", "reference"]


@pytest.mark.parametrize("fn", CONV_FNS, ids=CONV_IDS)
@pytest.mark.parametrize(("x_shape", "w_shape", "b_shape", "kwargs", "error", "match"), [
    ((1, 1, 4, 4), (1, 1, 5, 3), (1,), {},
     ValueError, r"conv2d: the kernel \(FH, FW\) \(5, 3\) is larger than the padded input "
                 r"\(H \+ 2·pad, W \+ 2·pad\) = \(4, 4\)"),
    ((1, 1, 2, 2), (1, 1, 5, 5), (1,), dict(pad=1), ValueError, r"= \(4, 4\)"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (1,), dict(stride=0),
     ValueError, r"conv2d: stride must be >= 1; got 0"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (1,), dict(stride=-2), ValueError, r"stride must be >= 1"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (1,), dict(pad=-1),
     ValueError, r"conv2d: pad must be >= 0; got -1"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (1,), dict(stride=1.5),
     TypeError, r"conv2d: stride must be a Python int .*got float"),
    ((1, 1, 4, 4), (1, 1, 2, 2), (1,), dict(pad=True), TypeError, r"pad must be a Python int"),
    ((1, 3, 4, 4), (2, 2, 2, 2), (2,), {},
     ValueError, r"W.shape\[1\] \(kernel channels\) must equal x.shape\[1\] \(input channels "
                 r"C\); got x.shape=\(1, 3, 4, 4\), W.shape=\(2, 2, 2, 2\)"),
    ((1, 2, 4, 4), (3, 2, 2, 2), (2,), {},
     ValueError, r"b must have shape \(FN,\) = \(3,\) for W.shape=\(3, 2, 2, 2\); got \(2,\)"),
    ((1, 2, 4, 4), (3, 2, 2, 2), (1, 3), {}, ValueError, r"b must have shape \(FN,\)"),
    ((2, 4, 4), (3, 2, 2, 2), (3,), {},
     ValueError, r"conv2d: x must be 4-D \(N, C, H, W\); got shape \(2, 4, 4\)"),
    ((1, 2, 4, 4), (2, 2, 2), (3,), {},
     ValueError, r"conv2d: W must be 4-D \(FN, C, FH, FW\); got shape \(2, 2, 2\)"),
])
def test_conv2d_bad_arguments_are_named(fn, x_shape, w_shape, b_shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(jnp.zeros(x_shape), jnp.zeros(w_shape), jnp.zeros(b_shape), **kwargs)


def test_conv2d_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match=r"conv2d: x must have a floating-point dtype.*int32"):
        conv.conv2d(jnp.zeros((1, 1, 3, 3), jnp.int32), jnp.zeros((1, 1, 2, 2)), jnp.zeros(1))


@pytest.mark.parametrize("fn", POOL_FNS, ids=POOL_IDS)
@pytest.mark.parametrize(("x_shape", "kwargs", "error", "match"), [
    ((1, 1, 3, 3), dict(pool_h=4, pool_w=2, stride=1),
     ValueError, r"max_pool2d: the window \(pool_h, pool_w\) \(4, 2\) is larger than the "
                 r"padded input \(H \+ 2·pad, W \+ 2·pad\) = \(3, 3\)"),
    ((1, 1, 3, 3), dict(pool_h=2, pool_w=2, stride=0),
     ValueError, r"max_pool2d: stride must be >= 1; got 0"),
    ((1, 1, 3, 3), dict(pool_h=0, pool_w=2, stride=1), ValueError, r"pool_h must be >= 1"),
    ((1, 1, 3, 3), dict(pool_h=2, pool_w=2, stride=1, pad=-1), ValueError, r"pad must be >= 0"),
    ((1, 1, 3, 3), dict(pool_h=2, pool_w=3, stride=1, pad=2),
     ValueError, r"pad must be smaller than pool_h and pool_w.*got pad=2, "
                 r"\(pool_h, pool_w\)=\(2, 3\)"),
    ((3, 3), dict(pool_h=2, pool_w=2, stride=1),
     ValueError, r"max_pool2d: x must be 4-D \(N, C, H, W\); got shape \(3, 3\)"),
    ((1, 1, 3, 3), dict(pool_h=2, pool_w=2, stride=jnp.int32(1)),  # as for every op's
     TypeError, r"max_pool2d: stride must be a Python int .*got ArrayImpl"),  # static ints
])
def test_max_pool2d_bad_arguments_are_named(fn, x_shape, kwargs, error, match):
    assert fn(jnp.zeros((1, 1, 3, 3)), pool_h=2, pool_w=2, stride=np.int64(1)).shape == (
        1, 1, 2, 2)  # NumPy ints are fine
    with pytest.raises(error, match=match):
        fn(jnp.zeros(x_shape), **kwargs)


def test_static_arguments_cannot_be_traced():
    x = jnp.zeros((1, 1, 4, 4))
    with pytest.raises(TypeError, match=r"max_pool2d: stride must be a Python int"):
        jax.jit(lambda x, s: conv.max_pool2d(x, pool_h=2, pool_w=2, stride=s))(x, 2)
