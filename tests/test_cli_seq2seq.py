"""``fnnet seq2seq``: a real (tiny) run with its per-epoch accuracy, decoded examples,
answers to one's own questions, outputs, checkpoints and resume; one-line usage errors.

The runs share one shape and a persistent compilation cache in a temporary directory, so
the programs are compiled once for the module.
"""

from __future__ import annotations

import json

import pytest

from fnnet.cli import main

TINY = ["--size", "400", "--hidden-size", "8", "--wordvec-size", "4", "--batch-size", "36",
        "--net", "peeky", "--reverse", "--eval-train", "50", "--no-progress"]


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FNNET_COMPILE_CACHE", str(tmp_path_factory.mktemp("jax-cache")))
        yield


@pytest.mark.slow
def test_a_run_prints_accuracy_and_decoded_examples_and_writes_outputs(
        tmp_path, capsys, compile_cache):
    out, png = tmp_path / "run.json", tmp_path / "run.png"
    status = main(["seq2seq", *TINY, "--epochs", "2", "--examples", "2", "--ask", "1+2",
                   "--ask", "999+999", "--out", str(out), "--plot", str(png)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    lines = printed.splitlines()
    assert lines[0].startswith("fnnet seq2seq: addition reversed (360 train / 40 test, "
                               "vocabulary 13), peeky (D 4, H 8)")
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [
        ["epoch", "1/2"], ["epoch", "2/2"]]
    marks = [line.split()[0] for line in lines if line.startswith("  ")]
    assert len(marks) == 4 and set(marks) <= {"right", "wrong"}
    assert any(line.startswith("ask: 1+2 = ") for line in lines)
    assert lines[-1].startswith("time: ") and "compile" in lines[-1]
    record = json.loads(out.read_text())
    assert record["status"] == "complete" and record["history"]["epoch"] == [1, 2]
    assert record["data"]["vocabulary"] == " +0123456789_"
    assert len(record["examples"]) == 2 and len(record["examples"][0]) == 2
    example = record["examples"][1][0]
    assert example["right"] == (example["guess"] == example["answer"])
    assert set(record["summary"]["asked"]) == {"1+2", "999+999"}
    assert 0 <= record["summary"]["best_test_acc"] <= 1
    assert record["summary"]["time"]["programs"] >= 3
    assert png.stat().st_size > 0


@pytest.mark.slow
def test_checkpoints_resume_and_refuse_changed_settings(tmp_path, capsys, compile_cache):
    ckpt = ["--checkpoint-dir", str(tmp_path / "ckpt"), "--examples", "0"]
    assert main(["seq2seq", *TINY, "--epochs", "1", *ckpt]) == 0
    first = capsys.readouterr().out
    out = tmp_path / "resumed.json"
    assert main(["seq2seq", *TINY, "--epochs", "2", "--resume", "--out", str(out), *ckpt]) == 0
    assert json.loads(out.read_text())["history"]["epoch"] == [1, 2]  # the whole run
    assert "epoch 1/1" in first
    capsys.readouterr()
    assert main(["seq2seq", *TINY, "--epochs", "3", "--resume", "--lr", "0.01", *ckpt]) == 2
    err = capsys.readouterr().err
    assert "--resume:" in err and "--lr 0.001 → 0.01" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--ask", "12a+3"], "--ask: question '12a+3' has characters outside the vocabulary"),
    (["--ask", ""], "--ask: question '' is empty"),
    (["--ask", "1000+1000"], "--ask: question '1000+1000' has 9 characters; at most 7 fit"),
    (["--dataset", "date", "--ask", "12+3"],
     "--ask: question '12+3' has characters outside the vocabulary"),
    (["--size", "100", "--batch-size", "128"], "--size 100: its training set (90 problems"),
    (["--resume"], "--resume needs --checkpoint-dir"),
    (["--examples", "-1"], "--examples must be >= 0"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(["seq2seq", "--no-progress", "--no-compile-cache", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
