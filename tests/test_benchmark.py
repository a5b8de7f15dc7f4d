"""experiments/benchmark.py: a --quick run end to end, and the pieces its fairness rests on.

The end-to-end test checks structure and agreement, never speed (DESIGN.md, "Measurement"):
every row trains the same net from the same init on the same batches, so all reach the same
test accuracy.
"""

from __future__ import annotations

import importlib.util
import json
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pytest

# Comparisons of rules run at full float32 precision (GPUs default to TF32).
pytestmark = pytest.mark.usefixtures("highest_precision")

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
FNNET_ROWS = {f"fnnet-{grads}-{opt}-{loop}" for grads in ("manual", "autodiff")
              for opt in ("handsgd", "optaxsgd") for loop in ("jit", "scan")}
FNNET_ROWS |= {f"fnnet-{grads}-userloop" for grads in ("manual", "autodiff")}
HAS_TORCH = importlib.util.find_spec("torch") is not None
RATES = ("us_per_step", "steps_per_s", "samples_per_s", "gflops", "pct_of_peak")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The JSON of one ``--quick`` run (BLAS/OpenMP threads 1: robust on a loaded machine),
    run in this process: its rows need no fresh one (they compile their own programs)."""
    out = tmp_path_factory.mktemp("benchmark") / "x.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXPERIMENTS))
        import benchmark

        assert benchmark.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    return json.loads(out.read_text()), out


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    """The benchmark module, imported with ``experiments/`` on the path (for ``peers``)."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import benchmark

    return benchmark


def test_quick_run_has_every_row_with_positive_numbers(quick):
    result, _ = quick
    rows = {row["impl"]: row for row in result["rows"]}
    assert {name for name in rows if name.startswith("fnnet")} == FNNET_ROWS
    expected_peers = {"numpy-book", "plain-jax-jit", "optax-jit"}
    expected_peers |= {"torch-eager"} if HAS_TORCH else set()
    assert expected_peers <= set(rows)
    skipped = {s["impl"] for s in result["skipped"]}
    assert "torch-compile" in skipped  # --quick skips it; without torch, so do both torch rows
    assert HAS_TORCH or "torch-eager" in skipped
    assert "torch-cuda-graph" in skipped  # a CPU run: no CUDA graphs (or no torch)
    for name, row in rows.items():
        assert "error" not in row, (name, row.get("error"))
        assert all(row[key] > 0 for key in RATES), row
        assert row["compile_s"] >= 0 and row["steps"] == result["config"]["steps"]
        assert np.isclose(row["us_per_step"] * row["steps_per_s"], 1e6)


def test_quick_run_rows_agree_on_test_accuracy(quick):
    result, _ = quick
    accuracies = [row["test_acc"] for row in result["rows"]]
    assert max(accuracies) - min(accuracies) <= 0.01, accuracies
    assert min(accuracies) > 0.2  # it learned something: agreement is not trivial


def test_quick_run_records_config_peak_environment_and_table(quick):
    result, out = quick
    config = result["config"]
    assert config["name"] == "small" and config["quick"] and config["layers"] == [784, 50, 10]
    assert config["flops_per_step"] == 6 * 100 * (784 * 50 + 50 * 10)
    assert result["matmul_peak_gflops"]["numpy"] > 0 and result["matmul_peak_gflops"]["jax"] > 0
    env = result["environment"]
    for key in ("jax", "numpy", "torch", "python", "cpu", "cores", "device"):
        assert key in env
    table = out.with_suffix(".md").read_text()
    assert "| implementation | µs/step |" in table
    assert all(f"| {row['impl']} |" in table for row in result["rows"])


def test_index_matrix_is_a_fresh_permutation_per_epoch(bench):
    indices = bench.make_indices(1050, 100, 25, seed=3)
    assert indices.shape == (25, 100) and indices.dtype == np.int32
    for epoch in (indices[:10], indices[10:20]):  # 10 full batches per epoch, 50 dropped
        assert len(np.unique(epoch)) == 1000
    assert not np.array_equal(indices[:10], indices[10:20])
    np.testing.assert_array_equal(indices, bench.make_indices(1050, 100, 25, seed=3))


def _takes_the_same_steps_as_fnnet(bench, activation: str, trainers) -> None:
    """Each trainer, from the same params over the same 12 batches, ends where fnnet does."""
    data = bench.synthetic_dataset(0, train=600, test=100, features=20, classes=4)
    cfg = bench.Config("tiny", (8, 6), activation, "xavier", 30, 0.5, 12, 1)
    params = bench.init_params(cfg, 20, 4, seed=1)
    indices = bench.make_indices(600, 30, 12, seed=2)
    reference, _, _ = bench.fnnet_trainer("manual", "handsgd", "scan", chunk=5)(
        params, data.x_train, data.t_train, indices, cfg.lr, activation)
    for train in trainers:
        final, seconds, compile_s = train(params, data.x_train, data.t_train, indices, cfg.lr,
                                          activation)
        assert seconds > 0 and compile_s >= 0
        for (W, b), (W_ref, b_ref) in zip(final, reference, strict=True):
            np.testing.assert_allclose(W, W_ref, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(b, b_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_peers_take_the_same_steps_as_fnnet(bench, activation):
    """The NumPy peer (its own layer classes per activation, nothing to compile) with both
    activations; the compiled trainers split between them: plain-jax and optax-jit share
    plain_jax.loss (so its two activations are each checked once), and the fnnet rows take
    their activation from fnnet's layers (the reference, fnnet-manual-handsgd-scan, runs
    with both)."""
    from peers import numpy_book, optax_only, plain_jax

    compiled = {
        "sigmoid": (plain_jax.train, bench.fnnet_trainer("autodiff", "optaxsgd", "jit", chunk=5),
                    bench.user_loop_trainer("manual", chunk=5)),
        "relu": (optax_only.train, bench.user_loop_trainer("autodiff", chunk=5)),
    }
    _takes_the_same_steps_as_fnnet(bench, activation, (numpy_book.train, *compiled[activation]))


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_torch_peers_take_the_same_steps_as_fnnet(bench, activation):
    torch = pytest.importorskip("torch")  # an optional extra: not in CI
    from peers import torch_nn

    trainers = [partial(torch_nn.train, device="cpu")]
    if torch.cuda.is_available():  # the eager step and the CUDA-graph replay on the GPU
        trainers += [partial(torch_nn.train, device="cuda"),
                     partial(torch_nn.train, device="cuda", cuda_graph=True)]
    _takes_the_same_steps_as_fnnet(bench, activation, trainers)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        torch_nn.train([], np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), 0.1, activation,
                       cuda_graph=True)


def test_numpy_book_gradient_matches_jax_grad(bench):
    from peers import numpy_book, plain_jax

    data = bench.synthetic_dataset(1, train=50, test=10, features=12, classes=3)
    cfg = bench.Config("tiny", (7,), "sigmoid", "xavier", 50, 0.1, 1, 1)
    params = bench.init_params(cfg, 12, 3, seed=0)
    net = numpy_book.MultiLayerNet(params, "sigmoid")
    grads = net.gradient(data.x_train, data.t_train)
    expected = jax.grad(plain_jax.loss)(plain_jax.to_dict(params), data.x_train, data.t_train,
                                        "sigmoid")
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-4, atol=1e-6)


def test_numpy_evaluate_counts_hits_and_mean_loss(bench):
    W, b = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    x = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0]], np.float32)
    loss, acc = bench.numpy_evaluate([(W, b)], x, np.array([0, 1, 2, 1]), "relu")
    assert acc == 0.75
    nll = -np.log(np.exp(5) / (np.exp(5) + 2))
    np.testing.assert_allclose(loss, (3 * nll + (5 + nll)) / 4, rtol=1e-5)


@pytest.mark.parametrize("argv", [["--config", "huge"], ["--quick", "--config", "big"],
                                  ["--steps", "0"]])
def test_bad_command_lines_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_the_matmul_only_floor_of_a_device_run_is_measured_on_that_device_only(bench):
    params = [(np.ones((8, 4), np.float32), np.zeros(4, np.float32)),
              (np.ones((4, 3), np.float32), np.zeros(3, np.float32))]
    cpu = bench.matmul_only(params, 2, jax.devices()[0], steps=4, tries=1)
    assert cpu["jax"] > 0 and cpu["numpy"] > 0
    device = bench.matmul_only(params, 2, jax.devices()[0], steps=4, tries=1, with_numpy=False)
    assert device["jax"] > 0 and device["numpy"] is None
