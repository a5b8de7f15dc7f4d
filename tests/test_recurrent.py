"""rnn/lstm/gru cells and their time layers: the book's layouts, hand BPTT against autodiff
on every output's cotangent (1e-10 relative in float64), the structure of the BPTT (one
reverse scan with only the hidden matmuls inside), forward mode, and bad input."""

from __future__ import annotations

import functools

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
BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}


def _args(cell: str, N: int, D: int, H: int, T: int | None, dtype=jnp.float64, seed=0):
    """``(x or xs, h[, c], Wx, Wh, b)`` with weights scaled by 1/√fan-in."""
    rng = np.random.default_rng(seed)
    k = BLOCKS[cell]

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), dtype)

    x = normal(N, D) if T is None else normal(N, T, D)
    state = [normal(N, H) for _ in range(2 if cell == "lstm" else 1)]
    return (x, *state, normal(D, k * H, scale=D ** -0.5), normal(H, k * H, scale=H ** -0.5),
            normal(k * H, scale=0.5))


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


# --- the book's layouts --------------------------------------------------------------------


def _book_lstm(x, h_prev, c_prev, Wx, Wh, b):
    """The book's LSTM.forward, in NumPy: slices f, g, i, o of A."""
    H = h_prev.shape[1]
    A = x @ Wx + h_prev @ Wh + b
    f, g, i, o = A[:, :H], A[:, H:2 * H], A[:, 2 * H:3 * H], A[:, 3 * H:]
    f, g, i, o = _sigmoid(f), np.tanh(g), _sigmoid(i), _sigmoid(o)
    c = f * c_prev + g * i
    return o * np.tanh(c), c


def _book_gru(x, h_prev, Wx, Wh, b):
    """The book's GRU.forward, in NumPy: blocks z, r, h̃."""
    H = h_prev.shape[1]
    z = _sigmoid(x @ Wx[:, :H] + h_prev @ Wh[:, :H] + b[:H])
    r = _sigmoid(x @ Wx[:, H:2 * H] + h_prev @ Wh[:, H:2 * H] + b[H:2 * H])
    h_hat = np.tanh(x @ Wx[:, 2 * H:] + (r * h_prev) @ Wh[:, 2 * H:] + b[2 * H:])
    return (1 - z) * h_prev + z * h_hat


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_cells_follow_the_books_gate_layout(ops, x64):
    lstm_args, gru_args, rnn_args = (_args(cell, 2, 3, 4, None) for cell in ("lstm", "gru", "rnn"))
    # the three cells in one program (eagerly, each primitive would compile on its own)
    lstm, gru, rnn = jax.jit(lambda a, b, c: (ops.lstm(*a), ops.gru(*b), ops.rnn(*c)))(
        lstm_args, gru_args, rnn_args)
    np_args = [np.asarray(a) for a in lstm_args]
    for got, want in zip(lstm, _book_lstm(*np_args), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(gru, _book_gru(*map(np.asarray, gru_args)), rtol=1e-12)
    x, h, Wx, Wh, b = (np.asarray(a) for a in rnn_args)
    np.testing.assert_allclose(rnn, np.tanh(h @ Wh + x @ Wx + b), rtol=1e-12)


def test_time_layers_run_their_cell_at_every_step(x64):
    xs, h0, c0, Wx, Wh, b = _args("lstm", 2, 3, 4, T=3)
    gru_args = _args("gru", 2, 3, 4, T=3)
    # both layers in one program (eagerly, each primitive would compile on its own)
    (hs, h_last, c_last), gru_out = jax.jit(lambda a, g: (manual.time_lstm(*a),
                                                          manual.time_gru(*g)))(
        (xs, h0, c0, Wx, Wh, b), gru_args)
    h, c = h0, c0
    for t in range(3):
        h, c = _book_lstm(np.asarray(xs[:, t]), h, c, *map(np.asarray, (Wx, Wh, b)))
        np.testing.assert_allclose(hs[:, t], h, rtol=1e-12)
    np.testing.assert_allclose(h_last, h, rtol=1e-12)
    np.testing.assert_allclose(c_last, c, rtol=1e-12)
    xs, h0, Wx, Wh, b = gru_args
    hs, h_last = gru_out
    h = np.asarray(h0)
    for t in range(3):
        h = _book_gru(np.asarray(xs[:, t]), h, *map(np.asarray, (Wx, Wh, b)))
    np.testing.assert_allclose(hs[:, -1], h, rtol=1e-12)
    np.testing.assert_allclose(h_last, h, rtol=1e-12)


# --- hand BPTT against autodiff, every output's cotangent ----------------------------------


def _cotangent_sets(outputs, rng) -> list:
    """One random cotangent per output alone (the others zero), then all of them at once."""
    leaves, treedef = jax.tree.flatten(outputs)
    random = [rng.standard_normal(leaf.shape).astype(leaf.dtype) for leaf in leaves]
    sets = [[r if j == i else np.zeros_like(r) for j, r in enumerate(random)]
            for i in range(len(leaves))]
    return [treedef.unflatten(s) for s in [*sets, random]]


@functools.cache
def _pullbacks(op: str):
    """One jit per op: the VJPs of manual and reference, each under a stack of cotangents
    (vmapped), for a list of argument tuples of several shapes — every shape and both sides
    in one compiled program (compiling dominates: one program instead of 2 per shape)."""

    def run(arg_sets, cot_sets):
        results = []
        for args, cots in zip(arg_sets, cot_sets, strict=True):
            pulls = [jax.vjp(getattr(ops, op), *args)[1] for ops in (manual, autodiff)]
            results.append(tuple(jax.vmap(pull)(cots) for pull in pulls))
        return results

    return jax.jit(run)


def relative_error(a, b) -> float:
    """Max over leaves of ``max|a − b| / max|b|`` (the inf-norm relative error)."""
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


# (N, D, H, T): N = 1, H = 1, D ≠ H from one step to 64, and a general shape.
BPTT_SHAPES = [(1, 2, 1, 1), (1, 2, 1, 5), (1, 2, 1, 64), (3, 5, 4, 7)]


@pytest.mark.parametrize("op", ["time_rnn", "time_lstm", "time_gru"])
def test_hand_bptt_equals_autodiff_on_every_outputs_cotangent(op, x64):
    arg_sets, cot_sets, counts = [], [], []
    for N, D, H, T in BPTT_SHAPES:
        args = _args(op.removeprefix("time_"), N, D, H, T)
        outputs = jax.eval_shape(getattr(autodiff, op), *args)
        sets = _cotangent_sets(outputs, np.random.default_rng(T))
        arg_sets.append(args)
        cot_sets.append(jax.tree.map(lambda *xs: np.stack(xs), *sets))  # NumPy: no dispatch
        counts.append(len(sets))
    results = _pullbacks(op)(arg_sets, cot_sets)
    for shape, (got, want), count in zip(BPTT_SHAPES, results, counts, strict=True):
        for k in range(count):  # each output's cotangent alone, then all together
            error = relative_error(jax.tree.map(lambda a, k=k: a[k], got),
                                   jax.tree.map(lambda a, k=k: a[k], want))
            assert error < 1e-10, (shape, k, error)
        # Every gradient is really there: the initial state and all parameters move.
        assert all(np.any(np.asarray(g[-1]) != 0) for g in got), shape


@pytest.mark.parametrize("op", ["time_rnn", "time_gru"])
def test_the_cotangent_on_h_last_is_the_cotangent_on_the_last_step(op, x64):
    args = _args(op.removeprefix("time_"), 2, 3, 2, T=4)

    @jax.jit  # one program (eagerly, each primitive of the BPTT would compile on its own)
    def both(args, g):
        (hs, h_last), pullback = jax.vjp(getattr(manual, op), *args)
        return (pullback((jnp.zeros_like(hs), g)),
                pullback((jnp.zeros_like(hs).at[:, -1].set(g), jnp.zeros_like(h_last))))

    via_last, via_hs = both(args, jnp.asarray(np.random.default_rng(5).standard_normal((2, 2))))
    assert_tree_allclose(via_last, via_hs, jnp.float64)


def test_one_step_time_layer_equals_its_cell(x64):
    for cell in ("rnn", "lstm", "gru"):
        args = _args(cell, 2, 3, 2, T=1)
        cell_args = (args[0][:, 0], *args[1:])

        def time_loss(*a, cell=cell):
            return sum(jnp.sum(o * (i + 1)) for i, o in enumerate(
                jax.tree.leaves(getattr(manual, f"time_{cell}")(*a))[1:]))

        def cell_loss(*a, cell=cell):
            return sum(jnp.sum(o * (i + 1)) for i, o in enumerate(
                jax.tree.leaves(getattr(manual, cell)(*a))))

        argnums = tuple(range(len(args)))
        got = jax.jit(jax.grad(time_loss, argnums))(*args)
        want = jax.jit(jax.grad(cell_loss, argnums))(*cell_args)
        assert_tree_allclose((got[0][:, 0], *got[1:]), want, jnp.float64)


# --- structure and transformations ---------------------------------------------------------


def _scan_bodies(jaxpr) -> list:
    """The ``scan`` equations anywhere in a (closed) jaxpr, outermost first."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            found.append(eqn)
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else [param]:
                if hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    found += _scan_bodies(sub.jaxpr)
                elif hasattr(sub, "eqns"):
                    found += _scan_bodies(sub)
    return found


def _dots(jaxpr) -> int:
    return sum(eqn.primitive.name == "dot_general" for eqn in jaxpr.eqns)


@pytest.mark.parametrize(("op", "per_step"), [("time_rnn", 1), ("time_lstm", 1),
                                              ("time_gru", 2)])
def test_the_loops_hold_only_the_hidden_matmuls(op, per_step):
    # Forward: xs·Wx is hoisted out of the loop; backward: one reverse scan whose step does
    # the dh·Whᵀ product(s) only — the weight gradients and dxs are computed after it.
    args = _args(op.removeprefix("time_"), 2, 3, 2, T=4, dtype=jnp.float32)

    def loss(*a):
        return sum(jnp.sum(o) for o in getattr(manual, op)(*a))

    jaxpr = jax.make_jaxpr(jax.grad(loss, tuple(range(len(args)))))(*args)
    scans = _scan_bodies(jaxpr.jaxpr)
    assert [eqn.params["reverse"] for eqn in scans] == [False, True]
    assert [_dots(eqn.params["jaxpr"].jaxpr) for eqn in scans] == [per_step, per_step]


def test_forward_mode_fails_but_second_derivatives_work(x64):
    xs, h0, Wx, Wh, b = _args("rnn", 1, 2, 2, T=3)

    def loss(ops):
        return lambda bias: jnp.sum(ops.time_rnn(xs, h0, Wx, Wh, bias)[0] ** 2)

    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(loss(manual), (b,), (jnp.ones_like(b),))
    np.testing.assert_allclose(jax.jit(jax.hessian(loss(manual)))(b),
                               jax.jit(jax.hessian(loss(autodiff)))(b), rtol=1e-10)


def test_mixed_precision_gradients_take_each_arguments_dtype():
    xs, h0, c0, Wx, Wh, b = _args("lstm", 2, 3, 2, T=2, dtype=jnp.float32)
    xs = xs.astype(jnp.bfloat16)
    grads = jax.jit(jax.grad(lambda *a: manual.time_lstm(*a)[0].astype(jnp.float32).sum(),
                             tuple(range(6))))(xs, h0, c0, Wx, Wh, b)
    assert [g.dtype for g in grads] == [jnp.bfloat16] + [jnp.float32] * 5


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("ops", BOTH, ids=IDS)
def test_bad_shapes_and_dtypes_name_the_argument(ops):
    x, h, c, Wx, Wh, b = _args("lstm", 2, 3, 2, None, dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"lstm: Wx must have shape \(D, 4H\) = \(3, 8\) "
                                         r"\(gate blocks f, g, i, o\) for D = 3, H = 2; "
                                         r"got \(3, 6\)"):
        ops.lstm(x, h, c, Wx[:, :6], Wh, b)
    with pytest.raises(ValueError, match=r"gru: Wh must have shape \(H, 3H\) = \(2, 6\) "
                                         r"\(gate blocks z, r, h̃\).*got \(2, 8\)"):
        ops.gru(x, h, Wx[:, :6], Wh, b[:6])
    with pytest.raises(ValueError, match=r"rnn: b must have shape \(H,\) = \(2,\).*got \(8,\)"):
        ops.rnn(x, h, Wx[:, :2], Wh[:, :2], b)
    with pytest.raises(ValueError, match=r"lstm: c_prev must have the shape of h_prev, "
                                         r"\(2, 2\); got \(1, 2\)"):
        ops.lstm(x, h, c[:1], Wx, Wh, b)
    with pytest.raises(ValueError, match=r"lstm: h_prev must have shape \(N, H\) with N = "
                                         r"x.shape\[0\] = 2; got \(3, 2\)"):
        ops.lstm(x, jnp.ones((3, 2)), c, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"lstm: x must be 2-D \(batch N, input size D\)"):
        ops.lstm(x[None], h, c, Wx, Wh, b)
    with pytest.raises(TypeError, match=r"lstm: x must have a floating-point dtype.*int32"):
        ops.lstm(x.astype(jnp.int32), h, c, Wx, Wh, b)
    xs = x[:, None]
    with pytest.raises(ValueError, match=r"time_lstm: xs must be 3-D \(batch N, time T, "
                                         r"input size D\); got shape \(2, 3\)"):
        ops.time_lstm(x, h, c, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"time_lstm: xs needs at least one time step"):
        ops.time_lstm(xs[:, :0], h, c, Wx, Wh, b)
    with pytest.raises(ValueError, match=r"time_lstm: c0 must have the shape of h0"):
        ops.time_lstm(xs, h, c[:, :1], Wx, Wh, b)
    with pytest.raises(ValueError, match=r"time_rnn: h0 must be 2-D"):
        ops.time_rnn(xs, h[0], Wx[:, :2], Wh[:, :2], b[:2])
    with pytest.raises(ValueError, match=r"time_gru: Wx must have shape \(D, 3H\) = \(3, 6\)"):
        ops.time_gru(xs, h, Wx, Wh[:, :6], b[:6])
