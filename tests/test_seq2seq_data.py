"""The generated seq2seq sets (fnnet.data.seq2seq): the book's formats and lengths, answers
that are right, seeded and reproducible draws, reversal, and one-line errors for bad input."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from fnnet.data import SEQ2SEQ_DATASETS, encode_questions, load_seq2seq
from fnnet.data.seq2seq import (
    DATE_FORMATS,
    VOCABULARIES,
    addition_pairs,
    date_pairs,
    write_date,
)


def test_addition_questions_answers_and_split():
    data = load_seq2seq("addition", size=2_000)
    assert data.x_train.shape == (1_800, 7) and data.x_test.shape == (200, 7)
    assert data.t_train.shape == (1_800, 4) and data.x_train.dtype == np.int32
    assert data.vocab.chars == " +0123456789_" and data.start_id == 12
    seen = set()
    for x, t in zip(np.concatenate([data.x_train, data.x_test]),
                    np.concatenate([data.t_train, data.t_test]), strict=True):
        question, answer = data.question(x), data.answer(t)
        a, b = (int(n) for n in question.strip().split("+"))
        assert 0 <= a <= 999 and 0 <= b <= 999
        assert answer == str(a + b).ljust(4)  # the answer after its "_", padded to 5 in all
        assert (min(a, b), max(a, b)) not in seen  # no problem twice, in either order
        seen.add((min(a, b), max(a, b)))
    lengths = np.array([len(q.strip()) for q in addition_pairs(2_000)[0]])
    assert (lengths <= 5).mean() > 0.3  # short operands are common, as in the book's file


def test_the_book_lengths_and_start_symbol_in_the_strings():
    questions, answers = addition_pairs(50)
    assert {len(q) for q in questions} == {7} and {len(a) for a in answers} == {5}
    assert all(a.startswith("_") for a in answers)
    questions, answers = date_pairs(50)
    assert {len(q) for q in questions} == {29} and {len(a) for a in answers} == {11}


@pytest.mark.parametrize("form, case, text", [
    ("MMMM d, y", "lower", "september 27, 1994"),
    ("M/d/yy", "title", "9/27/94"),
    ("EEEE, MMMM d, y", "upper", "TUESDAY, SEPTEMBER 27, 1994"),
    ("MMM d, y", "upper", "SEP 27, 1994"),
    ("d MMMM y", "title", "27 September 1994"),
    ("dd.MM.yy", "lower", "27.09.94"),
])
def test_date_forms(form, case, text):
    assert write_date(datetime.date(1994, 9, 27), form, case) == text


def test_dates_answer_their_question_in_iso():
    data = load_seq2seq("date", size=600)
    assert data.x_train.shape == (540, 29) and data.t_train.shape == (540, 10)
    assert len(data.vocab) == 60
    forms = set()
    for x, t in zip(data.x_train, data.t_train, strict=True):
        question, day = data.question(x).rstrip(), datetime.date.fromisoformat(data.answer(t))
        assert datetime.date(1970, 1, 1) <= day <= datetime.date(2029, 12, 31)
        matches = [(f, c) for f in DATE_FORMATS for c in ("lower", "title", "upper")
                   if write_date(day, f, c) == question]
        assert matches, question
        forms.add(matches[0][0])
    assert forms == set(DATE_FORMATS)


def test_seeded_reproducible_and_a_small_set_starts_a_large_one():
    a = load_seq2seq("date", size=300)
    b = load_seq2seq("date", size=300)
    c = load_seq2seq("date", size=300, seed=7)
    assert (a.x_train == b.x_train).all() and not (a.x_train == c.x_train).all()
    small, large = addition_pairs(100), addition_pairs(5_000)
    assert small[0] == large[0][:100] and small[1] == large[1][:100]


@pytest.mark.parametrize("name", SEQ2SEQ_DATASETS)
def test_reverse_reverses_each_padded_question(name):
    plain = load_seq2seq(name, size=100)
    flipped = load_seq2seq(name, size=100, reverse=True)
    assert (flipped.x_train == plain.x_train[:, ::-1]).all()
    assert (flipped.t_train == plain.t_train).all() and flipped.reverse
    assert flipped.question(flipped.x_test[0]) == plain.question(plain.x_test[0])
    assert (flipped.encode_questions([plain.question(plain.x_test[0])])[0]
            == flipped.x_test[0]).all()


def test_encode_questions_pads_and_reverses():
    vocab = VOCABULARIES["addition"]
    ids = encode_questions(["1+2", "999+999"], vocab, 7, reverse=True)
    assert ids.shape == (2, 7) and vocab.text(ids[0]) == "    2+1"
    assert vocab.text(ids[1]) == "999+999"


@pytest.mark.parametrize("question, message", [
    ("", r"question '' is empty"),
    ("   ", r"question '   ' is empty"),
    ("12*3", r"question '12\*3' has characters outside the vocabulary .*: '\*'"),
    ("1234+5678", r"question '1234\+5678' has 9 characters; at most 7 fit"),
])
def test_bad_questions_are_one_line_errors(question, message):
    with pytest.raises(ValueError, match=message) as error:
        encode_questions([question], VOCABULARIES["addition"], 7)
    assert "\n" not in str(error.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        load_seq2seq("poems")
    with pytest.raises(ValueError, match="test_size must be in"):
        load_seq2seq("addition", size=10, test_size=10)
    with pytest.raises(ValueError, match="at most 500500"):
        addition_pairs(600_000)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        VOCABULARIES["date"].ids("août")
