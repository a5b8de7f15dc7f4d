"""The ``fnnet`` command: a real training run, its outputs, and one-line usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from fnnet.cli import main

FAST = ["--no-progress", "--no-compile-cache"]


def test_train_prints_epochs_and_summary_and_writes_json_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "run.json", tmp_path / "curves.png"
    status = main(["train", "--dataset", "digits", "--init", "he", "--epochs", "3",
                   "--out", str(out), "--plot", str(plot), *FAST])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "digits (1437 train / 360 test), two-layer 64-50-10 relu, grads=manual" in stdout
    assert stdout.count("epoch ") == 3 and "test acc" in stdout and "steps/s" in stdout
    assert "done: 42 steps" in stdout
    result = json.loads(out.read_text())
    assert result["settings"]["dataset"] == "digits" and result["settings"]["hidden"] == [50]
    assert result["summary"]["steps"] == 42
    assert len(result["history"]["test_acc"]) == 3
    assert result["summary"]["test_acc"] == result["history"]["test_acc"][-1] > 0.5
    assert result["environment"]["platform"] == "cpu"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("optimizer", "flags", "lr"), [
    ("adam", ["--beta1", "0.8"], 0.001), ("optax-momentum", [], 0.01), ("rmsprop", [], 0.01),
])
def test_book_optimizers_and_weight_decay_train_and_are_recorded(optimizer, flags, lr, tmp_path,
                                                                 capsys):
    out = tmp_path / "run.json"
    status = main(["train", "--optimizer", optimizer, *flags, "--weight-decay", "0.01",
                   "--init", "he", "--epochs", "2", "--out", str(out), *FAST])
    assert status == 0
    assert f"optimizer={optimizer} lr={lr}" in capsys.readouterr().out
    settings = json.loads(out.read_text())["settings"]
    assert settings["lr"] == lr and settings["weight_decay"] == 0.01
    assert settings["beta1"] == (0.8 if flags else None)


def test_mlp_with_autodiff_and_optax_and_steps(capsys):
    status = main(["train", "--net", "mlp", "--hidden", "20", "--hidden", "10", "--grads",
                   "autodiff", "--optimizer", "optax-sgd", "--steps", "20", "--sampling",
                   "replacement", "--log-every", "100", *FAST])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "mlp 64-20-10-10 relu, grads=autodiff, optimizer=optax-sgd" in stdout
    assert stdout.count("epoch ") == 1  # only the last epoch with --log-every 100
    assert "done: 20 steps" in stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["--lr", "-0.1"],
     "argument --lr: must be a number > 0 and <= 3.4e+38 (the float32 range), got -0.1"),
    (["--lr", "1e39"], "argument --lr: must be a number > 0 and <= 3.4e+38"),
    (["--batch-size", "5000"], "--batch-size 5000 is larger than the digits training set"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["--hidden", "10", "--hidden", "5"], "--net two-layer takes exactly one --hidden"),
    (["--epochs", "1", "--steps", "5"], "argument --steps: not allowed with argument --epochs"),
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["--optimizer", "momentum", "--beta1", "0.5"],
     "--beta1 does not apply to --optimizer momentum (it takes --momentum)"),
    (["--momentum", "0.5"], "--momentum does not apply to --optimizer sgd (it takes only --lr)"),
    (["--optimizer", "adam", "--beta2", "1"], "argument --beta2: must be a number in [0, 1)"),
    (["--weight-decay", "-1"], "argument --weight-decay: must be a number >= 0"),
])
def test_bad_flags_exit_2_with_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        status = main(["train", *argv, *FAST])
        raise SystemExit(status)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_mnist_offline_names_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FNNET_DATA", raising=False)
    status = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nothing"),
                   "--no-download", *FAST])
    assert status == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing") in err and str(tmp_path / "cache") in err


def test_python_dash_m_and_the_compile_cache(tmp_path):
    env = {**os.environ, "FNNET_COMPILE_CACHE": str(tmp_path / "jax-cache"), "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "fnnet", "train", "--epochs", "1", "--no-progress"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "done: 14 steps" in first.stdout
    assert any(Path(tmp_path / "jax-cache").iterdir())  # compiled executables were cached
    help_text = subprocess.run([sys.executable, "-m", "fnnet", "train", "--help"], env=env,
                               capture_output=True, text=True, timeout=60).stdout
    for flag in ("--dataset", "--grads", "--optimizer", "--steps", "--device", "--plot"):
        assert flag in help_text


def test_gradcheck_passes_for_the_two_layer_net_and_writes_json(tmp_path, capsys):
    status = main(["gradcheck", "--net", "two-layer", "--dtype", "float64",
                   "--json", str(tmp_path / "g.json")])
    assert status == 0
    out = capsys.readouterr().out
    for leaf in ("affine1/W", "affine1/b", "affine2/W", "affine2/b"):
        assert leaf in out
    report = json.loads((tmp_path / "g.json").read_text())["report"]
    assert report["ok"] is True
    assert not jax.config.jax_enable_x64  # switched on for the check only


def test_train_checkpoints_resume_and_refuse_changed_settings(tmp_path, capsys):
    ckpt = ["--checkpoint-dir", str(tmp_path), *FAST]
    assert main(["train", "--epochs", "2", *ckpt]) == 0
    assert main(["train", "--epochs", "3", "--resume", *ckpt]) == 0
    out = capsys.readouterr().out
    assert "epoch 3/3  step     42" in out and "epoch 1/3" not in out.split("done")[1]
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(["train", "--epochs", "4", "--resume", "--lr", "0.5", *ckpt]))
    assert info.value.code == 2
    assert "--lr 0.1 → 0.5" in capsys.readouterr().err


def test_a_diverging_run_exits_3_naming_the_step(capsys):
    assert main(["train", "--lr", "1e30", "--epochs", "2", *FAST]) == 3
    assert "non-finite loss" in capsys.readouterr().err


def test_bf16_and_multi_host_flag_checks(capsys):
    assert main(["train", "--precision", "bf16", "--epochs", "1", *FAST]) == 0
    assert "(bf16)" in capsys.readouterr().out
    assert main(["train", "--coordinator", "127.0.0.1:1234", *FAST]) == 2
    assert "needs all of --coordinator, --num-processes, --process-id" in capsys.readouterr().err


def test_unwritable_outputs_fail_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--out", str(blocker / "r.json"), *FAST]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["train", "--checkpoint-dir", str(blocker), *FAST]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_corrupt_checkpoints_exit_1(tmp_path, capsys):
    (tmp_path / "step_00000014.npz").write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="skipping corrupt checkpoint"):
        status = main(["train", "--resume", "--checkpoint-dir", str(tmp_path), *FAST])
    assert status == 1
    assert "no valid checkpoint" in capsys.readouterr().err


def test_gradcheck_no_download_names_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FNNET_DATA", raising=False)
    status = main(["gradcheck", "--dataset", "mnist", "--no-download",
                   "--data-dir", str(tmp_path / "none")])
    assert status == 1
    assert str(tmp_path / "none") in capsys.readouterr().err
