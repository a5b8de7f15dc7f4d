"""Convolution and max pooling (the book's chapter 7), NCHW, via im2col / col2im.

Layouts, as in the book: images ``x`` are ``(N, C, H, W)``, kernels ``W`` are
``(FN, C, FH, FW)``, biases ``b`` are ``(FN,)``. For a window of size ``(FH, FW)``, stride
``s`` and zero padding ``p`` on every side, the output is ``(OH, OW)`` with

    OH = (H + 2p − FH) // s + 1,    OW = (W + 2p − FW) // s + 1

(rows or columns left over by the floor division take no part, and get a zero gradient).

**im2col** turns the padded input into a matrix ``col`` of shape ``(N·OH·OW, C·FH·FW)``: one
row per output position ``(n, oh, ow)``, holding the window that position sees, in
``(c, fh, fw)`` order — the order of ``W.reshape(FN, C·FH·FW)``. It is built with one strided
slice per kernel offset ``(fh, fw)`` (a loop over ``FH·FW``, never over pixels).
**col2im** is its adjoint: it adds every entry of a ``(N·OH·OW, C·FH·FW)`` matrix back onto
the input pixel it was copied from (the pixels shared by overlapping windows receive the sum).
It is one interior-padded ``lax.pad`` per kernel offset, summed: dense ops, no scatter.

``stride``, ``pad`` and the pool sizes are static Python ints (they fix the shapes), passed to
the ``custom_vjp`` through ``nondiff_argnums``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnnet._checks import as_float_array, check_ndim, static_int

# --- static arguments and shapes -----------------------------------------------------------


def _check_window(op: str, window_name: str, window: tuple[int, int], x_shape: tuple[int, ...],
                  pad: int) -> None:
    """Raise ``ValueError`` if the window does not fit in the padded input."""
    padded = (x_shape[2] + 2 * pad, x_shape[3] + 2 * pad)
    if window[0] > padded[0] or window[1] > padded[1]:
        raise ValueError(
            f"{op}: the {window_name} {window} is larger than the padded input "
            f"(H + 2·pad, W + 2·pad) = {padded} (x.shape={tuple(x_shape)}, pad={pad})"
        )


def output_size(size: int, window: int, stride: int, pad: int) -> int:
    """``(size + 2·pad − window) // stride + 1``: the output length along one spatial axis."""
    return (size + 2 * pad - window) // stride + 1


def _pad_hw(x: jax.Array, pad: int, value: float) -> jax.Array:
    if pad == 0:
        return x
    return jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=value)


def _im2col(xp: jax.Array, fh: int, fw: int, stride: int) -> jax.Array:
    """Padded ``(N, C, Hp, Wp)`` → ``col`` ``(N·OH·OW, C·FH·FW)``, rows ``(n, oh, ow)``,
    columns ``(c, fh, fw)`` (the book's ``im2col``, one strided slice per kernel offset)."""
    n, c, hp, wp = xp.shape
    oh, ow = (hp - fh) // stride + 1, (wp - fw) // stride + 1
    patches = [
        lax.slice(xp, (0, 0, i, j), (n, c, i + stride * (oh - 1) + 1, j + stride * (ow - 1) + 1),
                  (1, 1, stride, stride))
        for i in range(fh) for j in range(fw)
    ]
    col = jnp.stack(patches, axis=2).reshape(n, c, fh, fw, oh, ow)
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * fh * fw)


def _col2im(col: jax.Array, padded_shape: tuple[int, int, int, int], fh: int, fw: int,
            stride: int) -> jax.Array:
    """The adjoint of :func:`_im2col`: add each ``(N·OH·OW, C·FH·FW)`` entry back onto the
    padded-input pixel it came from; returns ``(N, C, Hp, Wp)``."""
    n, c, hp, wp = padded_shape
    oh, ow = (hp - fh) // stride + 1, (wp - fw) // stride + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)  # (N, C, FH, FW, OH, OW)
    zero = jnp.zeros((), col.dtype)
    img = jnp.zeros(padded_shape, col.dtype)
    for i in range(fh):
        for j in range(fw):
            # Put patch (i, j) at rows i, i+s, …, columns j, j+s, …: interior padding s − 1.
            img = img + lax.pad(col[:, :, i, j], zero, (
                (0, 0, 0), (0, 0, 0),
                (i, hp - i - stride * (oh - 1) - 1, stride - 1),
                (j, wp - j - stride * (ow - 1) - 1, stride - 1),
            ))
    return img


def _crop(img: jax.Array, pad: int) -> jax.Array:
    if pad == 0:
        return img
    return img[:, :, pad:-pad, pad:-pad]


def _to_nchw(rows: jax.Array, n: int, oh: int, ow: int) -> jax.Array:
    """``(N·OH·OW, K)`` rows ordered ``(n, oh, ow)`` → ``(N, K, OH, OW)``."""
    return rows.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)


def _to_rows(y: jax.Array) -> jax.Array:
    """``(N, K, OH, OW)`` → ``(N·OH·OW, K)``: the inverse of :func:`_to_nchw`."""
    return y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])


# --- conv2d --------------------------------------------------------------------------------


def _check_conv_args(x: object, W: object, b: object, stride: object, pad: object):
    op = "conv2d"
    x = as_float_array(op, "x", x)
    W = as_float_array(op, "W", W)
    b = as_float_array(op, "b", b)
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    check_ndim(op, "W", W, 4, "(FN, C, FH, FW)")
    stride = static_int(op, "stride", stride, 1)
    pad = static_int(op, "pad", pad, 0)
    if W.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: W.shape[1] (kernel channels) must equal x.shape[1] (input channels C); "
            f"got x.shape={tuple(x.shape)}, W.shape={tuple(W.shape)}"
        )
    if b.shape != (W.shape[0],):
        raise ValueError(
            f"{op}: b must have shape (FN,) = ({W.shape[0]},) for W.shape={tuple(W.shape)}; "
            f"got {tuple(b.shape)}"
        )
    _check_window(op, "kernel (FH, FW)", tuple(W.shape[2:]), x.shape, pad)
    return x, W, b, stride, pad


def _conv_forward(x: jax.Array, W: jax.Array, b: jax.Array, stride: int, pad: int):
    """``(y, col)``: the book's forward, ``y = col·W_colᵀ + b`` reshaped to NCHW."""
    n = x.shape[0]
    fn, _, fh, fw = W.shape
    xp = _pad_hw(x, pad, 0)
    col = _im2col(xp, fh, fw, stride)
    oh, ow = (xp.shape[2] - fh) // stride + 1, (xp.shape[3] - fw) // stride + 1
    rows = col @ W.reshape(fn, -1).T + b
    return _to_nchw(rows, n, oh, ow), col


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _conv2d(x, W, b, stride: int, pad: int, padded_shape: tuple[int, int, int, int]):
    return _conv_forward(x, W, b, stride, pad)[0]


def _conv2d_fwd(x, W, b, stride, pad, padded_shape):
    y, col = _conv_forward(x, W, b, stride, pad)
    return y, (col, W, b)


def _conv2d_bwd(stride, pad, padded_shape, res, g):
    col, W, b = res
    fn, _, fh, fw = W.shape
    g_rows = _to_rows(g)                                             # (N·OH·OW, FN)
    db = g_rows.sum(axis=0).astype(b.dtype)
    dW = (g_rows.T @ col.astype(g.dtype)).reshape(W.shape).astype(W.dtype)
    dcol = g_rows @ W.reshape(fn, -1).astype(g.dtype)               # (N·OH·OW, C·FH·FW)
    dx = _crop(_col2im(dcol, padded_shape, fh, fw, stride), pad).astype(col.dtype)
    return dx, dW, db


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(x: jax.Array, W: jax.Array, b: jax.Array, *, stride: int = 1,
           pad: int = 0) -> jax.Array:
    """2-D convolution (cross-correlation, as in the book) with the hand-derived backward rule.

    Forward (im2col + one matmul): ``col = im2col(pad(x))`` is ``(N·OH·OW, C·FH·FW)``,
    ``W_col = W.reshape(FN, C·FH·FW)ᵀ``, and ``y = col·W_col + b`` reshaped to
    ``(N, FN, OH, OW)``; i.e.
    ``y[n,f,i,j] = b[f] + Σ_{c,u,v} W[f,c,u,v]·xp[n,c,i·s+u,j·s+v]``.

    Backward: with ``G = g`` reshaped to rows ``(N·OH·OW, FN)`` (the same row order as
    ``col``), the forward is an affine map of ``col``, so

      * ``db = Σ_rows G`` (each bias reaches every output position of its filter),
      * ``dW = (colᵀ·G)ᵀ`` reshaped to ``(FN, C, FH, FW)``,
      * ``dcol = G·W_colᵀ`` and ``dx = crop(col2im(dcol))``: each input pixel is copied into
        every window that covers it, so its gradient is the sum over those copies (col2im is
        the adjoint of im2col), and the padding's gradient is cropped away.

    Args:
      x: ``(N, C, H, W)`` floating array.
      W: ``(FN, C, FH, FW)`` floating array; ``FH ≤ H + 2·pad``, ``FW ≤ W + 2·pad``.
      b: ``(FN,)`` floating array.
      stride: Python int ``≥ 1``, the same along both axes.
      pad: Python int ``≥ 0``, zeros added on every side of both spatial axes.

    Returns:
      ``(N, FN, OH, OW)``, ``OH = (H + 2·pad − FH)//stride + 1`` (likewise ``OW``).

    >>> import jax.numpy as jnp
    >>> y = conv2d(jnp.ones((1, 1, 3, 3)), jnp.ones((2, 1, 2, 2)), jnp.array([0.0, 1.0]))
    >>> y.shape, y[0, :, 0, 0].tolist()
    ((1, 2, 2, 2), [4.0, 5.0])
    """
    x, W, b, stride, pad = _check_conv_args(x, W, b, stride, pad)
    n, c, h, w = x.shape
    return _conv2d(x, W, b, stride, pad, (n, c, h + 2 * pad, w + 2 * pad))


def conv2d_reference(x: jax.Array, W: jax.Array, b: jax.Array, *, stride: int = 1,
                     pad: int = 0) -> jax.Array:
    """``lax.conv_general_dilated`` (NCHW / OIHW) plus ``b``; differentiated by ``jax.grad``."""
    x, W, b, stride, pad = _check_conv_args(x, W, b, stride, pad)
    dtype = jnp.result_type(x, W)
    y = lax.conv_general_dilated(
        x.astype(dtype), W.astype(dtype), window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)), dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )
    return y + b[:, None, None]


# --- max_pool2d ----------------------------------------------------------------------------


def _check_pool_args(x: object, pool_h: object, pool_w: object, stride: object, pad: object):
    op = "max_pool2d"
    x = as_float_array(op, "x", x)
    check_ndim(op, "x", x, 4, "(N, C, H, W)")
    pool_h = static_int(op, "pool_h", pool_h, 1)
    pool_w = static_int(op, "pool_w", pool_w, 1)
    stride = static_int(op, "stride", stride, 1)
    pad = static_int(op, "pad", pad, 0)
    if pad >= pool_h or pad >= pool_w:
        raise ValueError(
            f"{op}: pad must be smaller than pool_h and pool_w, so that every window holds at "
            f"least one input element; got pad={pad}, (pool_h, pool_w)=({pool_h}, {pool_w})"
        )
    _check_window(op, "window (pool_h, pool_w)", (pool_h, pool_w), x.shape, pad)
    return x, pool_h, pool_w, stride, pad


def _pool_forward(x: jax.Array, pool_h: int, pool_w: int, stride: int, pad: int):
    """``(y, argmax)``: each window's maximum and the index of its first maximum."""
    n, c = x.shape[:2]
    xp = _pad_hw(x, pad, -jnp.inf)
    oh, ow = (xp.shape[2] - pool_h) // stride + 1, (xp.shape[3] - pool_w) // stride + 1
    windows = _im2col(xp, pool_h, pool_w, stride).reshape(-1, pool_h * pool_w)
    argmax = jnp.argmax(windows, axis=1)       # first maximum in row-major window order
    y = jnp.max(windows, axis=1).reshape(n * oh * ow, c)
    return _to_nchw(y, n, oh, ow), argmax


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _max_pool2d(x, pool_h: int, pool_w: int, stride: int, pad: int,
                padded_shape: tuple[int, int, int, int]):
    return _pool_forward(x, pool_h, pool_w, stride, pad)[0]


def _max_pool2d_fwd(x, pool_h, pool_w, stride, pad, padded_shape):
    y, argmax = _pool_forward(x, pool_h, pool_w, stride, pad)
    return y, argmax


def _max_pool2d_bwd(pool_h, pool_w, stride, pad, padded_shape, argmax, g):
    n, c, oh, ow = g.shape
    # Route each window's g to its argmax entry, zeros elsewhere (a select, not a product
    # with a one-hot: an inf or NaN in g stays in its own entry).
    picked = jnp.arange(pool_h * pool_w) == argmax[:, None]        # (N·OH·OW·C, PH·PW)
    dwindows = jnp.where(picked, _to_rows(g).reshape(-1, 1), jnp.zeros((), g.dtype))
    dcol = dwindows.reshape(n * oh * ow, c * pool_h * pool_w)
    return (_crop(_col2im(dcol, padded_shape, pool_h, pool_w, stride), pad),)


_max_pool2d.defvjp(_max_pool2d_fwd, _max_pool2d_bwd)


def max_pool2d(x: jax.Array, *, pool_h: int, pool_w: int, stride: int,
               pad: int = 0) -> jax.Array:
    """Max pooling per channel with the book's argmax routing as the backward rule.

    Forward: ``y[n,c,i,j] = max_{u<pool_h, v<pool_w} xp[n,c,i·s+u,j·s+v]``, computed as the
    book does: im2col of the padded input, one row per ``(n, oh, ow, c)`` window with its
    ``pool_h·pool_w`` entries in row-major ``(u, v)`` order, then ``max`` and ``argmax`` per
    row. Padding is ``−inf`` (the book pads with 0, which changes the output of a padded
    window whose inputs are all negative; ``−inf`` is what ``lax.reduce_window`` and the usual
    definition of max pooling use). ``pad < pool_h`` and ``pad < pool_w`` are required, so no
    window is all padding.

    Backward: ``y`` is one entry of its window, so ``∂y/∂x`` is 1 at that entry and 0
    elsewhere: ``g`` of each window goes to its argmax entry, and col2im adds the routed
    values back onto the input (a pixel that is the maximum of several overlapping windows
    receives the sum of their ``g``).

    Ties (several entries equal to a window's maximum; ``−0.0`` ties with ``0.0``): the max is
    not differentiable there, and the rule picks one subgradient. This manual rule routes all
    of the window's ``g`` to the FIRST maximum in row-major window order (``argmax`` returns
    the first index), exactly as the book's ``np.argmax``. ``jax.grad`` of the reference does
    the same: it differentiates ``reduce_window_max`` into ``select_and_scatter_add`` with
    ``select_prim=ge``, and XLA's SelectAndScatter (operation semantics) calls ``select(a, b)``
    with ``a`` the lexicographically earlier window entry, keeping ``a`` when it returns true —
    so ``ge`` keeps the earlier entry on a tie. Checked on the CPU with jax 0.10.2 (pinned in
    ``tests/test_conv.py``); the agreement tests still use tie-free inputs, so they do not
    depend on a backend's tie-breaking.

    Args:
      x: ``(N, C, H, W)`` floating array.
      pool_h, pool_w: window size, Python ints ``≥ 1``, no larger than the padded input.
      stride: Python int ``≥ 1`` (the book's pooling layers use ``stride = pool_h``).
      pad: Python int, ``0 ≤ pad < min(pool_h, pool_w)``.

    Returns:
      ``(N, C, OH, OW)``, ``OH = (H + 2·pad − pool_h)//stride + 1`` (likewise ``OW``).

    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    >>> max_pool2d(x, pool_h=2, pool_w=2, stride=2).tolist()
    [[[[3.0]]]]
    >>> jax.grad(lambda x: max_pool2d(x, pool_h=2, pool_w=2, stride=2).sum())(x).tolist()
    [[[[0.0, 1.0], [0.0, 0.0]]]]
    """
    x, pool_h, pool_w, stride, pad = _check_pool_args(x, pool_h, pool_w, stride, pad)
    n, c, h, w = x.shape
    return _max_pool2d(x, pool_h, pool_w, stride, pad, (n, c, h + 2 * pad, w + 2 * pad))


def max_pool2d_reference(x: jax.Array, *, pool_h: int, pool_w: int, stride: int,
                         pad: int = 0) -> jax.Array:
    """``lax.reduce_window`` with ``lax.max`` and ``−inf`` padding; differentiated by ``jax.grad``.

    The initial value is a NumPy scalar, not a ``jnp`` array: under ``jit`` a ``jnp`` array
    is traced, and ``lax.reduce_window`` then falls back to a generic reduction that has no
    reverse-mode rule.
    """
    x, pool_h, pool_w, stride, pad = _check_pool_args(x, pool_h, pool_w, stride, pad)
    return lax.reduce_window(
        x, np.array(-np.inf, x.dtype), lax.max, (1, 1, pool_h, pool_w), (1, 1, stride, stride),
        ((0, 0), (0, 0), (pad, pad), (pad, pad)),
    )
