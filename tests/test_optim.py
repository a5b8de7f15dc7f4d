"""The book's optimisers by hand: against their formulas in NumPy float64, against optax (equal,
or a stated and bounded difference), the registry, weight decay, and argument checks."""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnnet
from fnnet.data import load_digits
from fnnet.optim import (
    CHOICES,
    EPS,
    HYPERPARAMETERS,
    OPTIMIZERS,
    adagrad,
    adam,
    clip_grads,
    get_optimizer,
    global_norm,
    momentum,
    nesterov,
    rmsprop,
    sgd,
    sgd_update,
    weight_decay_penalty,
    weight_mask,
    with_weight_decay,
)
from fnnet.train import _step, batch_indices, init_train_state, make_train_step
from tests.helpers import max_abs_diff, tolerance, tree_allclose

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

STEPS = 50
SHAPES = {"W1": (3, 4), "b1": (4,), "W2": (4, 2), "b2": (2,)}


# ---------------------------------------------------------------------------------------------
# The book's common/optimizer.py, transcribed in NumPy float64: dicts of arrays updated in place.


class BookSGD:
    def __init__(self, lr):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov:
    """The first book's Nesterov: θ moves with the old velocity, then v is updated."""

    def __init__(self, lr, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class SequelNesterov:
    """The sequel's Nesterov (its common/optimizer.py, params as lists): v first, then θ."""

    def __init__(self, lr, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        keys = list(params)
        if self.v is None:
            self.v = [np.zeros_like(params[key]) for key in keys]
        for i, key in enumerate(keys):
            self.v[i] *= self.momentum
            self.v[i] -= self.lr * grads[key]
            params[key] += self.momentum * self.momentum * self.v[i]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for key in params:
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


# ---------------------------------------------------------------------------------------------
# Helpers: random params and a fixed gradient sequence; run an optimiser over it (jitted).


def _problem(seed: int = 0, scale: float = 1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}
             for _ in range(STEPS)]
    return params, grads


def _run(optimizer: optax.GradientTransformation, params, grads):
    """Params and state after applying ``optimizer`` to each gradient in turn, jitted."""

    @jax.jit
    def step(params, state, g):
        updates, state = optimizer.update(g, state, params)
        return optax.apply_updates(params, updates), state

    params = jax.tree.map(jnp.asarray, params)
    state = optimizer.init(params)
    for g in grads:
        params, state = step(params, state, jax.tree.map(jnp.asarray, g))
    return params, state


def _run_many(runs: dict) -> dict:
    """``{key: (optimizer, params, grads)}`` → ``{key: (params, state)}`` after applying each
    optimiser to its gradients in turn: every run a ``lax.scan`` in one compiled program
    (one compile for all, instead of one per run; the update is the same jitted arithmetic)."""

    def scan(optimizer, params, grads):
        def step(carry, g):
            params, state = carry
            updates, state = optimizer.update(g, state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, optimizer.init(params)), grads)[0]

    stacked = {key: (params, jax.tree.map(lambda *gs: np.stack(gs), *grads))
               for key, (_, params, grads) in runs.items()}
    results = jax.jit(lambda problems: {key: scan(runs[key][0], *problem)
                                        for key, problem in problems.items()})(stacked)
    return jax.tree.map(np.asarray, results)


def _run_book(book, params, grads):
    params = {k: v.copy() for k, v in params.items()}
    for g in grads:
        book.update(params, g)
    return params


CASES = {
    "sgd": (lambda: sgd(0.1), lambda: BookSGD(0.1)),
    "momentum": (lambda: momentum(0.01, momentum=0.9), lambda: BookMomentum(0.01, 0.9)),
    "nesterov": (lambda: nesterov(0.01, momentum=0.9), lambda: BookNesterov(0.01, 0.9)),
    "nesterov-dlfs2": (lambda: nesterov(0.01, momentum=0.9, form="dlfs2"),
                       lambda: SequelNesterov(0.01, 0.9)),
    "nesterov-dlfs2-0.5": (lambda: nesterov(0.1, momentum=0.5, form="dlfs2"),
                           lambda: SequelNesterov(0.1, 0.5)),
    "adagrad": (lambda: adagrad(0.1), lambda: BookAdaGrad(0.1)),
    "rmsprop": (lambda: rmsprop(0.01, decay_rate=0.99), lambda: BookRMSprop(0.01, 0.99)),
    "adam": (lambda: adam(0.001, beta1=0.9, beta2=0.999), lambda: BookAdam(0.001, 0.9, 0.999)),
    "momentum-0.5": (lambda: momentum(0.1, momentum=0.5), lambda: BookMomentum(0.1, 0.5)),
    "rmsprop-0.9": (lambda: rmsprop(0.1, decay_rate=0.9), lambda: BookRMSprop(0.1, 0.9)),
    "adam-0.5-0.9": (lambda: adam(0.01, beta1=0.5, beta2=0.9), lambda: BookAdam(0.01, 0.5, 0.9)),
}


# ---------------------------------------------------------------------------------------------
# Each optimiser is the book's formula.


@pytest.fixture(scope="module")
def float64_runs():
    """Every case at both gradient scales, float64: one program."""
    with jax.enable_x64(True):
        return _run_many({(name, scale): (build(), *_problem(seed=1, scale=scale))
                          for name, (build, _) in CASES.items() for scale in (1.0, 1e-3)})


@pytest.fixture(scope="module")
def float32_runs():
    """Every case in float32: one program."""
    return _run_many({name: (build(), *_problem(seed=2, dtype=np.float32))
                      for name, (build, _) in CASES.items()})


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_equals_the_books_formula_in_float64_over_many_steps(float64_runs, name, scale):
    _, book = CASES[name]
    params, grads = _problem(seed=1, scale=scale)
    ours, _ = float64_runs[name, scale]
    theirs = _run_book(book(), params, grads)
    assert ours["W1"].dtype == jnp.float64
    # Same formula, same order of operations; only XLA's rounding (fusion, pow) may differ.
    assert tree_allclose(ours, theirs, rtol=1e-12, atol=1e-14), max_abs_diff(ours, theirs)


@pytest.mark.parametrize("name", CASES)
def test_float32_tracks_the_float64_formula(float32_runs, name):
    _, book = CASES[name]
    ours, state = float32_runs[name]
    theirs = _run_book(book(), *_problem(seed=2, dtype=np.float32))  # NumPy float32 too
    for leaf in jax.tree.leaves((ours, state)):
        assert leaf.dtype in (jnp.float32, jnp.int32)
    assert max_abs_diff(ours, theirs) < 1e-5


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_updates_and_state_keep_the_leaf_dtype(x64, name):
    # float64 is on, yet float32 and bfloat16 leaves stay what they are (Adam's lr_t is float64).
    optimizer = get_optimizer(name, 0.01)
    params = {"W": jnp.ones((2, 3), jnp.float32), "b": jnp.ones(3, jnp.bfloat16)}
    grads = {"W": jnp.full((2, 3), 0.5, jnp.float32), "b": jnp.full(3, 0.5, jnp.bfloat16)}
    updates, state = optimizer.update(grads, optimizer.init(params), params)
    assert updates["W"].dtype == jnp.float32 and updates["b"].dtype == jnp.bfloat16
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if jax.tree_util.keystr(path).endswith("['b']"):
            assert leaf.dtype == jnp.bfloat16


def test_adam_counts_steps_in_int32():
    optimizer = adam()
    params = {"w": jnp.zeros(2)}
    state = optimizer.init(params)
    for _ in range(3):
        _, state = optimizer.update({"w": jnp.ones(2)}, state)
    assert state.count.dtype == jnp.int32 and int(state.count) == 3


def test_zero_gradients_give_zero_updates_not_nan():
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
        optimizer = get_optimizer(name, 0.1)
        params = {"w": jnp.ones(3)}
        updates, _ = optimizer.update({"w": jnp.zeros(3)}, optimizer.init(params))
        np.testing.assert_array_equal(updates["w"], 0.0)


# ---------------------------------------------------------------------------------------------
# Against optax: where they coincide, and where they differ (stated and bounded).


def test_momentum_is_optax_sgd_with_momentum_up_to_rounding(x64):
    # optax keeps t ← g + α·t and returns −η·t; the book keeps v ← α·v − η·g. v = −η·t in
    # exact arithmetic, so the two agree to rounding (not bit for bit: the operations differ).
    params, grads = _problem(seed=3)
    book, _ = _run(momentum(0.01, momentum=0.9), params, grads)
    ref, _ = _run(optax.sgd(0.01, momentum=0.9), params, grads)
    assert max_abs_diff(book, ref) < 1e-14  # measured 2.2e-16 after 50 steps, |θ − θ₀| ≈ 1.6


def test_momentum_matches_optax_in_float32_to_rounding():
    params, grads = _problem(seed=3, dtype=np.float32)
    book, _ = _run(momentum(0.01, momentum=0.9), params, grads)
    ref, _ = _run(optax.sgd(0.01, momentum=0.9), params, grads)
    assert max_abs_diff(book, ref) < 1e-6  # measured 1.6e-7: one float32 ulp of θ


def test_the_first_books_nesterov_is_optax_nesterov_up_to_rounding(x64):
    params, grads = _problem(seed=4)
    book, _ = _run(nesterov(0.01, momentum=0.9), params, grads)
    ref, _ = _run(optax.sgd(0.01, momentum=0.9, nesterov=True), params, grads)
    assert max_abs_diff(book, ref) < 1e-14


def test_the_sequels_nesterov_is_ahead_of_the_first_books_by_alpha_squared_v(x64):
    # The sequel steps α²·v_new − (1+α)·η·g, the first book α²·v_old − (1+α)·η·g: each step
    # the sequel moves α²·(v_new − v_old) further, which telescopes to θ₂ = θ₁ + α²·v.
    alpha = 0.9
    params, grads = _problem(seed=4)
    sequel, state = _run(nesterov(0.01, momentum=alpha, form="dlfs2"), params, grads)
    first, _ = _run(nesterov(0.01, momentum=alpha, form="dlfs1"), params, grads)
    assert max_abs_diff(sequel, first) > 1e-3  # a real difference (0.038 here) …
    shifted = jax.tree.map(lambda p, v: p - alpha * alpha * v, sequel, state.velocity)
    assert max_abs_diff(shifted, first) < 1e-13  # … that is exactly α²·v


def test_nesterov_form_is_a_checked_choice():
    with pytest.raises(ValueError, match=r"form must be one of \('dlfs1', 'dlfs2'\)"):
        nesterov(0.1, form="dlfs3")
    assert get_optimizer("nesterov", 0.1, form="dlfs2") is not None
    with pytest.raises(ValueError, match="takes no hyperparameter 'form'"):
        get_optimizer("momentum", 0.1, form="dlfs2")


# ---------------------------------------------------------------------------------------------
# Gradient clipping: the sequel's clip_grads against its formula and optax's.


def _book_clip_grads(grads, max_norm):
    """The sequel's common/util.py clip_grads, on copies (the book scales in place)."""
    grads = [g.copy() for g in grads]
    total_norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    rate = max_norm / (total_norm + 1e-6)
    if rate < 1:
        for g in grads:
            g *= rate
    return grads


@pytest.mark.parametrize("max_norm", [0.25, 5.0, 1e3])
def test_clip_grads_is_the_books_formula_and_within_1e_6_of_optax(x64, max_norm):
    rng = np.random.default_rng(7)
    grads = {"W": rng.standard_normal((5, 4)), "b": rng.standard_normal(4)}
    ours, _ = clip_grads(max_norm).update(jax.tree.map(jnp.asarray, grads), optax.EmptyState())
    book = dict(zip(grads, _book_clip_grads(list(grads.values()), max_norm), strict=True))
    assert tree_allclose(ours, book, rtol=1e-15, atol=0)
    theirs, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
    norm = float(global_norm(grads))
    # the scales differ by n/(n + 1e-6): a relative 1e-6/n at most
    assert max_abs_diff(ours, theirs) <= 1e-6 / norm * max(np.abs(v).max() for v in grads.values())
    clipped = float(global_norm(ours))
    assert clipped == pytest.approx(min(norm, max_norm), rel=1e-6)


def test_clip_grads_leaves_small_gradients_and_dtypes_alone():
    grads = {"W": jnp.full((2, 2), 0.1, jnp.float32), "b": jnp.full(2, 0.1, jnp.bfloat16)}
    ours, _ = clip_grads(5.0).update(grads, clip_grads(5.0).init(grads))
    assert ours["W"].dtype == jnp.float32 and ours["b"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(ours["W"], grads["W"])
    with pytest.raises(ValueError, match="max_norm"):
        clip_grads(0.0)


def _adagrad_bound(grads, lr):
    """η·ε·Σₜ 1/√hₜ per element: |g/(√h + ε) − g/√h| = |g|·ε/(√h·(√h + ε)) ≤ ε/√h as |g| ≤ √h."""
    h = {k: np.zeros(s) for k, s in SHAPES.items()}
    bound = {k: np.zeros(s) for k, s in SHAPES.items()}
    for g in grads:
        for k in SHAPES:
            h[k] += g[k] * g[k]
            bound[k] += lr * EPS / np.sqrt(h[k])
    return bound


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_adagrad_against_optax_adagrad_is_bounded_by_the_eps_placement(x64, scale):
    # optax.adagrad(η, initial_accumulator_value=0, eps=0) is g/√h: only the book's ε = 1e-7
    # outside the root is missing, so per element |θ_book − θ_optax| ≤ η·ε·Σₜ 1/√hₜ.
    lr = 0.01
    params, grads = _problem(seed=5, scale=scale)
    book, _ = _run(adagrad(lr), params, grads)
    closest, _ = _run(optax.adagrad(lr, initial_accumulator_value=0.0, eps=0.0), params, grads)
    bound = _adagrad_bound(grads, lr)
    for k in SHAPES:
        assert np.all(np.abs(book[k] - closest[k]) <= bound[k] * (1 + 1e-6) + 1e-15)
    # Measured after 50 steps (|θ − θ₀| ≈ 0.05): 5.0e-8 for |g| ~ 1, 5.0e-5 for |g| ~ 1e-3
    # (ε/√h grows as g shrinks; a seed with a tiny first gradient reaches 5.5e-6 / 3.6e-3).
    # optax's defaults (h₀ = 0.1, ε = 1e-7 inside the root) are far off: 1.4e-2 / 5.0e-2.
    assert max_abs_diff(book, closest) < {1.0: 1e-7, 1e-3: 1e-4}[scale]
    default, _ = _run(optax.adagrad(lr), params, grads)
    assert max_abs_diff(book, default) > {1.0: 5e-3, 1e-3: 4e-2}[scale]


def test_rmsprop_is_optax_rmsprop_with_eps_outside_the_root(x64):
    params, grads = _problem(seed=6)
    book, _ = _run(rmsprop(0.01, decay_rate=0.99), params, grads)
    ref, _ = _run(optax.rmsprop(0.01, decay=0.99, eps=1e-7, eps_in_sqrt=False), params, grads)
    assert max_abs_diff(book, ref) < 1e-14  # measured 1.7e-16 (optax multiplies by 1/(√h + ε))
    default, _ = _run(optax.rmsprop(0.01), params, grads)  # ρ = 0.9, ε = 1e-8 in the root
    assert max_abs_diff(book, default) > 0.1


def test_adam_is_optax_adam_with_a_step_dependent_eps(x64):
    # lr_t·m/(√v + ε) = η·m̂/(√v̂ + ε/√(1 − β₂ᵗ)): bias-corrected Adam with εₜ = ε/√(1 − β₂ᵗ).
    params, grads = _problem(seed=7, scale=1e-3)
    book, _ = _run(adam(0.001), params, grads)
    eps_t = optax.inject_hyperparams(optax.adam)(
        learning_rate=0.001, eps=lambda count: EPS / jnp.sqrt(1.0 - 0.999 ** (count + 1)))
    ref, _ = _run(eps_t, params, grads)
    assert max_abs_diff(book, ref) < 1e-15


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_adam_against_optax_adam_eps_1e_7_is_bounded(x64, scale):
    # Same m and v; per step the updates differ by η·|m̂|·(εₜ − ε)/((√v̂ + εₜ)(√v̂ + ε)) with
    # εₜ = ε/√(1 − β₂ᵗ) ≥ ε, largest on the first steps (εₜ = 3.2e-6 at t = 1).
    lr, b1, b2 = 0.001, 0.9, 0.999
    params, grads = _problem(seed=8, scale=scale)
    book, _ = _run(adam(lr, b1, b2), params, grads)
    closest, _ = _run(optax.adam(lr, b1=b1, b2=b2, eps=EPS), params, grads)
    m = {k: np.zeros(s) for k, s in SHAPES.items()}
    v = {k: np.zeros(s) for k, s in SHAPES.items()}
    bound = {k: np.zeros(s) for k, s in SHAPES.items()}
    for t, g in enumerate(grads, start=1):
        eps_t = EPS / math.sqrt(1 - b2 ** t)
        for k in SHAPES:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat, root_v_hat = m[k] / (1 - b1 ** t), np.sqrt(v[k] / (1 - b2 ** t))
            bound[k] += lr * np.abs(m_hat) * (eps_t - EPS) / ((root_v_hat + eps_t)
                                                               * (root_v_hat + EPS))
    for k in SHAPES:
        assert np.all(np.abs(book[k] - closest[k]) <= bound[k] * (1 + 1e-6) + 1e-15)
    # Measured after 50 steps (|θ − θ₀| ≈ 0.02): 1.7e-5 for |g| ~ 1, 5.9e-4 for |g| ~ 1e-3 on
    # this seed, whose gradients include a tiny first one; typical seeds give 4e-8 … 2e-7
    # and 4e-5 … 1.4e-4.
    assert max_abs_diff(book, closest) < {1.0: 5e-5, 1e-3: 1e-3}[scale]


# ---------------------------------------------------------------------------------------------
# The registry.


def test_registry_has_the_books_six_and_their_optax_versions():
    book = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
    assert tuple(OPTIMIZERS) == (*book, *(f"optax-{name}" for name in book))
    for name in book:  # the book's version and optax's take the same hyperparameters, but
        # optax has one Nesterov (the first book's), the hand version both books' forms
        ours = {k: v for k, v in OPTIMIZERS[name].hyperparams.items() if k != "form"}
        assert ours == dict(OPTIMIZERS[f"optax-{name}"].hyperparams)
    assert dict(OPTIMIZERS["nesterov"].hyperparams) == {"momentum": 0.9, "form": "dlfs1"}
    assert {*HYPERPARAMETERS, *CHOICES} == {h for spec in OPTIMIZERS.values()
                                            for h in spec.hyperparams}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_spec_defaults_are_the_builders_defaults(name):
    spec = OPTIMIZERS[name]
    signature = inspect.signature(spec.build)
    assert list(signature.parameters) == ["learning_rate", *spec.hyperparams]
    for hyper, default in spec.hyperparams.items():
        assert signature.parameters[hyper].default == default


@pytest.fixture(scope="module")
def training_losses():
    """Five steps of a tiny net on random data for every optimiser, through fnnet's train step
    (``_step``, what :func:`make_train_step` jits; its donation is optimiser-independent and
    exercised by the tests below that call it): all optimisers in one program."""
    net = fnnet.two_layer_net(3, 4, 2, weight_init="xavier")
    x = np.asarray(jax.random.normal(jax.random.key(1), (16, 3)))
    t = (x[:, 0] > 0).astype(np.int32)
    optimizers = {name: get_optimizer(name, 0.01) for name in OPTIMIZERS}

    @jax.jit
    def run(params, x, t):
        losses = {}
        for name, optimizer in optimizers.items():
            def step(state, _, optimizer=optimizer):
                return _step(net, optimizer, state, x, t)

            state = init_train_state(net, params, optimizer)
            losses[name] = jax.lax.scan(step, state, None, length=5)[1]
        return losses

    return jax.tree.map(np.asarray, run(net.init(jax.random.key(0)), x, t))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_trains_a_few_jitted_steps(training_losses, name):
    losses = training_losses[name].tolist()
    assert len(losses) == 5
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]


def test_get_optimizer_passes_hyperparameters():
    params, grads = _problem(seed=9)
    by_name, _ = _run(get_optimizer("adam", 0.01, beta1=0.5, beta2=0.9), params, grads[:5])
    direct, _ = _run(adam(0.01, beta1=0.5, beta2=0.9), params, grads[:5])
    np.testing.assert_array_equal(by_name["W1"], direct["W1"])


def test_get_optimizer_rejects_a_hyperparameter_it_does_not_take():
    with pytest.raises(ValueError, match="optimizer 'momentum' takes no hyperparameter 'beta1'; "
                                         "it takes momentum"):
        get_optimizer("momentum", 0.1, beta1=0.9)
    with pytest.raises(ValueError, match="'sgd' takes no hyperparameter 'momentum'; it takes "
                                         "only learning_rate"):
        get_optimizer("sgd", 0.1, momentum=0.9)


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match=r"optimizer must be one of \('sgd', 'momentum', .*"
                                         r"'optax-adam'\); got 'lion'"):
        get_optimizer("lion", 0.1)


# ---------------------------------------------------------------------------------------------
# Hyperparameter checks.


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_learning_rate_must_be_positive_and_finite(name, lr):
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0; got "):
        get_optimizer(name, lr)


@pytest.mark.parametrize(("build", "argument"), [
    (lambda v: momentum(0.1, momentum=v), "momentum"),
    (lambda v: nesterov(0.1, momentum=v), "momentum"),
    (lambda v: rmsprop(0.1, decay_rate=v), "decay_rate"),
    (lambda v: adam(0.1, beta1=v), "beta1"),
    (lambda v: adam(0.1, beta2=v), "beta2"),
    (lambda v: get_optimizer("optax-momentum", 0.1, momentum=v), "momentum"),
    (lambda v: get_optimizer("optax-rmsprop", 0.1, decay_rate=v), "decay_rate"),
    (lambda v: get_optimizer("optax-adam", 0.1, beta2=v), "beta2"),
])
@pytest.mark.parametrize("value", [1.0, 1.5, -0.1, float("nan")])
def test_rates_must_lie_in_zero_one(build, argument, value):
    with pytest.raises(ValueError, match=rf"{argument} must be a number in \[0, 1\); got "
                                         rf"{value!r}"):
        build(value)


def test_zero_momentum_is_plain_sgd(x64):
    params, grads = _problem(seed=10)
    a, _ = _run(momentum(0.1, momentum=0.0), params, grads[:5])
    b, _ = _run(sgd(0.1), params, grads[:5])
    assert tree_allclose(a, b, rtol=1e-15, atol=0)  # XLA may fuse θ − η·g into an FMA


@pytest.mark.parametrize("lr", [np.float32(0.1), np.float64(0.1), jnp.array(0.1), np.array(0.1),
                                1, np.int64(1)])
def test_numpy_and_jax_scalars_are_accepted(lr):
    for name in OPTIMIZERS:
        get_optimizer(name, lr)
    params = {"w": jnp.ones(2, jnp.float32)}
    updates, _ = sgd(lr).update({"w": jnp.ones(2, jnp.float32)}, sgd(lr).init(params))
    assert updates["w"].dtype == jnp.float32  # a float64 NumPy scalar does not promote


@pytest.mark.parametrize(("value", "error", "message"), [
    ("0.1", TypeError, "learning_rate must be a real number .*got str '0.1'"),
    (None, TypeError, "learning_rate must be a real number .*got NoneType None"),
    (True, TypeError, "learning_rate must be a real number .*got bool True"),
    (jnp.array([0.1, 0.2]), ValueError,
     r"learning_rate must be a scalar \(0-d\); got shape \(2,\)"),
    (1 + 2j, TypeError, "learning_rate must be a real number"),
])
def test_learning_rate_of_the_wrong_kind_is_named(value, error, message):
    with pytest.raises(error, match=message):
        adam(value)


def test_hyperparameters_can_be_injected_and_traced():
    # optax.inject_hyperparams rebuilds the optimiser inside jit with traced hyperparameters:
    # their values cannot be checked there, and the result is the same.
    params, grads = _problem(seed=11, dtype=np.float32)
    injected = optax.inject_hyperparams(adam)(learning_rate=0.01, beta1=0.8)
    a, _ = _run(injected, params, grads[:5])
    b, _ = _run(adam(0.01, beta1=0.8), params, grads[:5])
    assert max_abs_diff(a, b) < 1e-6


# ---------------------------------------------------------------------------------------------
# Weight decay.


def test_weight_mask_marks_leaves_named_W():
    params = {
        "affine1": {"W": jnp.ones((4, 3)), "b": jnp.zeros(3)},
        "conv1": {"W": jnp.ones((2, 1, 3, 3)), "b": jnp.zeros(2)},
        "batchnorm1": {"gamma": jnp.ones(3), "beta": jnp.zeros(3)},
        "list": [jnp.ones(2)],
    }
    assert weight_mask(params) == {
        "affine1": {"W": True, "b": False}, "conv1": {"W": True, "b": False},
        "batchnorm1": {"gamma": False, "beta": False}, "list": [False],
    }
    assert weight_mask(params, names=("W", "gamma"))["batchnorm1"] == {"gamma": True,
                                                                       "beta": False}


def test_weight_decay_penalty_is_half_lambda_sum_of_squared_weights():
    params = {"a": {"W": jnp.array([[1.0, -2.0]]), "b": jnp.array([10.0])},
              "c": {"W": jnp.array([3.0])}}
    assert float(weight_decay_penalty(params, 0.1)) == pytest.approx(0.5 * 0.1 * (1 + 4 + 9))
    assert float(weight_decay_penalty(params, 0.0)) == 0.0
    assert float(weight_decay_penalty({"b": jnp.ones(3)}, 0.1)) == 0.0
    grads = jax.grad(weight_decay_penalty)(params, 0.1)
    np.testing.assert_allclose(grads["a"]["W"], [[0.1, -0.2]], rtol=1e-6)
    np.testing.assert_array_equal(grads["a"]["b"], 0.0)


@pytest.mark.parametrize("weight_decay", [-0.1, float("nan"), float("inf")])
def test_weight_decay_must_be_non_negative_and_finite(weight_decay):
    match = r"weight_decay must be a finite number >= 0; got "
    with pytest.raises(ValueError, match=match):
        weight_decay_penalty({"W": jnp.ones(2)}, weight_decay)
    with pytest.raises(ValueError, match=match):
        with_weight_decay(sgd(0.1), weight_decay)


def _decay_problem():
    net = fnnet.two_layer_net(6, 5, 3, weight_init="xavier")
    x = jax.random.normal(jax.random.key(1), (16, 6))
    t = jax.random.randint(jax.random.key(2), (16,), 0, 3)
    return net, net.init(jax.random.key(0)), x, t


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_penalty_in_the_loss_equals_optax_add_decayed_weights_before_sgd(lam):
    net, params0, x, t = _decay_problem()
    decayed_net = fnnet.two_layer_net(6, 5, 3, weight_init="xavier", weight_decay=lam)
    lr = 0.1
    runs = {
        "book": (decayed_net, optax.sgd(lr)),  # loss + ½λΣW², the book's way
        "optax": (net, optax.chain(optax.add_decayed_weights(lam, mask=weight_mask),
                                   optax.sgd(lr))),
        "fnnet": (net, with_weight_decay(sgd(lr), lam)),
        "undecayed": (net, optax.sgd(lr)),
    }
    finals = {}
    for name, (model, optimizer) in runs.items():
        state = init_train_state(model, jax.tree.map(jnp.copy, params0), optimizer)
        step = make_train_step(model, optimizer)  # donates its train state
        for _ in range(5):
            state, _ = step(state, x, t)
        finals[name] = state.params
    assert tree_allclose(finals["book"], finals["optax"], **tolerance(jnp.float32))
    assert tree_allclose(finals["book"], finals["fnnet"], **tolerance(jnp.float32))
    assert max_abs_diff(finals["book"]["affine1"]["W"],
                        finals["undecayed"]["affine1"]["W"]) > 1e-3
    assert float(decayed_net.loss(params0, x, t)) == pytest.approx(
        float(net.loss(params0, x, t) + weight_decay_penalty(params0, lam)), rel=1e-6)
    assert float(decayed_net.loss(params0, x, t, train=False)) == float(net.loss(params0, x, t))


def test_decay_leaves_biases_alone():
    # With a zero loss gradient only the decay acts: W ← W − η·λ·W, b unchanged.
    params = {"affine1": {"W": jnp.full((2, 3), 2.0), "b": jnp.full(3, 2.0)}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    for optimizer in (with_weight_decay(sgd(0.1), 0.5),
                      optax.chain(optax.add_decayed_weights(0.5, mask=weight_mask), sgd(0.1))):
        updates, _ = optimizer.update(zeros, optimizer.init(params), params)
        new = optax.apply_updates(params, updates)
        np.testing.assert_allclose(new["affine1"]["W"], 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)
        np.testing.assert_array_equal(new["affine1"]["b"], 2.0)


def test_weight_decay_with_adam_is_the_penalty_gradient(x64):
    # add_decayed_weights adds λ·W to g before any optimiser: the gradient of the penalty.
    rng = np.random.default_rng(12)
    shapes = {"affine1": {"W": (3, 4), "b": (4,)}, "affine2": {"W": (4, 2), "b": (2,)}}
    is_shape = lambda s: isinstance(s, tuple)  # noqa: E731
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s)), shapes, is_leaf=is_shape)
    grads = [jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s)), shapes, is_leaf=is_shape)
             for _ in range(10)]
    lam = 0.3
    chained, _ = _run(with_weight_decay(adam(0.01), lam), params, grads)
    optimizer = adam(0.01)

    @jax.jit
    def step(params, state, g):
        total = jax.tree.map(jnp.add, g, jax.grad(weight_decay_penalty)(params, lam))
        updates, state = optimizer.update(total, state)
        return optax.apply_updates(params, updates), state

    by_hand, state = params, optimizer.init(params)
    for g in grads:
        by_hand, state = step(by_hand, state, g)
    assert max_abs_diff(chained, by_hand) < 1e-13
    undecayed, _ = _run(adam(0.01), params, grads)
    assert max_abs_diff(chained["affine1"]["W"], undecayed["affine1"]["W"]) > 1e-4


def test_zero_weight_decay_returns_the_optimizer_itself():
    optimizer = adam()
    assert with_weight_decay(optimizer, 0.0) is optimizer


# ---------------------------------------------------------------------------------------------
# SGD (kept from before).


def test_sgd_update_is_theta_minus_lr_times_grad():
    params = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(3.0)}}
    grads = {"a": jnp.array([0.5, -1.0]), "b": {"c": jnp.array(2.0)}}
    new = sgd_update(params, grads, 0.1)
    np.testing.assert_allclose(new["a"], [0.95, 2.1])
    np.testing.assert_allclose(new["b"]["c"], 2.8)


def test_hand_sgd_equals_optax_sgd_after_100_steps():
    data = load_digits()
    net = fnnet.two_layer_net(64, 20, 10, activation="sigmoid")
    x, t = jnp.asarray(data.x_train), jnp.asarray(data.t_train)
    indices = batch_indices(jax.random.key(5), num_examples=len(x), batch_size=50,
                            num_steps=25, sampling="replacement")
    finals = []
    for optimizer in (sgd(0.5), optax.sgd(0.5)):
        state = init_train_state(net, net.init(jax.random.key(0)), optimizer)
        step = make_train_step(net, optimizer)
        for i in range(100):
            state, _ = step(state, x[indices[i % 25]], t[indices[i % 25]])
        finals.append(state.params)
    # Both compute θ + (−η·g) in float32 with the same operations, so no tolerance is needed:
    # the parameters agree bit for bit.
    for a, b in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_hand_sgd_composes_with_optax_chain():
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), sgd(0.1))
    params = {"w": jnp.array([3.0, 4.0])}
    updates, _ = optimizer.update({"w": jnp.array([30.0, 40.0])}, optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.06, -0.08], rtol=1e-6)
