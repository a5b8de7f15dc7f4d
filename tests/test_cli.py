"""The ``fnnet`` command: a real training run, its outputs, and one-line usage errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from fnnet.cli import main
from fnnet.data import DIGITS_SOURCE

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
    assert result["environment"]["platform"] == jax.devices()[0].platform
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("optimizer", "flags", "lr"), [
    ("adam", ["--beta1", "0.8"], 0.001), ("optax-momentum", [], 0.01), ("rmsprop", [], 0.01),
    ("nesterov", ["--nesterov-form", "dlfs2"], 0.01),
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
    assert settings["matmul_precision"] == "default"
    assert settings["beta1"] == (0.8 if optimizer == "adam" else None)
    assert settings["nesterov_form"] == ("dlfs2" if optimizer == "nesterov" else None)


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
    (["--lr", "-0.1"], "argument --lr: must be a number > 0, got -0.1"),
    (["--lr", "1e39"], "argument --lr: must be at most 3.4e+38 (float32's largest number)"),
    (["--batch-size", "5000"], "--batch-size 5000 is larger than the digits training set"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["--hidden", "10", "--hidden", "5"], "--net two-layer takes exactly one --hidden"),
    (["--epochs", "1", "--steps", "5"], "argument --steps: not allowed with argument --epochs"),
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
    (["--optimizer", "momentum", "--beta1", "0.5"],
     "--beta1 does not apply to --optimizer momentum (it takes --momentum)"),
    (["--momentum", "0.5"], "--momentum does not apply to --optimizer sgd (it takes only --lr)"),
    (["--nesterov-form", "dlfs2"],
     "--nesterov-form does not apply to --optimizer sgd (it takes only --lr)"),
    (["--optimizer", "nesterov", "--nesterov-form", "dlfs3"],
     "argument --nesterov-form: invalid choice: 'dlfs3'"),
    (["--optimizer", "adam", "--beta2", "1"], "argument --beta2: must be a number in [0, 1)"),
    (["--weight-decay", "-1"], "argument --weight-decay: must be a number >= 0"),
    (["--net", "simple-conv", "--hidden", "10"],
     "--hidden does not apply to --net simple-conv"),
    (["--net", "simple-conv", "--dropout", "0.5"],
     "--dropout does not apply to --net simple-conv"),
    (["--net", "deep-conv", "--batchnorm"], "--batchnorm does not apply to --net deep-conv"),
    (["--dropout", "1"], "argument --dropout: must be a number in [0, 1)"),
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
    status = main(["train", "--dataset", "mnist", "--no-download", *FAST])
    assert status == 1
    assert str(tmp_path / "cache") in capsys.readouterr().err
    status = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nothing"), *FAST])
    assert status == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing") in err and "only place looked in" in err


def test_python_dash_m_and_the_compile_cache(tmp_path, capsys):
    env = {**os.environ, "FNNET_COMPILE_CACHE": str(tmp_path / "jax-cache"), "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "run.json"
    command = [sys.executable, "-m", "fnnet", "train", "--epochs", "1", "--no-progress",
               "--out", str(out)]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "done: 14 steps" in first.stdout
    assert any(Path(tmp_path / "jax-cache").iterdir())  # compiled executables were cached
    # four programs: the init (parameters from the keys split on the host), fit's start
    # (optimiser and model state), the epoch (batch order, steps) and the evaluation (train
    # and test sets together)
    time = json.loads(out.read_text())["summary"]["time"]
    assert (time["programs"], time["cache_hits"]) == (4, 0)
    assert 0 < time["compile_in_s"]["init"] < time["compile_s"]  # the init's program's share
    assert "compile" in first.stdout.splitlines()[-1] and "(4 programs)" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    time = json.loads(out.read_text())["summary"]["time"]
    assert (time["programs"], time["cache_hits"]) == (4, 4)  # all four from the cache
    assert time["wall_s"] >= time["startup_s"] + time["training_s"] + time["compile_s"]
    with pytest.raises(SystemExit):  # the help needs no fresh process: main prints it here
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--dataset", "--grads", "--optimizer", "--steps", "--device", "--plot"):
        assert flag in help_text


def test_gradcheck_passes_for_the_two_layer_net_and_writes_json(tmp_path, capsys):
    status = main(["gradcheck", "--net", "two-layer", "--dtype", "float64",
                   "--json", str(tmp_path / "g.json")])
    assert status == 0
    out = capsys.readouterr().out
    for leaf in ("affine1/W", "affine1/b", "affine2/W", "affine2/b"):
        assert leaf in out
    written = json.loads((tmp_path / "g.json").read_text())
    report = written["report"]
    assert report["ok"] is True and written["time"]["programs"] >= 1
    assert written["time"]["wall_s"] >= written["time"]["compile_s"] > 0
    assert not jax.config.jax_enable_x64  # switched on for the check only


def test_gradcheck_defaults_pass_a_deep_relu_net_reporting_kinks(capsys):
    """The book's std 0.01 init in a 3x100 ReLU net: central differences cross kinks; those
    entries are reported as not comparable, not as failures."""
    assert main(["gradcheck", "--net", "mlp", "--hidden", "100", "--hidden", "100",
                 "--hidden", "100", "--init", "normal"]) == 0
    out = capsys.readouterr().out
    assert "\nOK" in out and "not comparable" in out
    assert out.rstrip().splitlines()[-1].startswith("time: ")  # where a cold start's time goes
    assert "check " in out.splitlines()[-1] and " programs" in out.splitlines()[-1]


def test_train_checkpoints_resume_and_refuse_changed_settings(tmp_path, capsys):
    ckpt = ["--checkpoint-dir", str(tmp_path / "ckpt"), *FAST]
    assert main(["train", "--epochs", "2", *ckpt]) == 0
    out = tmp_path / "run.json"
    assert main(["train", "--epochs", "3", "--resume", "--out", str(out), *ckpt]) == 0
    stdout = capsys.readouterr().out
    assert "epoch 3/3  step     42" in stdout and "epoch 1/3" not in stdout.split("done")[1]
    result = json.loads(out.read_text())  # the whole run's history, not only epoch 3
    assert result["history"]["epoch"] == [1, 2, 3] and result["history"]["resumed_epochs"] == 2
    assert result["summary"]["steps_per_s"] > 0 and result["summary"]["epochs"] == 3
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
    status = main(["train", "--resume", "--checkpoint-dir", str(tmp_path), *FAST])
    assert status == 1
    err = capsys.readouterr().err
    assert "fnnet train: warning: skipping corrupt checkpoint" in err
    assert "no valid checkpoint" in err


def test_gradcheck_no_download_names_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FNNET_DATA", raising=False)
    status = main(["gradcheck", "--dataset", "mnist", "--no-download",
                   "--data-dir", str(tmp_path / "none")])
    assert status == 1
    assert str(tmp_path / "none") in capsys.readouterr().err


# --- hostile use (issue 13) ----------------------------------------------------------------


def _exit_status(argv) -> int:
    """``main``'s status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def test_a_checkpoint_dir_in_use_by_another_run_is_refused_naming_it(tmp_path, capsys):
    script = ("import sys; from fnnet.checkpoint import lock_directory\n"
              "with lock_directory(sys.argv[1]):\n"
              "    print('locked', flush=True); sys.stdin.readline()")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=ENV,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", "--epochs", "1", "--checkpoint-dir", str(tmp_path), *FAST]) == 1
        err = _one_error_line(capsys)
        assert f"in use by pid {holder.pid}" in err and str(tmp_path) in err
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert main(["train", "--epochs", "1", "--checkpoint-dir", str(tmp_path), *FAST]) == 0
    assert [p.name for p in tmp_path.glob("step_*.npz")] == ["step_00000014.npz"]


def test_out_is_replaced_atomically_and_a_full_disk_names_the_file(tmp_path, monkeypatch,
                                                                   capsys):
    from fnnet import atomic

    out = tmp_path / "run.json"
    out.write_text('{"previous": "valid"}')

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    assert main(["train", "--epochs", "1", "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err
    assert json.loads(out.read_text()) == {"previous": "valid"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--seed", "99999999999999999999999"],
     "argument --seed: must be an integer in [0, 4294967295], got 99999999999999999999999"),
    (["gradcheck", "--seed", "99999999999999999999999"], "argument --seed: must be an integer"),
    (["gradcheck", "--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]"),
    (["train", "--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]"),
    (["train", "--lr", "1e-50"], "argument --lr: must be at least 1.18e-38 (float32's smallest"),
    (["train", "--coordinator", "notahost", "--num-processes", "1", "--process-id", "0"],
     "--coordinator notahost: expected HOST:PORT with a port in 1..65535"),
    (["train", "--coordinator", "host:0", "--num-processes", "1", "--process-id", "0"],
     "--coordinator host:0: expected HOST:PORT"),
    (["train", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2: must be in [0, 2)"),
    (["train", "--hidden", "100000000"], "the model 64-100000000-10 needs about"),
    (["gradcheck", "--hidden", "100000000"], "the model 64-100000000-10 needs about"),
])
def test_flag_values_that_used_to_crash_are_one_line_usage_errors(argv, message, capsys):
    assert _exit_status([*argv, *(FAST if argv[0] == "train" else [])]) == 2
    assert message in _one_error_line(capsys)


def test_the_coordinator_timeout_is_passed_on_and_a_failure_is_one_line(monkeypatch, capsys):
    calls = []

    def initialize(coordinator_address=None, num_processes=None, process_id=None,
                   initialization_timeout=300):  # the parameters of jax 0.10's initialize
        calls.append(dict(initialization_timeout=initialization_timeout))
        raise RuntimeError("DEADLINE_EXCEEDED: Barrier timed out\nlong C++ details")

    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    status = main(["train", "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                   "--process-id", "0", "--distributed-timeout", "7", *FAST])
    assert status == 1
    assert calls[0]["initialization_timeout"] == 7
    captured = capsys.readouterr()
    assert "waiting up to 7 s for the coordinator 127.0.0.1:1" in captured.out
    assert len(captured.err.strip().splitlines()) == 1
    assert "could not join 127.0.0.1:1 as process 0 of 2 within 7 s" in captured.err
    assert "DEADLINE_EXCEEDED" in captured.err


def test_an_unreachable_coordinator_is_one_line_after_the_timeout(capsys):
    """Process 1 polls the coordinator's port (jax would abort with a C++ stack instead)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed once the with ends: nothing listens there
    status = main(["train", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                   "--process-id", "1", "--distributed-timeout", "1", *FAST])
    assert status == 1
    err = _one_error_line(capsys)
    assert f"could not reach the coordinator 127.0.0.1:{port} within 1 s" in err


def test_ctrl_c_before_training_exits_130_with_one_line(monkeypatch, capsys):
    import fnnet.data

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fnnet.data, "load_dataset", interrupted)
    assert main(["train", *FAST]) == 130
    assert "fnnet train: interrupted" in _one_error_line(capsys)


def test_runs_print_and_record_the_files_they_read(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["train", "--epochs", "1", "--out", str(out), *FAST]) == 0
    assert "data: scikit-learn bundled digits" in capsys.readouterr().out
    assert json.loads(out.read_text())["data"]["files"] == [DIGITS_SOURCE]


def test_compile_cache_location_and_an_unwritable_one_turned_off(tmp_path, monkeypatch,
                                                                  capsys):
    from fnnet.cli.common import enable_compile_cache

    updates = {}
    monkeypatch.setattr(jax.config, "update", lambda name, value: updates.update({name: value}))
    monkeypatch.delenv("FNNET_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.chdir(tmp_path)
    assert enable_compile_cache() == tmp_path / "home" / ".cache" / "fnnet" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # XDG: relative paths are ignored
    assert enable_compile_cache() == tmp_path / "home" / ".cache" / "fnnet" / "jax"
    assert not (tmp_path / "fnnet").exists() and not (tmp_path / "relative").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FNNET_COMPILE_CACHE", str(blocker / "jax"))
    updates.clear()
    assert enable_compile_cache() is None
    assert updates == {}
    err = _one_error_line(capsys)
    assert "compile cache off" in err and str(blocker / "jax") in err


def test_corrupt_checkpoint_notices_are_one_line_and_a_finished_run_writes_out(tmp_path,
                                                                                capsys):
    ckpt = ["--checkpoint-dir", str(tmp_path / "c"), *FAST]
    assert main(["train", "--epochs", "2", *ckpt]) == 0
    newest = tmp_path / "c" / "step_00000028.npz"
    newest.write_bytes(newest.read_bytes()[:100])
    capsys.readouterr()
    out = tmp_path / "run.json"
    assert main(["train", "--epochs", "1", "--resume", "--out", str(out), *ckpt]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("fnnet train: warning: skipping corrupt checkpoint")
    assert "UserWarning" not in captured.err and len(captured.err.splitlines()) == 1
    assert "already covers" in captured.out
    result = json.loads(out.read_text())
    assert result["status"] == "already-complete" and result["summary"] is None


def test_a_diverged_run_still_writes_out_with_its_status(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["train", "--lr", "1e30", "--epochs", "2", "--out", str(out), *FAST]) == 3
    result = json.loads(out.read_text())
    assert result["status"] == "diverged" and "non-finite loss" in result["error"]
    assert result["settings"]["lr"] == 1e30


def test_a_closed_stdout_exits_quietly():
    """``fnnet train … | head -1``: no traceback, no 'Broken pipe' message."""
    command = [sys.executable, "-m", "fnnet", "train", "--epochs", "3", *FAST]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().startswith("fnnet train:")
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=120)
    assert stderr == "" and process.returncode == 141


def test_the_program_exits_with_mains_status_after_flushing_and_the_atexit_handlers():
    """console() skips the interpreter's teardown, not what a program relies on at exit."""
    script = ("import atexit, sys; atexit.register(lambda: print('atexit ran'));"
              "print('buffered', end=' '); sys.argv = ['fnnet'];"
              "from fnnet.cli import console; console()")
    process = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                             text=True, timeout=60)
    assert process.returncode == 2  # bare fnnet: the usage, exit 2
    assert process.stdout == "buffered atexit ran\n"
    assert "COMMAND" in process.stderr


def test_help_shows_defaults_and_bare_fnnet_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for default in ("--batch-size BATCH_SIZE examples per training step (default: 100)",
                    "(default: two-layer)",
                    "(default: relu)"):
        assert default in help_text
    assert _exit_status([]) == 2
    err = capsys.readouterr().err
    assert "usage: fnnet" in err and "train" in err and "gradcheck" in err
    assert "the following arguments are required" not in err


def test_conv_and_batchnorm_dropout_nets_train_from_the_command_line(tmp_path, capsys):
    status = main(["train", "--net", "simple-conv", "--optimizer", "adam", "--steps", "30",
                   "--batch-size", "50", *FAST])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "simple-conv 1x8x8 -> 10, grads=manual, optimizer=adam lr=0.001" in stdout
    out = tmp_path / "run.json"
    status = main(["train", "--net", "mlp", "--hidden", "20", "--batchnorm", "--dropout", "0.2",
                   "--init", "he", "--epochs", "2", "--out", str(out), *FAST])
    assert status == 0
    assert "mlp 64-20-10 relu batchnorm dropout 0.2" in capsys.readouterr().out
    settings = json.loads(out.read_text())["settings"]
    assert settings["batchnorm"] is True and settings["dropout"] == 0.2


def test_gradcheck_of_the_simple_conv_net_passes(tmp_path, capsys):
    """Also the chapter 7 net's check of tests/test_gradcheck.py (one run checks both: the
    command and ``gradcheck_model``'s per-leaf report of the conv net)."""
    report_path = tmp_path / "g.json"
    assert main(["gradcheck", "--net", "simple-conv", "--max-entries", "8",
                 "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "simple-conv (init normal) on 3 digits samples, float64" in out
    report = json.loads(report_path.read_text())["report"]
    assert report["ok"] is True and not report["failures"], out
    assert {leaf["path"].split("/")[0] for leaf in report["leaves"]} >= {"conv1", "affine2"}
    assert all(leaf["status"] == "ok" for leaf in report["leaves"]
               if leaf["path"].startswith("conv1")), out


def test_the_command_imports_jax_inside_main_so_ctrl_c_there_is_one_line(monkeypatch, capsys):
    code = "import sys, fnnet.cli; print('jax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=ENV, check=True, timeout=120)
    assert result.stdout.strip() == "False"  # fnnet/__init__ is lazy

    def interrupted_import():
        raise KeyboardInterrupt  # as if Ctrl-C arrived while JAX was being imported

    monkeypatch.setattr("fnnet.cli.build_parser", interrupted_import)
    assert main(["train"]) == 130
    assert capsys.readouterr().err == "fnnet: interrupted\n"


# --- page by page with the book (issue 18): help text and error wording --------------------


def _subcommand_parsers():
    from fnnet.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return parser, commands.choices


def test_every_flag_of_every_command_has_help_text_and_the_commands_say_what_they_train():
    parser, commands = _subcommand_parsers()
    undocumented = [f"{name} {action.option_strings[0]}" for name, sub in commands.items()
                    for action in sub._actions
                    if action.option_strings and action.help in (None, "")
                    and action.option_strings[0] != "--help"]
    assert undocumented == []
    overview = " ".join(parser.format_help().split())
    train_help = " ".join(commands["train"].format_help().split())
    for text in (overview, train_help):
        assert "two-layer net or MLP" not in text and "SimpleConvNet" in text
    assert "mlp he" in train_help and "two-layer normal" in train_help


def test_split_seed_sits_in_the_held_out_validation_group():
    _, commands = _subcommand_parsers()
    [group] = [g for g in commands["train"]._action_groups if g.title.startswith("held-out")]
    assert "--split-seed" in {o for a in group._group_actions for o in a.option_strings}


@pytest.mark.parametrize(("argv", "message"), [
    (["--devices", "3"], f"--devices 3: JAX sees {jax.device_count()} device"),
    (["--dataset", "digits", "--data-dir", "/nonexistent"],
     "--data-dir does not apply to --dataset digits"),
    (["--no-download"], "--no-download does not apply to --dataset digits"),
    (["--train-size", "100", "--validation", "0.99"],
     "--batch-size 100 is larger than the 1 training example left after --validation 0.99 "
     "holds out 99 of 100"),
    (["--lr", "0"], "argument --lr: must be a number > 0, got 0"),
    (["--lr", "1e-50"], "argument --lr: must be at least 1.18e-38"),
    (["--lr", "1e39"], "argument --lr: must be at most 3.4e+38"),
    (["--net", "simple-conv", "--grads", "numerical"],
     "--grads numerical trains --net two-layer and mlp without batch norm"),
    (["--net", "mlp", "--batchnorm", "--grads", "numerical"], "not mlp --batchnorm"),
])
def test_errors_name_the_flag_and_say_what_is_wrong(argv, message, monkeypatch, capsys):
    assert _exit_status(["train", *argv, *FAST]) == 2
    assert message in _one_error_line(capsys)


def test_a_used_checkpoint_dir_is_refused_naming_both_flags_before_the_data_loads(
        tmp_path, monkeypatch, capsys):
    import fnnet.data

    (tmp_path / "step_00000014.npz").write_bytes(b"")
    monkeypatch.setattr(fnnet.data, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    assert _exit_status(["train", "--checkpoint-dir", str(tmp_path), *FAST]) == 2
    err = _one_error_line(capsys)
    assert f"--checkpoint-dir {tmp_path} already holds checkpoints" in err and "--resume" in err


def test_gradcheck_refuses_data_flags_that_do_not_apply(capsys):
    assert _exit_status(["gradcheck", "--data-dir", "/nonexistent"]) == 2
    assert "--data-dir does not apply to --dataset digits" in _one_error_line(capsys)


def test_sweep_range_errors_name_the_flag_once(capsys):
    assert _exit_status(["sweep", "--lr", "1e-2:1e-6", *FAST]) == 2
    err = _one_error_line(capsys)
    assert "argument --lr: the range 0.01:1e-06 is inverted" in err and "--lr: --lr" not in err


def test_offline_mnist_advice_speaks_to_a_command_line_user(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FNNET_DATA", raising=False)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert main(["train", "--dataset", "mnist", *FAST]) == 1
    err = capsys.readouterr().err
    assert "network is unreachable" in err and "download=True" not in err
    assert main(["train", "--dataset", "mnist", "--no-download", *FAST]) == 1
    assert "--no-download" in capsys.readouterr().err


def test_the_plot_title_names_the_net_its_activation_the_optimizer_and_lr():
    from fnnet.cli import build_parser
    from fnnet.cli.flags import net_options, optimizer_from_args
    from fnnet.cli.train import plot_title
    from fnnet.data import load_digits

    args = build_parser().parse_args(["train", "--net", "mlp", "--hidden", "20",
                                      "--activation", "tanh", "--optimizer", "adam"])
    net_options(args), optimizer_from_args(args)
    assert plot_title(args, load_digits()) == (
        "digits, mlp 64-20-10 tanh (init he), grads=manual, adam lr 0.001, batch 100")
