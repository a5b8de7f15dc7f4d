"""Penn Treebank as the sequel reads it (fnnet.data.ptb): tokens, ids by first appearance,
the token-count check, the search path, and a clear error naming where it looked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fnnet.data import DatasetError, load_ptb
from fnnet.data import ptb as ptb_module

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TEXTS = {"train": " a b <unk> \n b c N \n", "valid": " c a \n", "test": " N b b \n a \n"}


@pytest.fixture
def small_ptb(tmp_path, monkeypatch):
    """Three tiny files in PTB's format, with the token counts they have."""
    monkeypatch.delenv("FNNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ptb_module.files, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(ptb_module, "PTB_TOKENS", {"train": 8, "valid": 3, "test": 6})
    monkeypatch.setattr(ptb_module, "PTB_VOCABULARY", 6)
    (tmp_path / "ptb").mkdir()
    for split, text in TEXTS.items():
        (tmp_path / "ptb" / f"ptb.{split}.txt").write_text(text)
    return tmp_path


def test_words_get_eos_at_line_ends_and_ids_by_first_appearance_in_train(small_ptb):
    corpus = load_ptb(data_dir=small_ptb, download=False)
    assert corpus.id_to_word == ("a", "b", "<unk>", "<eos>", "c", "N")
    assert corpus.train.tolist() == [0, 1, 2, 3, 1, 4, 5, 3]
    assert corpus.valid.tolist() == [4, 0, 3]
    assert corpus.test.tolist() == [5, 1, 1, 3, 0, 3]
    assert corpus.train.dtype == np.int32 and corpus.vocabulary_size == 6
    assert corpus.word_to_id["c"] == 4 and corpus.train_split == "train"
    assert corpus.files[0] == str(small_ptb / "ptb" / "ptb.train.txt")


def test_without_the_train_file_the_valid_split_trains(small_ptb):
    (small_ptb / "ptb" / "ptb.train.txt").unlink()
    with pytest.raises(DatasetError, match=r"ptb.train.txt not found(.|\n)*--train-split valid"):
        load_ptb(data_dir=small_ptb, download=False)
    corpus = load_ptb(data_dir=small_ptb, download=False, train_split="valid")
    assert corpus.valid is None and corpus.train_split == "valid"
    assert corpus.id_to_word == ("c", "a", "<eos>", "N", "b")  # valid first, then test
    assert corpus.train.tolist() == [0, 1, 2] and corpus.test.tolist() == [3, 4, 4, 2, 1, 2]


def test_a_file_with_another_token_count_is_refused_naming_it(small_ptb):
    (small_ptb / "ptb" / "ptb.test.txt").write_text(" N b \n")
    with pytest.raises(DatasetError, match=r"ptb.test.txt: 3 tokens .*expected 6"):
        load_ptb(data_dir=small_ptb, download=False)


def test_missing_files_name_every_place_looked_in(small_ptb, monkeypatch):
    monkeypatch.setenv("FNNET_DATA", str(small_ptb / "elsewhere"))
    with pytest.raises(DatasetError) as info:
        load_ptb(download=False)
    message = str(info.value)
    assert str(small_ptb / "elsewhere") in message and str(small_ptb / "cache") in message
    assert "--no-download" in message


def test_fnnet_data_finds_the_files(small_ptb, monkeypatch):
    monkeypatch.setenv("FNNET_DATA", str(small_ptb))
    assert load_ptb(download=False).test.tolist() == [5, 1, 1, 3, 0, 3]


def test_bad_train_split_is_named():
    with pytest.raises(ValueError, match="train_split must be one of"):
        load_ptb(train_split="test")


@pytest.mark.skipif(not (SHARED / "ptb" / "ptb.valid.txt").is_file(),
                    reason="the real PTB valid/test files are not next to this checkout")
def test_the_real_valid_and_test_files_have_the_books_token_counts():
    corpus = load_ptb(data_dir=SHARED, download=False, train_split="valid")
    assert len(corpus.train) == 73_760 and len(corpus.test) == 82_430
    assert corpus.vocabulary_size == 7_596
    assert corpus.id_to_word[:3] == ("consumers", "may", "want")
    assert corpus.id_to_word[corpus.train[np.flatnonzero(corpus.train == corpus.word_to_id[
        "<eos>"])[0]]] == "<eos>"
