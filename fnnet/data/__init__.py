"""Datasets: scikit-learn's bundled 8×8 digits, MNIST / Fashion-MNIST from IDX files, and the
sequel's generated spiral.

Every loader returns a :class:`Dataset` of host (NumPy) arrays, loaded once:

- ``x``: float32, shape ``(N, D)`` with ``D = H·W`` (images flattened row-major), values in
  ``[0, 1]`` (pixel / 255 for MNIST-like sets, pixel / 16 for digits);
- ``t``: int32 class indices, shape ``(N,)``, each in ``[0, num_classes)``.

``digits`` needs neither files nor network. ``mnist`` and ``fashion-mnist`` are read from the
four IDX files of the original distribution (each ``.gz`` or uncompressed), found on a search
path (see :func:`search_path`) or, failing that, downloaded once into the cache directory with
their SHA-256 verified; their decoded arrays are kept as a checksummed copy in the cache.
Anything corrupt, truncated or inconsistent raises :class:`DatasetError` naming the file: a
dataset is returned whole or not at all.

Text for the sequel's language models comes as a :class:`Corpus` of word ids:
:func:`load_ptb` (Penn Treebank, :mod:`fnnet.data.ptb`); :func:`preprocess` turns a string
into ids and :func:`create_contexts_target` a corpus into word2vec's examples
(:mod:`fnnet.data.text`). Its seq2seq sets (addition, dates) are generated from a seed as
character ids: :func:`load_seq2seq` (:mod:`fnnet.data.seq2seq`).

The modules, one concern each: :mod:`~fnnet.data.dataset` (the container),
:mod:`~fnnet.data.idx` (the file format), :mod:`~fnnet.data.files` (where files are looked
for), :mod:`~fnnet.data.download` (verified downloads), :mod:`~fnnet.data.cache` (decoded
copies), :mod:`~fnnet.data.digits`, :mod:`~fnnet.data.mnist`, :mod:`~fnnet.data.spiral`,
:mod:`~fnnet.data.ptb` and :mod:`~fnnet.data.seq2seq` (the loaders), :mod:`~fnnet.data.text`
(text as ids, word2vec's windows).

Example::

    >>> data = load_dataset("digits")
    >>> data.x_train.shape, data.x_test.shape, data.num_classes, data.image_shape
    ((1437, 64), (360, 64), 10, (8, 8))
"""

from __future__ import annotations

import os

from fnnet.data.dataset import NUM_CLASSES, Dataset, DatasetError
from fnnet.data.digits import DIGITS_SOURCE, load_digits
from fnnet.data.download import IDX_FILES, MIRRORS, Mirror, download_dataset
from fnnet.data.files import SYSTEM_DATA_DIR, cache_dir, search_path
from fnnet.data.idx import read_idx, write_idx
from fnnet.data.mnist import IDX_DATASETS, find_dataset_files, load_idx_dataset
from fnnet.data.ptb import Corpus, load_ptb
from fnnet.data.seq2seq import (
    SEQ2SEQ_DATASETS,
    Seq2seqData,
    Vocabulary,
    encode_questions,
    load_seq2seq,
)
from fnnet.data.spiral import load_spiral
from fnnet.data.text import TOY_TEXT, create_contexts_target, preprocess

__all__ = [
    "CLASSES",
    "DATASETS",
    "DIGITS_SOURCE",
    "IDX_DATASETS",
    "IDX_FILES",
    "INPUT_SIZES",
    "MIRRORS",
    "NUM_CLASSES",
    "SEQ2SEQ_DATASETS",
    "SYSTEM_DATA_DIR",
    "TOY_TEXT",
    "Corpus",
    "Dataset",
    "DatasetError",
    "Mirror",
    "Seq2seqData",
    "Vocabulary",
    "cache_dir",
    "create_contexts_target",
    "download_dataset",
    "encode_questions",
    "find_dataset_files",
    "load_dataset",
    "load_digits",
    "load_idx_dataset",
    "load_ptb",
    "load_seq2seq",
    "load_spiral",
    "preprocess",
    "read_idx",
    "search_path",
    "write_idx",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "spiral")
"""Names accepted by :func:`load_dataset`."""

INPUT_SIZES = {"digits": 8 * 8, "mnist": 28 * 28, "fashion-mnist": 28 * 28, "spiral": 2}
"""Features per example of each of :data:`DATASETS` (for sizing a model before loading)."""

CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "spiral": 3}
"""Classes of each of :data:`DATASETS` as :func:`load_dataset` loads it."""


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load one of :data:`DATASETS` by name.

    ``digits`` is built in (:func:`load_digits`, default split) and ``spiral`` generated
    (:func:`load_spiral`, the book's 3 × 100 points); ``data_dir`` and ``download`` do not
    apply to them. ``mnist`` and ``fashion-mnist`` go through :func:`load_idx_dataset`.

    Raises:
        ValueError: ``name`` is not in :data:`DATASETS`.
        DatasetError: see :func:`load_idx_dataset`.
    """
    if name not in DATASETS:
        raise ValueError(f"load_dataset: name must be one of {', '.join(DATASETS)}; got {name!r}")
    if name == "digits":
        return load_digits()
    if name == "spiral":
        return load_spiral()
    return load_idx_dataset(name, data_dir=data_dir, download=download, progress=progress)
