"""``fnnet.cli.common.run_fit``: the outcomes ``fnnet train``, ``lm`` and ``seq2seq`` report
alike — diverged, interrupted, already complete, trained."""

from types import SimpleNamespace

import pytest

from fnnet.cli import common
from fnnet.train import NonFiniteLossError

RECORDS = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]


def _run(fit_call, tmp_path, clock=None):
    written = []
    outcome = common.run_fit(
        "lm", fit_call, records=RECORDS, checkpoint_dir=tmp_path, covers="4 epochs",
        write_outputs=lambda *args, **kwargs: written.append((args, kwargs)), clock=clock)
    return outcome, written


def _raise(error):
    def fit_call():
        raise error
    return fit_call


def test_a_non_finite_loss_writes_the_finished_epochs_and_exits_3(tmp_path, capsys):
    error = NonFiniteLossError("loss is nan at step 7", step=7, checkpoint=None)
    outcome, written = _run(_raise(error), tmp_path)
    assert outcome == common.EXIT_NON_FINITE == 3
    assert capsys.readouterr().err == "fnnet lm: error: loss is nan at step 7\n"
    assert written == [(("diverged", None, {"epoch": [1, 2], "loss": [2.0, 1.5]},
                         "loss is nan at step 7"), {})]


def test_the_errors_own_history_wins_over_the_records(tmp_path):
    error = NonFiniteLossError("nan", step=1, checkpoint=None)
    error.history = SimpleNamespace(to_dict=lambda: {"epoch": [1, 2, 3]})  # a resumed run's
    _, [(args, _)] = _run(_raise(error), tmp_path)
    assert args[2] == {"epoch": [1, 2, 3]}


def test_an_interrupt_names_the_checkpoint_and_exits_130(tmp_path, capsys):
    outcome, [(args, _)] = _run(_raise(KeyboardInterrupt()), tmp_path)
    assert outcome == common.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == f"fnnet lm: interrupted; checkpoint in {tmp_path}\n"
    assert args == ("interrupted", None, {"epoch": [1, 2], "loss": [2.0, 1.5]})


@pytest.mark.parametrize("trained_epochs", [0, 2])
def test_a_run_with_nothing_left_is_complete_and_one_that_trained_returns_its_result(
        trained_epochs, tmp_path, capsys):
    history = SimpleNamespace(trained_epochs=trained_epochs, to_dict=lambda: {"epoch": [1]},
                              trained_s=1.5, eval_s=0.25)
    parts = []
    clock = SimpleNamespace(add=lambda part, seconds: parts.append((part, seconds)))
    outcome, written = _run(lambda: ("params", history), tmp_path, clock)
    if trained_epochs:
        assert outcome == ("params", history) and written == []
        assert parts == [("training", 1.5), ("evaluation", 0.25)]
    else:
        assert outcome == 0
        assert capsys.readouterr().out == (f"done: the checkpoint in {tmp_path} already "
                                           f"covers all 4 epochs\n")
        assert written == [(("already-complete", None, {"epoch": [1]}), {})] and parts == []
