"""fnnet.sweep and ``fnnet sweep``: each trial equals ``fit`` of it alone; chunks and devices
change nothing; ``train_args`` reproduce a trial; bad input is a one-line usage error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import jaxpr_as_fun

from fnnet.cli import main
from fnnet.data import Dataset, load_digits
from fnnet.nets import build_net
from fnnet.optim import OPTIMIZERS, get_optimizer
from fnnet.parallel import MAX_CPU_DEVICES, usable_cores
from fnnet.sweep import (
    CPU_TRIALS_PER_DEVICE,
    Trial,
    chunk_plan,
    default_max_parallel,
    host_key_plan,
    injected_optimizer,
    log_range,
    sample_trials,
    sweep,
    trial_key_data,
    trial_keys,
    validation_split,
)
from fnnet.train import fit
from tests.helpers import max_abs_diff

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--no-progress", "--no-compile-cache"]
HIDDEN = [16, 16]
EPOCHS, BATCH = 2, 50
# η from 0.05 to 0.5 and λ from 1e-3 to 0.1 move the parameters visibly in two epochs.
TRIALS = sample_trials(5, lr=(0.05, 0.5), weight_decay=(1e-3, 0.1), seed=7)


@pytest.fixture(scope="module")
def split():
    data = load_digits()
    return validation_split(data.x_train, data.t_train, fraction=0.2, train_size=300, seed=3)


@pytest.fixture(scope="module")
def model():
    return build_net("mlp", (64,), 10, hidden=HIDDEN, activation="tanh", weight_init="xavier")


def _sweep(model, split, **options):
    train, validation = split
    return sweep(model, TRIALS, train, validation, epochs=EPOCHS, batch_size=BATCH,
                 optimizer=options.pop("optimizer", "momentum"), keep_params=True,
                 progress=False, **options)


@pytest.fixture(scope="module")
def one_chunk(model, split):
    return _sweep(model, split)


def _assert_same_results(a, b):
    assert max_abs_diff(a.params, b.params) < 1e-6
    for name in a.curves:
        np.testing.assert_allclose(a.curves[name], b.curves[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)


@pytest.mark.parametrize("index", [0, 3])
def test_a_trial_equals_fit_of_that_trial_alone(index, one_chunk, split):
    trial = one_chunk.trials[index]
    (x, t), (x_val, t_val) = split
    net = build_net("mlp", (64,), 10, hidden=HIDDEN, activation="tanh", weight_init="xavier",
                    weight_decay=trial.weight_decay)
    init_key, data_key = trial_keys(trial.seed)
    params, history = fit(net, net.init(init_key), Dataset("split", x, t, x_val, t_val, 10, (8, 8)),
                          optimizer=get_optimizer("momentum", trial.lr), key=data_key,
                          batch_size=BATCH, epochs=EPOCHS, progress=False)
    alone = jax.tree.map(lambda a: a[index], one_chunk.params)
    moved = max_abs_diff(params, net.init(init_key))
    assert moved > 1e-2  # the check below is not trivially true
    assert max_abs_diff(params, alone) < 1e-6 * max(1.0, moved)
    curves = one_chunk.curves
    np.testing.assert_allclose(curves["loss"][index], history.loss, rtol=1e-6)
    np.testing.assert_allclose(curves["val_loss"][index], history.test_loss, rtol=1e-5)
    np.testing.assert_array_equal(curves["val_acc"][index], history.test_acc)
    np.testing.assert_array_equal(curves["train_acc"][index], history.train_acc)


def test_trials_start_from_keys_split_on_the_host(model):
    """The keys a trial's init program takes are JAX's: the seed's split, and the draws' keys
    as the init derives them (its key plan's jaxpr run by JAX)."""
    plan = host_key_plan(model)
    assert plan is not None and len(plan.plan) == len(HIDDEN) + 1  # one draw per weight
    draws, init_data, data_data = trial_key_data([3, 11], plan)
    for seed, drawn, init_datum, data_datum in zip([3, 11], draws, init_data, data_data,
                                                   strict=True):
        init_key, data_key = trial_keys(seed)
        np.testing.assert_array_equal(init_datum, jax.random.key_data(init_key))
        np.testing.assert_array_equal(data_datum, jax.random.key_data(data_key))
        expected = jaxpr_as_fun(plan.derivation)(init_key)
        np.testing.assert_array_equal(drawn, np.stack(expected))


def test_chunks_give_the_same_results_as_one_chunk(one_chunk, model, split):
    chunked = _sweep(model, split, max_parallel=2)
    assert (chunked.chunks, chunked.chunk_size) == (3, 2)  # 5 trials: 2 + 2 + 1 padded
    _assert_same_results(one_chunk, chunked)


@pytest.mark.slow
def test_sharding_over_four_devices_gives_the_same_results(tmp_path):
    code = f"""
import jax, numpy as np, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.test_sweep import TRIALS, HIDDEN, EPOCHS, BATCH
from fnnet.data import load_digits
from fnnet.nets import build_net
from fnnet.sweep import sweep, validation_split
d = load_digits()
train, val = validation_split(d.x_train, d.t_train, fraction=0.2, train_size=300, seed=3)
net = build_net("mlp", (64,), 10, hidden=HIDDEN, activation="tanh", weight_init="xavier")
out = {{}}
for devices in (None, 4):
    r = sweep(net, TRIALS, train, val, epochs=EPOCHS, batch_size=BATCH, optimizer="momentum",
              keep_params=True, progress=False, devices=devices, test=(d.x_test, d.t_test))
    out[f"W{{devices}}"] = r.params["affine1"]["W"]
    out[f"val{{devices}}"] = r.curves["val_acc"]
    out[f"test{{devices}}"] = r.test_acc
    out[f"size{{devices}}"] = r.chunk_size
np.savez({str(tmp_path / "r.npz")!r}, devices=len(jax.devices()), **out)
"""
    done = _run_python(["-c", code], XLA_FLAGS="--xla_force_host_platform_device_count=4")
    assert done.returncode == 0, done.stderr[-3000:]
    r = np.load(tmp_path / "r.npz")
    assert int(r["devices"]) == 4 and int(r["size4"]) == 8  # 5 trials padded to 2 per device
    np.testing.assert_allclose(r["WNone"], r["W4"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r["valNone"], r["val4"])
    np.testing.assert_array_equal(r["testNone"], r["test4"])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_injected_learning_rate_equals_the_fixed_one(name):
    rng = np.random.default_rng(0)
    params = {"a": {"W": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32),
                    "b": jnp.zeros(4)}}
    lr = 0.0123
    fixed, injected = get_optimizer(name, lr), injected_optimizer(name)(learning_rate=lr)
    p1, p2, s1, s2 = params, params, fixed.init(params), injected.init(params)
    for step in range(5):
        grads = jax.tree.map(lambda p, s=step: jnp.cos(p * (s + 1)) + 0.1, p1)
        u1, s1 = fixed.update(grads, s1, p1)
        u2, s2 = injected.update(grads, s2, p2)
        p1, p2 = jax.tree.map(jnp.add, p1, u1), jax.tree.map(jnp.add, p2, u2)
    assert max_abs_diff(p1, p2) <= 2e-7 * max(1.0, max_abs_diff(p1, params))


def test_sample_trials_are_log_uniform_in_range_and_a_prefix_of_a_longer_sweep():
    trials = sample_trials(200, lr=(1e-6, 1e-2), weight_decay=(1e-8, 1e-4), seed=1)
    lrs = np.log10([t.lr for t in trials])
    wds = np.log10([t.weight_decay for t in trials])
    assert lrs.min() >= -6 and lrs.max() <= -2 and wds.min() >= -8 and wds.max() <= -4
    assert abs(lrs.mean() + 4) < 0.3 and lrs.std() > 1.0  # spread over the decades
    assert len({t.seed for t in trials}) == 200
    assert sample_trials(5, lr=(1e-6, 1e-2), weight_decay=(1e-8, 1e-4), seed=1) == trials[:5]
    fixed = sample_trials(3, lr=0.01, weight_decay=0.0, seed=1)
    assert {(t.lr, t.weight_decay) for t in fixed} == {(0.01, 0.0)}


@pytest.mark.parametrize(("value", "message"), [
    ((1e-2, 1e-6), "inverted"), ((0.0, 1.0), "bounds > 0"), ((-1.0, 1.0), "bounds > 0"),
    (-1.0, ">= 0"), ((1.0, float("inf")), "finite"),
])
def test_log_range_refuses_bad_bounds(value, message):
    with pytest.raises(ValueError, match=message):
        log_range("lr", value)


def test_validation_split_is_seeded_disjoint_and_the_book_sized():
    x, t = np.arange(1000.0)[:, None], np.arange(1000)
    (xt, _), (xv, tv) = validation_split(x, t, fraction=0.2, train_size=500, seed=0)
    assert (len(xt), len(xv)) == (400, 100)
    assert set(xt[:, 0]).isdisjoint(xv[:, 0]) and set(xt[:, 0]) | set(xv[:, 0]) == set(range(500))
    assert np.array_equal(tv, validation_split(x, t, fraction=0.2, train_size=500, seed=0)[1][1])
    assert not np.array_equal(tv, validation_split(x, t, fraction=0.2, train_size=500,
                                                   seed=1)[1][1])


@pytest.mark.parametrize(("trials", "max_parallel", "devices", "plan"), [
    (100, None, 1, (1, 100)), (100, 1, 1, (100, 1)), (100, 32, 1, (4, 25)),
    (5, 2, 1, (3, 2)), (5, None, 4, (1, 8)), (10, 6, 4, (3, 4)),
])
def test_chunk_plan(trials, max_parallel, devices, plan):
    assert chunk_plan(trials, max_parallel, devices) == plan


def test_default_max_parallel_is_a_few_trials_per_cpu_device_and_all_elsewhere():
    assert default_max_parallel("cpu", 1) == CPU_TRIALS_PER_DEVICE
    assert default_max_parallel("cpu", 3) == 3 * CPU_TRIALS_PER_DEVICE
    assert default_max_parallel("gpu", 1) is None and default_max_parallel("tpu", 8) is None


def test_sweep_refuses_an_empty_list_of_trials(model, split):
    with pytest.raises(ValueError, match="trials must not be empty"):
        sweep(model, [], *split, epochs=1)
    with pytest.raises(ValueError, match="lr > 0"):
        sweep(model, [Trial(0.0, 0.0, 1)], *split, epochs=1)


# --- the command ------------------------------------------------------------------------------

SMALL = ["--trials", "3", "--epochs", "2", "--hidden", "16", "--train-size", "300",
         "--lr", "0.05:0.5", "--weight-decay", "1e-3:1e-1", "--batch-size", "50",
         "--optimizer", "momentum", "--activation", "tanh", "--init", "xavier", "--seed", "4"]


def test_sweep_command_table_json_plot_and_train_args_reproduce_a_trial(tmp_path, capsys):
    out, plot = tmp_path / "sweep.json", tmp_path / "sweep.png"
    assert main(["sweep", *SMALL, "--out", str(out), "--plot", str(plot), *FAST]) == 0
    stdout = capsys.readouterr().out
    assert "(240 train / 60 validation / 360 test)" in stdout
    assert "rank  trial  val acc  test acc" in stdout and "model-steps/s" in stdout
    result = json.loads(out.read_text())
    assert result["summary"]["model_steps"] == 3 * 2 * 4 and result["summary"]["model_steps_per_s"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = result["trials"][result["summary"]["best"]]
    assert {"lr", "weight_decay", "seed", "val_acc", "test_acc", "test_loss"} <= set(best)
    assert len(best["curves"]["val_acc"]) == 2
    alone = tmp_path / "alone.json"
    assert main(["train", *best["train_args"], "--out", str(alone), *FAST]) == 0
    trained = json.loads(alone.read_text())
    assert trained["summary"]["val_acc"] == best["val_acc"]
    assert trained["summary"]["test_acc"] == best["test_acc"]
    np.testing.assert_allclose(trained["summary"]["test_loss"], best["test_loss"], rtol=1e-5)
    np.testing.assert_allclose(trained["history"]["loss"], best["curves"]["loss"], rtol=1e-6)
    np.testing.assert_allclose(trained["history"]["val_loss"], best["curves"]["val_loss"],
                               rtol=1e-5)


def _run_python(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` on the CPU, with no CPU device count from this process's environment
    (its other XLA flags, the suite's compile-time optimisation level, are kept)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
             if "xla_force_host_platform_device_count" not in flag]
    if "XLA_FLAGS" in env:
        flags.append(env.pop("XLA_FLAGS"))
    environment.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), **env)
    if flags:
        environment["XLA_FLAGS"] = " ".join(flags)
    return subprocess.run([sys.executable, *args], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


# Runs the ``fnnet`` program (as ``python -m fnnet`` does: ``main()`` reading ``sys.argv``,
# so with its process-wide setup) on each argv of the JSON list ``sys.argv[1]`` in turn in
# this one process (JAX's device count is fixed when its backend starts: the first run
# starts it) and prints each run's status, stdout and stderr as one JSON list.
MAIN_IN_A_FRESH_PROCESS = """
import contextlib, io, json, sys
from fnnet.cli import main
runs = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["fnnet", *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main()
        except SystemExit as exit_info:
            status = exit_info.code
    runs.append({"status": status, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(runs))
"""


def _main_in_a_fresh_process(argvs: list[list[str]], **env: str) -> list[dict]:
    done = _run_python(["-c", MAIN_IN_A_FRESH_PROCESS, json.dumps(argvs)], **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_command_gives_jax_one_cpu_device_per_core_and_shards_the_trials(tmp_path):
    """One fresh process runs the default, ``--devices all``, ``--sequential`` and a refused
    ``--devices 2 --max-parallel 1`` in turn (the first starts JAX's backend with one CPU
    device per core; the later runs find it started); a second process has the user's own
    ``JAX_NUM_CPU_DEVICES=1``."""
    devices = min(usable_cores(), MAX_CPU_DEVICES, 3)  # SMALL has 3 trials: one device each
    outs = [tmp_path / f"sweep{n}.json" for n in range(4)]
    default, every, sequential, refused = _main_in_a_fresh_process([
        ["sweep", *SMALL, "--out", str(outs[0]), *FAST],
        ["sweep", *SMALL, "--devices", "all", "--out", str(outs[1]), *FAST],
        ["sweep", *SMALL, "--sequential", "--out", str(outs[2]), *FAST],
        ["sweep", *SMALL, "--devices", "2", "--max-parallel", "1", *FAST]])
    assert default["status"] == 0, default["stderr"][-3000:]
    summary = json.loads(outs[0].read_text())["summary"]
    assert summary["available_devices"] == min(usable_cores(), MAX_CPU_DEVICES)
    plan = summary["plan"]  # the default chooses: the first trial alone, then the faster plan
    assert plan["adaptive"] and plan["mode"] in ("sequential", "vmapped")
    assert plan["predicted_sequential_s"] > 0 and plan["predicted_vmapped_s"] > 0
    assert f"plan: {'one trial at a time' if plan['mode'] == 'sequential' else 'chunks'}" in (
        default["stdout"])
    assert every["status"] == 0, every["stderr"][-3000:]
    summary = json.loads(outs[1].read_text())["summary"]
    assert (summary["platform"], summary["devices"]) == ("cpu", devices)
    assert summary["chunk_size"] == chunk_plan(3, CPU_TRIALS_PER_DEVICE * devices, devices)[1]
    assert f"on {devices} cpu device" in every["stdout"]
    # --sequential keeps to one device, and the user's own count wins
    assert sequential["status"] == 0, sequential["stderr"][-3000:]
    assert json.loads(outs[2].read_text())["summary"]["devices"] == 1
    if devices >= 2:
        assert refused["status"] == 2
        assert "--max-parallel 1 is less than --devices 2" in refused["stderr"], refused
    [own] = _main_in_a_fresh_process([["sweep", *SMALL, "--out", str(outs[3]), *FAST]],
                                     JAX_NUM_CPU_DEVICES="1")
    assert own["status"] == 0, own["stderr"][-3000:]
    assert json.loads(outs[3].read_text())["summary"]["devices"] == 1


def test_one_cpu_device_per_core_leaves_a_started_backend_and_the_users_choice_alone():
    from fnnet.parallel import one_cpu_device_per_core

    before = jax.devices()  # this process's backends have started
    assert one_cpu_device_per_core(len(before) + 1) is None and jax.devices() == before
    code = ("import jax, sys; from fnnet.parallel import one_cpu_device_per_core as split; "
            "count = int(sys.argv[1]) if len(sys.argv) > 1 else None; "
            "print(split(count), len(jax.devices()))")
    outputs = []
    for argv, env in ([], {}), (["3"], {}), (["3"], {"JAX_NUM_CPU_DEVICES": "2"}), \
            (["3"], {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}):
        done = _run_python(["-c", code, *argv], **env)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout.split())
    cores = str(min(usable_cores(), MAX_CPU_DEVICES))
    assert outputs == [[cores, cores], ["3", "3"], ["None", "2"], ["None", "2"]]


@pytest.mark.parametrize(("flags", "message"), [
    (["--trials", "0"], "--trials: must be an integer >= 1"),
    (["--data-dir", "/nonexistent"], "--data-dir does not apply to --dataset digits"),
    (["--lr", "1e-2:1e-6"], "inverted"),
    (["--lr", "0:1e-2"], "argument --lr: bounds must be in"),
    (["--lr", "1e-3:"], "expected LO:HI"),
    (["--lr", "a:b"], "expected LO:HI"),
    (["--lr", "1:2:3"], "expected LO:HI"),
    (["--weight-decay", "0:1e-4"], "bounds > 0"),
    (["--weight-decay=-1e-8:1e-4"], "bounds must be in"),
    (["--weight-decay", "nan"], "bounds must be in"),
    (["--validation", "0"], "--validation: must be a number in (0, 1)"),
    (["--validation", "1"], "--validation: must be a number in (0, 1)"),
    (["--validation", "1.5"], "--validation: must be a number in (0, 1)"),
    (["--validation", "0.001", "--train-size", "50"], "holds out 0"),
    (["--train-size", "100000"], "--train-size 100000 is larger"),
    (["--max-parallel", "0"], "--max-parallel: must be an integer >= 1"),
    (["--sequential", "--max-parallel", "4"], "--sequential trains one trial at a time"),
    (["--devices", "64"], "--devices 64: JAX sees only"),
    (["--optimizer", "sgd", "--momentum", "0.9"], "--momentum does not apply"),
    (["--net", "two-layer", "--hidden", "5", "--hidden", "5"], "exactly one --hidden"),
    (["--batch-size", "1000", "--train-size", "500"], "--batch-size 1000 is larger"),
])
def test_bad_input_is_a_one_line_usage_error(flags, message, capsys):
    try:
        status = main(["sweep", *flags, *FAST])
    except SystemExit as parse_error:  # argparse's own exit for a flag that does not parse
        status = parse_error.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("fnnet sweep: error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_the_adaptive_plan_takes_the_prediction_that_is_faster_compile_included():
    from fnnet.sweep import VMAP_COMPILE_FACTOR, choose_plan

    small = choose_plan(0.05, 3.0, 31, platform="cpu", devices=2, size=8)
    assert small["mode"] == "sequential"
    assert small["predicted_sequential_s"] == pytest.approx(31 * 0.05)
    assert small["predicted_vmapped_s"] == pytest.approx(VMAP_COMPILE_FACTOR * 3.0
                                                         + 31 * 0.05 / 1.8)
    big = choose_plan(0.2, 3.0, 99, platform="cpu", devices=2, size=8)
    assert big["mode"] == "vmapped" and big["predicted_speedup"] == pytest.approx(1.8)
    assert choose_plan(0.2, 3.0, 99, platform="cpu", devices=1, size=4)["mode"] == "sequential"
    assert choose_plan(0.2, 1.0, 99, platform="gpu", devices=1, size=100)["mode"] == "vmapped"


def test_an_adaptive_sweep_trains_every_trial_as_the_others_do(one_chunk, model, split):
    adaptive = _sweep(model, split, max_parallel=2, adaptive=True)
    assert adaptive.plan["adaptive"] and adaptive.plan["mode"] in ("sequential", "vmapped")
    assert "predicted_vmapped_s" in adaptive.plan
    _assert_same_results(one_chunk, adaptive)
