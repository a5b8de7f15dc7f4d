"""``fnnet lm`` end to end on a small corpus in PTB's format, and ``fnnet gradcheck`` of the
language models (nets that bring their own batch): outputs, resume checks, one-line errors
that leave nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fnnet.cli import main
from fnnet.data import ptb as ptb_module

pytestmark = pytest.mark.usefixtures("highest_precision")


@pytest.fixture
def small_ptb(tmp_path, monkeypatch):
    """ptb.valid.txt (200 tokens) and ptb.test.txt (120) of 12 words, <eos> included."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    counts = {"valid": 200, "test": 120}
    (tmp_path / "ptb").mkdir()
    for split, tokens in counts.items():
        lines = [" ".join(rng.choice(words, 9)) for _ in range(tokens // 10)]
        (tmp_path / "ptb" / f"ptb.{split}.txt").write_text(" \n".join(lines) + " \n")
    monkeypatch.setattr(ptb_module, "PTB_TOKENS", {"train": 0, **counts})
    monkeypatch.setattr(ptb_module, "PTB_SHA256", {})
    return tmp_path


def lm(small_ptb, *flags: str) -> list[str]:
    return ["lm", "--train-split", "valid", "--data-dir", str(small_ptb), "--wordvec", "4",
            "--hidden", "3", "--batch-size", "2", "--time-size", "5", "--eval-batch-size", "2",
            "--eval-time-size", "5", "--no-progress", "--no-compile-cache", *flags]


def test_lm_trains_reports_perplexity_and_writes_its_outputs(small_ptb, capsys):
    out, ckpt = small_ptb / "run.json", small_ptb / "ckpt"
    code = main(lm(small_ptb, "--epochs", "2", "--lr", "1", "--lr-decay", "4", "--out",
                   str(out), "--plot", str(small_ptb / "run.png"), "--checkpoint-dir",
                   str(ckpt)))
    stdout = capsys.readouterr().out
    assert code == 0
    assert "rnnlm D=4 H=3, grads=manual, sgd lr 1, clip 0.25, lr ÷ 4" in stdout
    assert "streams continue, 2 epochs × 19 steps" in stdout  # 199 // (2·5)
    assert "epoch 2/2  step     38  lr " in stdout and "test ppl " in stdout
    assert "time: " in stdout and "compile " in stdout
    result = json.loads(out.read_text())
    assert result["status"] == "complete" and result["data"]["vocabulary"] == 13
    history = result["history"]
    assert history["epoch"] == [1, 2] and history["held_out"] == "test"
    assert len(history["held_out_ppl"]) == 2 and 1 < history["held_out_ppl"][0] < 13 * 2
    assert result["summary"]["best_ppl"] == min(history["held_out_ppl"])
    assert result["settings"]["max_grad"] == 0.25 and result["settings"]["streams"] == "continue"
    assert (small_ptb / "run.png").stat().st_size > 0
    # Resuming: other settings are refused; the same ones find the run complete.
    assert main(lm(small_ptb, "--epochs", "2", "--lr", "2", "--checkpoint-dir", str(ckpt),
                   "--resume")) == 2
    assert "--lr 1.0 → 2.0" in capsys.readouterr().err
    assert main(lm(small_ptb, "--epochs", "2", "--lr", "1", "--lr-decay", "4",
                   "--checkpoint-dir", str(ckpt), "--resume")) == 0
    assert "already covers all 2 epochs" in capsys.readouterr().out


def test_bad_input_is_one_line_and_writes_nothing(small_ptb, capsys):
    out = small_ptb / "never.json"
    assert main(lm(small_ptb, "--time-size", "200", "--out", str(out))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fnnet lm: error: --batch-size/--time-size: batch_size × time_size "
                          "= 2 × 200 = 400 words per step is more than the corpus's 199")
    assert len(err.splitlines()) == 1 and not out.exists()
    assert main(lm(small_ptb, "--net", "rnnlm", "--dropout", "0.5")) == 2
    assert "--dropout applies to --net better-rnnlm only" in capsys.readouterr().err
    assert main(lm(small_ptb, "--net", "better-rnnlm", "--epochs", "1")) == 2  # D=4 ≠ H=3
    assert "weight tying needs wordvec_size = hidden_size" in capsys.readouterr().err
    (small_ptb / "ptb" / "ptb.test.txt").unlink()
    assert main(lm(small_ptb, "--out", str(out))) == 1
    assert capsys.readouterr().err.startswith("fnnet lm: error: ptb: ptb.test.txt not found")
    assert not out.exists()


def test_gradcheck_of_the_language_models_passes_per_leaf(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["gradcheck", "--net", "rnnlm", "--vocab-size", "15", "--time-size", "3",
                 "--json", str(report_path)]) == 0
    stdout = capsys.readouterr().out
    assert "fnnet gradcheck: rnnlm (vocabulary_size 15, wordvec_size 4, hidden_size 3" in stdout
    report = json.loads(report_path.read_text())["report"]
    assert report["ok"] and {leaf["path"] for leaf in report["leaves"]} == {
        "embedding/W", "lstm/Wx", "lstm/Wh", "lstm/b", "affine/W", "affine/b"}
    assert all(leaf["numerical"]["max_rel"] < 1e-6 for leaf in report["leaves"])
    assert main(["gradcheck", "--net", "rnnlm", "--activation", "tanh"]) == 2
    assert "--activation does not apply to --net rnnlm" in capsys.readouterr().err
