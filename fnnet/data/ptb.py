"""The Penn Treebank language-modelling corpus as the sequel reads it (its ``dataset/ptb.py``).

Three files, ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``: one sentence a line,
``<unk>`` for rare words, ``N`` for numbers. Each file becomes word ids: every line end is
an ``<eos>`` token, the ids are given by first appearance — in the training file, whose
10 000 word types cover the other two. The files are checked by their token counts (train
929 589, valid 73 760, test 82 430) and, where known, their SHA-256.

Where the training file is missing (the machines this project is built on cannot download
it), ``train_split="valid"`` trains on the valid split and keeps the test split for scoring;
the ids are then by first appearance in valid, then test (7 596 word types), and there is no
separate validation set.

Files are looked for on :func:`fnnet.data.files.search_path` (an explicit ``data_dir`` alone,
else ``$FNNET_DATA``, the cache, ``/usr/share/datasets``; each in ``<dir>/ptb`` or ``<dir>``)
and, failing that, downloaded into the cache from the book's source.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fnnet.data import files
from fnnet.data.dataset import DatasetError
from fnnet.data.download import _download

PTB_SPLITS = ("train", "valid", "test")
PTB_FILES = {split: f"ptb.{split}.txt" for split in PTB_SPLITS}
PTB_TOKENS = {"train": 929_589, "valid": 73_760, "test": 82_430}
"""Tokens of each file, ``<eos>`` included: the check that a file is the one the book reads."""
PTB_SHA256 = {
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
"""SHA-256 of the files as the book's source serves them (train: not recorded here; its token
count is checked instead)."""
PTB_URL = "https://raw.githubusercontent.com/tomsercu/lstm/master/data/"
"""The book's source of the three files."""
PTB_VOCABULARY = 10_000
TRAIN_SPLITS = ("train", "valid")


class Corpus(NamedTuple):
    """A corpus as word ids (int32, one token after another, ``<eos>`` at each line end).

    ``train``: the ids to train on (from the file of ``train_split``); ``valid``: the
    validation ids (None when ``train_split="valid"``); ``test``: the test ids;
    ``id_to_word[i]`` is word ``i`` and ``word_to_id`` its inverse; ``files``: the files read.
    """

    name: str
    train: np.ndarray
    valid: np.ndarray | None
    test: np.ndarray
    word_to_id: dict[str, int]
    id_to_word: tuple[str, ...]
    files: tuple[str, ...]
    train_split: str

    @property
    def vocabulary_size(self) -> int:
        return len(self.id_to_word)


def words_of(text: str) -> list[str]:
    """The book's tokens of a PTB file's text: whitespace-split, ``<eos>`` at every line end.

    >>> words_of(" the cat \\n sat \\n")
    ['the', 'cat', '<eos>', 'sat', '<eos>']
    """
    return text.replace("\n", " <eos> ").split()


def _read_words(path: Path) -> list[str]:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as file:
                raw = file.read()
        else:
            raw = path.read_bytes()
        return words_of(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error


def _check_count(path: Path, split: str, words: list[str]) -> None:
    if len(words) != PTB_TOKENS[split]:
        raise DatasetError(f"{path}: {len(words):,} tokens (with <eos>), expected "
                           f"{PTB_TOKENS[split]:,}: not the Penn Treebank {split} split the "
                           f"book reads")


def _find(split: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    for directory in files.search_path("ptb", data_dir):
        path = files.find_file(directory, PTB_FILES[split])
        if path is not None:
            return path
    return None


def _fetch(split: str, progress: bool) -> Path:
    """Download one file into the cache, verified (SHA-256 where known, token count)."""
    dest = files.cache_dir("ptb")
    dest.mkdir(parents=True, exist_ok=True)
    temp, digest = _download(PTB_URL + PTB_FILES[split], dest, PTB_FILES[split],
                             progress=progress)
    try:
        expected = PTB_SHA256.get(split)
        if expected is not None and digest != expected:
            raise DatasetError(f"{PTB_URL}{PTB_FILES[split]}: SHA-256 mismatch: expected "
                               f"{expected}, got {digest}")
        _check_count(temp, split, _read_words(temp))
        os.replace(temp, dest / PTB_FILES[split])
    finally:
        temp.unlink(missing_ok=True)
    return dest / PTB_FILES[split]


def _not_found(split: str, data_dir: str | os.PathLike[str] | None, reason: str) -> DatasetError:
    lines = [f"ptb: {PTB_FILES[split]} not found. Looked in:"]
    lines += [f"  {d}" for d in files.search_path("ptb", data_dir)]
    lines.append(reason)
    if split == "train":
        lines.append("Without the training file, train_split='valid' (the CLI's --train-split "
                     "valid) trains on the valid split and scores on the test split.")
    lines.append(f"To get the files: put ptb.train.txt, ptb.valid.txt and ptb.test.txt in a "
                 f"directory given as data_dir (--data-dir) or $FNNET_DATA, or download them "
                 f"from {PTB_URL} (done automatically into {files.cache_dir('ptb')} when the "
                 f"network is reachable).")
    return DatasetError("\n".join(lines))


def locate(split: str, data_dir: str | os.PathLike[str] | None = None, *,
           download: bool = True, progress: bool = True) -> Path:
    """The file of ``split``: found on the search path or downloaded into the cache (not
    with an explicit ``data_dir``, which is the only place looked in)."""
    path = _find(split, data_dir)
    if path is not None:
        return path
    if data_dir:
        raise _not_found(split, data_dir, "An explicit data_dir (--data-dir) is the only place "
                                          "looked in, and nothing is downloaded into it.")
    if not download:
        raise _not_found(split, data_dir, "Downloading was not allowed (--no-download).")
    try:
        return _fetch(split, progress)
    except (OSError, DatasetError) as error:
        raise _not_found(split, data_dir, f"Downloading failed: {error}") from error


def load_ptb(*, data_dir: str | os.PathLike[str] | None = None, download: bool = True,
             progress: bool = True, train_split: str = "train") -> Corpus:
    """Penn Treebank as a :class:`Corpus` (see the module docstring).

    Raises:
        ValueError: ``train_split`` is not ``"train"`` or ``"valid"``.
        DatasetError: a file is missing (the message lists where it looked and how to get
            it), unreadable, or not the book's (its token count or checksum differs).
    """
    if train_split not in TRAIN_SPLITS:
        raise ValueError(f"train_split must be one of {TRAIN_SPLITS}; got {train_split!r}")
    splits = PTB_SPLITS if train_split == "train" else ("valid", "test")
    paths = {split: locate(split, data_dir, download=download, progress=progress)
             for split in splits}
    words = {}
    for split, path in paths.items():
        words[split] = _read_words(path)
        _check_count(path, split, words[split])
    word_to_id: dict[str, int] = {}
    for split in splits:  # ids by first appearance, the training file's first
        for word in words[split]:
            word_to_id.setdefault(word, len(word_to_id))
    if train_split == "train" and len(word_to_id) != PTB_VOCABULARY:
        raise DatasetError(f"{paths['train']}: {len(word_to_id):,} word types over the three "
                           f"files, expected the book's {PTB_VOCABULARY:,}")

    def ids(split: str) -> np.ndarray:
        return np.fromiter((word_to_id[w] for w in words[split]), np.int32,
                           count=len(words[split]))

    return Corpus("ptb", ids(train_split), ids("valid") if train_split == "train" else None,
                  ids("test"), word_to_id, tuple(word_to_id), tuple(map(str, paths.values())),
                  train_split)
