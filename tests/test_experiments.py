"""Smoke tests of the chapter 6–7 experiment scripts (``--quick``: digits, a few steps) and
the NumPy SimpleConvNet peer's gradient against fnnet's.

They check that each script runs end to end and writes its JSON and PNG with the expected
structure — never the figures themselves (those are experiments, not tests: DESIGN.md).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


@pytest.fixture
def experiments(monkeypatch: pytest.MonkeyPatch):
    """Import an experiment script by name, with ``experiments/`` on the path."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    return importlib.import_module


def run_quick(experiments, name: str, out_dir: Path, *extra: str) -> dict:
    experiments(name).main(["--quick", "--out-dir", str(out_dir), *extra])
    result = json.loads((out_dir / f"{name}_quick.json").read_text())
    assert (out_dir / f"{name}_quick.png").stat().st_size > 0
    assert result["environment"]["loadavg"]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name, labels", [
    ("optimizer_comparison", {"SGD", "Momentum", "AdaGrad", "Adam"}),
    ("weight_init_comparison", {"std=0.01", "Xavier", "He"}),
])
def test_loss_curve_experiments(experiments, tmp_path, name, labels):
    result = run_quick(experiments, name, tmp_path)
    assert set(result["runs"]) == labels
    steps = result["settings"]["iterations"]
    for run in result["runs"].values():
        assert len(run["loss"]) == steps and np.all(np.isfinite(run["loss"]))
        assert 0 <= run["final_test_acc"] <= 1


@pytest.mark.slow
def test_batch_norm_comparison(experiments, tmp_path):
    result = run_quick(experiments, "batch_norm_comparison", tmp_path)
    epochs = result["settings"]["epochs"]
    assert len(result["runs"]) == len(result["settings"]["weight_scales"])
    for row in result["runs"]:
        for variant in ("batchnorm", "plain"):
            assert len(row[variant]["train_acc"]) == epochs + 1  # before training, each epoch


@pytest.mark.slow
def test_overfitting(experiments, tmp_path):
    result = run_quick(experiments, "overfitting", tmp_path)
    assert result["settings"]["train_size"] == 300
    assert set(result["runs"]) == {"plain", "weight decay 0.1", "dropout 0.2"}
    for run in result["runs"].values():
        assert len(run["train_acc"]) == len(run["test_acc"]) == result["settings"]["epochs"]


@pytest.mark.slow
def test_train_convnet_writes_curves_and_resumes(experiments, tmp_path):
    module = experiments("train_convnet")
    common = ["--quick", "--out-dir", str(tmp_path), "--checkpoint-dir", str(tmp_path / "ckpt"),
              "--no-progress"]
    module.main(common)
    first = json.loads((tmp_path / "train_simple_conv_quick.json").read_text())
    assert first["status"] == "complete" and first["history"]["epoch"] == [1, 2]
    assert "fnnet train --dataset digits --net simple-conv --optimizer adam" in first["command"]
    module.main([*common, "--resume", "--epochs", "3"])
    resumed = json.loads((tmp_path / "train_simple_conv_quick.json").read_text())
    assert resumed["history"]["epoch"] == [1, 2, 3]
    assert resumed["history"]["test_acc"][:2] == first["history"]["test_acc"]
    assert (tmp_path / "train_simple_conv_quick.png").stat().st_size > 0


@pytest.mark.slow
def test_benchmark_conv_quick(experiments, tmp_path):
    out = tmp_path / "conv.json"
    assert experiments("benchmark_conv").main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["impl"]: row for row in result["rows"]}
    assert set(rows) == {"fnnet-manual-scan", "fnnet-autodiff-scan", "numpy-book-conv-1t"}
    accuracies = [row["test_acc"] for row in rows.values()]
    assert max(accuracies) - min(accuracies) <= 0.01  # same init, same batches, same Adam
    assert result["ratios"]["numpy_over_manual"] > 0
    assert out.with_suffix(".md").read_text().count("| fnnet-") == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_conv_peer_gradient_matches_fnnet(experiments, dtype):
    """The book's NumPy layers and fnnet's hand rules give the same loss and gradients."""
    nb = experiments("peers.numpy_book_conv")
    from fnnet.nets import simple_conv_net

    with jax.enable_x64(dtype == np.float64), jax.default_matmul_precision("highest"):
        net = simple_conv_net((2, 9, 9), 5, filters=4, kernel=3, hidden=7, weight_init="he",
                              dtype=jnp.dtype(dtype))
        params = net.init(jax.random.key(1))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((6, 2, 9, 9)).astype(dtype)
        t = rng.integers(0, 5, 6).astype(np.int32)
        # one jitted program, not op-by-op dispatch (each op its own compile)
        loss, grads = jax.jit(jax.value_and_grad(net.loss))(params, jnp.asarray(x),
                                                            jnp.asarray(t))
        peer = nb.SimpleConvNet(nb.as_numpy(params))
        peer_loss, peer_grads = peer.gradient(x.astype(np.float32), t)
    tol = 1e-5
    assert abs(float(loss) - peer_loss) <= tol
    for layer, leaves in peer_grads.items():
        for name, value in leaves.items():
            assert value.dtype == np.float32, (layer, name)
            np.testing.assert_allclose(value, np.asarray(grads[layer][name]), atol=tol,
                                       err_msg=f"{layer}/{name}")


@pytest.mark.slow
def test_sweep_scaling_quick(experiments, tmp_path):
    result = run_quick(experiments, "sweep_scaling", tmp_path, "--max-k", "2", "--epochs", "1")
    assert result["settings"]["ks"] == [1, 2]
    for net in result["nets"].values():  # K = 2 trains twice the model steps of K = 1
        assert [row["k"] for row in net["rows"]] == [1, 2]
        assert all(row["model_steps_per_s"] > 0 and row["train_s"] > 0 for row in net["rows"])
        assert net["rows"][1]["model_steps"] == 2 * net["rows"][0]["model_steps"] > 0


def test_saturation_k_is_the_smallest_k_within_ten_percent_of_the_best(experiments):
    rows = [{"k": 1, "model_steps_per_s": 10.0}, {"k": 2, "model_steps_per_s": 91.0},
            {"k": 4, "model_steps_per_s": 100.0}, {"k": 8, "model_steps_per_s": 95.0}]
    assert experiments("sweep_scaling").saturation_k(rows) == 2
    assert experiments("sweep_scaling").saturation_k(rows[:1]) == 1


def test_experiments_write_outside_the_committed_results_by_default(experiments):
    """Issue 18: running a script used to overwrite tracked files in experiments/results."""
    common = experiments("common")
    assert common.parser("x").parse_args([]).out_dir == common.RESULTS
    assert common.RESULTS == EXPERIMENTS / "runs" != common.COMMITTED
    assert "experiments/runs/" in (ROOT / ".gitignore").read_text().splitlines()
    defining = [path.name for path in EXPERIMENTS.glob("*.py")
                if path.name != "common.py" and '/ "results"' in path.read_text()]
    assert defining == []  # every script takes its default from common.RESULTS


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_op_agreement_measures_the_rules_relative_to_the_gradient(experiments, jit):
    module = experiments("op_agreement")
    rng = np.random.default_rng(0)
    args = (jnp.asarray(rng.standard_normal((6, 5)), jnp.float32),
            jnp.asarray(rng.standard_normal((5, 4)), jnp.float32), jnp.zeros(4, jnp.float32))
    with jax.default_matmul_precision("highest"):
        worst_abs, worst_rel = module.differences("affine", args, rng, jit=jit)
    assert 0 <= worst_rel <= 1e-6 and worst_abs <= 1e-5
    assert module.summary({"eager": {"a": {"max_abs": 1.0, "max_rel": 0.5}},
                           "jit": {"a": {"max_abs": 0.0, "max_rel": 0.0}}}) == {
        "eager_max_abs": 1.0, "eager_max_rel": 0.5, "jit_max_abs": 0.0, "jit_max_rel": 0.0}


def test_activation_histograms_quick(experiments, tmp_path):
    """Figures 6-10 to 6-14: each (activation, initial value) has 5 layers of 30-bin counts."""
    result = run_quick(experiments, "activation_histograms", tmp_path)
    assert len(result["runs"]) == 12
    samples, units = result["settings"]["samples"], result["settings"]["units"]
    for run in result["runs"].values():
        assert len(run["layers"]) == 5
        for layer in run["layers"]:
            assert len(layer["counts"]) == 30
            assert sum(layer["counts"]) == round(samples * units * (1 - layer["outside_range"]))
    # the book's point: std 0.01 vanishes through ReLU layers, He keeps the spread
    std = {name: [layer["std"] for layer in run["layers"]]
           for name, run in result["runs"].items()}
    assert std["relu, std 0.01"][-1] < 1e-4 < 0.3 < std["relu, He"][-1]
    assert result["runs"]["sigmoid, std 1"]["layers"][0]["saturated"] > 0.4


@pytest.mark.slow
def test_startup_quick_times_a_cold_and_a_warm_run(experiments, tmp_path):
    out = tmp_path / "startup.json"
    experiments("startup").main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    modes = {row["mode"]: row for row in result["rows"]}
    assert set(modes) == {"cold", "warm"}
    for row in modes.values():
        assert not row["errors"] and row["wall_s"] > row["compile_s"] > 0
        assert row["programs"] == 4
    assert out.with_suffix(".md").read_text().count("| train digits, 2 epochs |") == 2


def test_spiral_quick(experiments, tmp_path):
    result = run_quick(experiments, "spiral", tmp_path)
    assert result["settings"]["epochs"] == 3 and len(result["run"]["loss"]) == 3
    assert result["fnnet_seeds"]["runs"] == 2 == len(result["fnnet_seeds"]["final_loss"])
    assert set(result["numpy_book_loop_seeds"]) == {"book points", "default_rng(1984) points"}
    assert len(result["book_run"]["loss"]) == 3
    assert result["regions"]["shape"][0] > 10


@pytest.mark.slow
def test_word2vec_quick(experiments, tmp_path):
    result = run_quick(experiments, "word2vec", tmp_path)
    assert result["data"]["corpus"] == "synthetic" and result["settings"]["epochs"] == 2
    assert len(result["history"]["loss"]) == 2
    assert set(result["queries"]["most_similar"]) == {"you", "year", "car", "toyota"}
    assert all(len(found) == 5 for found in result["queries"]["analogy"].values())
    assert len(result["projection"]["words"]) == len(result["projection"]["xy"]) > 4


@pytest.mark.slow
def test_conv_filters_quick(experiments, tmp_path):
    """Figure 7-24: conv1's 30 kernels before and after training, and how structured."""
    result = run_quick(experiments, "conv_filters", tmp_path)
    before, after = np.asarray(result["before"]), np.asarray(result["after"])
    assert before.shape == after.shape == (30, 1, 5, 5) and not np.allclose(before, after)
    assert abs(result["neighbour_correlation"]["before"]) < 0.2  # N(0, 0.01²) noise
    assert result["history"]["step"][-1] == 30


def test_numerical_gradient_training_quick(experiments, tmp_path):
    """Chapter 4: backprop and the numerical gradient from the same init on the same batches."""
    result = run_quick(experiments, "numerical_gradient_training", tmp_path)
    backprop, numerical = result["backprop"], result["numerical"]
    assert len(backprop["step_loss"]) == len(numerical["step_loss"]) == 14
    np.testing.assert_allclose(numerical["step_loss"], backprop["step_loss"], rtol=1e-3)
    assert numerical["s_per_step"] > backprop["s_per_step"] > 0
    assert result["settings"]["forward_passes_per_numerical_step"] == 2 * (65 * 10 + 11 * 10)


def test_the_batch_norm_figure_marks_diverged_runs(experiments, tmp_path, monkeypatch):
    """A run whose loss turned NaN is drawn up to its last finite epoch and labelled, not as
    a flat line at 10 %."""
    module = experiments("batch_norm_comparison")
    row = {"weight_scale": 1.0,
           "plain": {"train_acc": [0.1, 0.3, 0.1, 0.1], "diverged_at_step": 15},
           "batchnorm": {"train_acc": [0.1, 0.5, 0.6, 0.7], "diverged_at_step": None}}
    result = {"runs": [row], "settings": {"steps_per_epoch": 10, "dataset": "digits",
                                          "train_size": 100, "lr": 0.01}}
    ax = _figure_of(module.plot, result, tmp_path, monkeypatch).axes[0]
    plain = next(line for line in ax.lines if line.get_label().startswith("Normal"))
    assert list(plain.get_xdata()) == [0, 1]  # epochs 2 and 3 come after the NaN (step 15)
    assert any("NaN at step 15" in text.get_text() for text in ax.texts)


def _figure_of(plot, result, tmp_path, monkeypatch):
    """The matplotlib figure ``plot(result, path)`` draws (its PNG written), kept open."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captured = {}
    with monkeypatch.context() as patch:
        patch.setattr(plt, "close", lambda fig=None: captured.setdefault("fig", fig))
        plot(result, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 0
    return captured["fig"]


def test_coinciding_manual_and_autodiff_curves_both_stay_visible(experiments, tmp_path,
                                                                   monkeypatch):
    history = {"epoch": [1, 2], "loss": [1.0, 0.5], "train_acc": [0.5, 0.7],
               "test_acc": [0.4, 0.6]}
    result = {"runs": {"manual": history, "autodiff": history},
              "settings": {"layers": [64, 50, 10], "activation": "sigmoid", "init_std": 0.01,
                           "dataset": "digits", "lr": 0.1, "batch_size": 100, "steps": 28}}
    figure = _figure_of(experiments("train_two_layer").plot, result, tmp_path, monkeypatch)
    for ax in figure.axes:
        lines = {line.get_label(): line for line in ax.lines}
        for quantity in {label.split(": ")[1] for label in lines}:
            manual, autodiff = lines[f"manual: {quantity}"], lines[f"autodiff: {quantity}"]
            assert manual.get_color() == autodiff.get_color()  # one colour per quantity
            assert manual.get_linewidth() > 2 * autodiff.get_linewidth()  # wide under thin
            assert autodiff.get_linestyle() == "--"
        assert ax.get_xlabel() == "epoch"


# --- the sequel's seq2seq (chapters 7–8) ---------------------------------------------------


@pytest.mark.slow
def test_seq2seq_addition_quick(experiments, tmp_path):
    result = run_quick(experiments, "seq2seq_addition", tmp_path, "--runs", "reversed + peeky",
                       "--no-progress")
    run = result["runs"]["reversed + peeky"]
    assert run["net"] == "peeky" and run["reverse"] is True
    assert run["history"]["epoch"] == [1, 2]
    assert run["command"].startswith("fnnet seq2seq --dataset addition --net peeky --reverse")
    assert result["summary"]["peeky_acc_at_epoch_15"] is None  # 2 epochs only


@pytest.mark.slow
def test_seq2seq_dates_quick(experiments, tmp_path):
    result = run_quick(experiments, "seq2seq_dates", tmp_path, "--no-progress",
                       "--examples", "0", "3")
    assert result["run"]["net"] == "attention" and result["settings"]["epochs"] == 1
    assert [m["row"] for m in result["attention"]] == [0, 3]
    for example in result["attention"]:
        weights = np.asarray(example["weights"])
        assert weights.shape == (10, len(example["question"]))  # reading order, no padding
        assert np.all(weights >= 0) and np.all(weights.sum(axis=1) <= 1 + 1e-3)
    assert (tmp_path / "seq2seq_dates_quick_attention.png").stat().st_size > 0


@pytest.mark.slow
def test_benchmark_seq2seq_quick(experiments, tmp_path):
    out = tmp_path / "s2s.json"
    assert experiments("benchmark_seq2seq").main(["--quick", "--no-torch", "--out",
                                                  str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["epoch_s_median"]) == {"fnnet-manual", "fnnet-autodiff", "numpy-book"}
    losses = list(result["mean_loss"].values())
    assert max(losses) - min(losses) < 1e-4  # same init, same batches, the book's Adam
    assert result["torch_skipped"] == "--no-torch" and result["loadavg_before"]
    assert "numpy-book_over_manual" in result["ratios"]
    rate, floor = result["matmul_rate"], result["three_times_numpy"]
    assert rate["gflops"] >= max(rate["numpy_gflops"], rate["xla_gflops"]) * (1 - 1e-9)
    assert floor["needed_gflops"] == pytest.approx(
        floor["step_matmul_flops"] / floor["target_ms"] / 1e6)


@pytest.fixture(scope="module")
def tiny_addition():
    from fnnet.data import load_seq2seq

    return load_seq2seq("addition", reverse=True, size=200)


@pytest.mark.parametrize("net", ["seq2seq", "peeky"])
def test_numpy_seq2seq_peer_gradient_matches_fnnet(experiments, tiny_addition, net):
    """The book's NumPy seq2seq and fnnet's hand rules give the same loss and gradients."""
    nb = experiments("peers.numpy_seq2seq")
    from fnnet.nets import seq2seq as nets

    data = tiny_addition
    with jax.default_matmul_precision("highest"):
        model = nets.build(nets.config_for(net, data, wordvec_size=3, hidden_size=5))
        params = jax.device_get(model.init(jax.random.key(1)))
        params = jax.tree.map(lambda p: p + np.float32(0.3) * np.random.default_rng(0)
                              .standard_normal(p.shape).astype(np.float32), params)
        x, t = data.x_train[:6], data.t_train[:6]
        loss, grads = jax.jit(jax.value_and_grad(model.loss))(params, x, t)
    peer_loss, peer_grads = nb.gradient(params, x, t, start_id=data.start_id,
                                        peeky=net == "peeky")
    assert abs(float(loss) - peer_loss) <= 1e-5
    for (path, ours), theirs in zip(jax.tree_util.tree_leaves_with_path(grads),
                                    jax.tree.leaves(peer_grads), strict=True):
        assert theirs.dtype == np.float32
        np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))


def test_torch_seq2seq_peer_loss_matches_fnnet(experiments, tiny_addition):
    pytest.importorskip("torch")
    peer = experiments("peers.torch_seq2seq")
    import torch

    from fnnet.nets import seq2seq as nets

    data = tiny_addition
    model = nets.build(nets.config_for("peeky", data, wordvec_size=3, hidden_size=5))
    params = jax.device_get(model.init(jax.random.key(1)))
    x, t = data.x_train[:6], data.t_train[:6]
    net = peer.PeekySeq2seq(params)
    decoder_in = torch.from_numpy(np.concatenate(
        [np.full((6, 1), data.start_id), t[:, :-1]], axis=1).astype(np.int64))
    with torch.no_grad():
        logits = net(torch.from_numpy(x.astype(np.int64)), decoder_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(t.astype(np.int64)).reshape(-1))
    assert abs(float(loss) - float(model.loss(params, x, t))) <= 1e-5


# --- the sequel's language models (--quick: a synthetic corpus, tiny models) -----------------


@pytest.mark.slow
def test_simple_rnnlm_quick(experiments, tmp_path):
    result = run_quick(experiments, "simple_rnnlm", tmp_path, "--no-progress")
    run = result["runs"]["manual"]
    assert result["source"] == "synthetic (--quick)" and run["epoch"] == [1, 2, 3]
    assert run["train_ppl"][-1] < run["train_ppl"][0] <= result["settings"]["vocabulary"] * 1.5


@pytest.mark.slow
def test_rnnlm_clipping_quick(experiments, tmp_path):
    result = run_quick(experiments, "rnnlm_clipping", tmp_path, "--no-progress")
    assert set(result["runs"]) == {"clipped at 0.25", "not clipped"}
    clipped = result["runs"]["clipped at 0.25"]
    assert clipped["epoch"] == [1, 2] and clipped["diverged_at_step"] is None
    assert len(clipped["step_loss"]) == 2 * 39  # 799 // (4·5) steps an epoch


@pytest.mark.slow
def test_rnnlm_perplexity_quick(experiments, tmp_path):
    result = run_quick(experiments, "rnnlm_perplexity", tmp_path, "--no-progress",
                       "--seeds", "1")
    constant, decayed = result["runs"]["constant lr"][0], result["runs"]["lr ÷ 4"][0]
    assert constant["epoch"] == decayed["epoch"] == [1, 2, 3]
    assert constant["lr"] == [20.0] * 3
    # Same init and batches: the first epoch is the same run; after it the rule decides.
    assert decayed["held_out_ppl"][0] == pytest.approx(constant["held_out_ppl"][0], rel=1e-6)
    for i in range(1, 3):
        worse = decayed["held_out_ppl"][i - 1] >= min(decayed["held_out_ppl"][:i - 1] or
                                                      [np.inf])
        assert decayed["lr"][i] == decayed["lr"][i - 1] / (4.0 if worse else 1.0)
    assert result["median_best"]["constant lr"] == min(constant["held_out_ppl"])
    assert (tmp_path / "rnnlm_perplexity_quick.md").read_text().count("| lr ÷ 4 |") == 1


@pytest.mark.slow
def test_gradient_norm_through_time_quick(experiments, tmp_path):
    result = run_quick(experiments, "gradient_norm_through_time", tmp_path)
    assert result["bptt_vs_autodiff_max_rel_difference"] < 1e-12
    large, small = result["runs"].values()
    assert large["book_chain_max_rel_difference"] < 1e-12  # h = 0: exactly the book's chain
    assert large["zero_inputs"][-1] > large["zero_inputs"][0]  # exploding
    assert small["zero_inputs"][-1] < small["zero_inputs"][0]  # vanishing


@pytest.mark.slow
def test_benchmark_rnnlm_quick(experiments, tmp_path):
    result = experiments("benchmark_rnnlm").main(["--quick", "--no-torch", "--out-dir",
                                                  str(tmp_path)])
    assert (tmp_path / "benchmark_rnnlm_quick.md").read_text().startswith("# Rnnlm training")
    assert set(result["median_ms_per_step"]) == {"fnnet manual", "fnnet autodiff",
                                                 "NumPy (the book's layers)"}
    losses = list(result["first_step_loss"].values())
    np.testing.assert_allclose(losses, losses[0], rtol=1e-5)  # same init, same batch
    assert result["torch"].startswith("left out")
    # quick sizes B 2, T 4, V 30, D = H 6: 6·B·T·(4H·2H + H·V) matmul FLOPs a step
    floor = result["three_times_numpy"]
    assert floor["step_matmul_flops"] == 6 * 2 * 4 * (4 * 6 * 12 + 6 * 30)
    assert floor["floor_ms"] == pytest.approx(
        floor["step_matmul_flops"] / result["matmul_rate"]["gflops"] / 1e6)
    assert floor["target_ms"] == pytest.approx(
        result["median_ms_per_step"]["NumPy (the book's layers)"] / 3)


def test_numpy_rnnlm_peer_takes_fnnets_training_steps(experiments):
    """The book's NumPy layers and fnnet's manual rules: the same losses and parameters
    over three clipped SGD steps with the state carried."""
    from fnnet.nets import rnnlm
    from fnnet.train import TrainState, make_train_step
    from fnnet.train_lm import lm_optimizer, sequence_batches, zero_state

    peer = experiments("peers.numpy_rnnlm")
    net = rnnlm(15, 4, 5, time_size=4)
    params = jax.tree.map(np.array, net.init(jax.random.key(0)))  # writable copies
    params["embedding"]["W"] *= 100  # larger activations: a sharper comparison
    x, t = sequence_batches(np.random.default_rng(0).integers(0, 15, 25), 2, 4)
    model = peer.Rnnlm(params)
    optimizer = lm_optimizer("sgd", 1.0, max_grad=0.5)
    step = make_train_step(net, optimizer)
    state = TrainState(jax.tree.map(jnp.asarray, params), optimizer.init(params),
                       zero_state(net, params, 2))
    for s in range(len(x)):
        state, loss = step(state, x[s], t[s])
        assert peer.train_step(model, x[s], t[s], 1.0, 0.5) == pytest.approx(float(loss),
                                                                             rel=1e-5)
    for path, (a, b) in zip(["embedding", "lstm", "affine"], [
            (model.pytree()[k], state.params[k]) for k in ("embedding", "lstm", "affine")],
            strict=True):
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6,
                                       err_msg=f"{path}/{name}")
