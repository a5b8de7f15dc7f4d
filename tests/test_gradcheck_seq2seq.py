"""``fnnet gradcheck --net seq2seq|peeky|attention``: the encoder-decoders check themselves on
their own sample batch (:func:`fnnet.nets.seq2seq.sample_batch`), per leaf."""

import json

from fnnet.cli import main
from fnnet.nets import SAMPLED_NETS


def test_the_encoder_decoders_are_gradcheck_nets_with_small_check_sizes():
    for name in ("seq2seq", "peeky", "attention"):
        assert dict(SAMPLED_NETS[name].options) == {"hidden_size": 5, "wordvec_size": 4}


def test_gradcheck_of_seq2seq_passes_per_leaf_on_reversed_addition_questions(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["gradcheck", "--net", "seq2seq", "--hidden", "2", "--wordvec", "3",
                 "--batch-size", "2", "--max-entries", "6", "--json", str(report_path)]) == 0
    stdout = capsys.readouterr().out
    assert "fnnet gradcheck: seq2seq (hidden_size 2, wordvec_size 3) on a batch of 2" in stdout
    report = json.loads(report_path.read_text())["report"]
    shapes = {leaf["path"]: tuple(leaf["shape"]) for leaf in report["leaves"]}
    # 13 characters (digits, +, space, _); the LSTMs' 4 gate blocks of H = 2.
    assert shapes == {"encoder/embed/W": (13, 3), "encoder/lstm/Wx": (3, 8),
                      "encoder/lstm/Wh": (2, 8), "encoder/lstm/b": (8,),
                      "decoder/embed/W": (13, 3), "decoder/lstm/Wx": (3, 8),
                      "decoder/lstm/Wh": (2, 8), "decoder/lstm/b": (8,),
                      "decoder/affine/W": (2, 13), "decoder/affine/b": (13,)}
    assert report["ok"]
    assert all(leaf["autodiff"]["max_rel"] < 1e-10 and leaf["numerical"]["max_rel"] < 1e-6
               for leaf in report["leaves"])
    assert main(["gradcheck", "--net", "peeky", "--time-size", "3"]) == 2
    assert "--time-size does not apply to --net peeky" in capsys.readouterr().err
