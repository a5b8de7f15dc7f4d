"""scikit-learn's bundled 8×8 digits, read from the file scikit-learn ships, without importing
scikit-learn (its import alone takes longer than training a net on these digits)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from fnnet.data.dataset import NUM_CLASSES, Dataset, DatasetError

DIGITS_SOURCE = "scikit-learn bundled digits (sklearn/datasets/data/digits.csv.gz)"
"""``Dataset.files`` of :func:`load_digits` (the data ships inside scikit-learn)."""

DIGITS_EXAMPLES = 1797


def digits_file() -> Path:
    """``sklearn/datasets/data/digits.csv.gz`` of the installed scikit-learn (found, not
    imported)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("digits: scikit-learn is not installed (pip install scikit-learn); "
                           "it ships the 8x8 digits file")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/digits.csv.gz"
    if not path.is_file():
        raise DatasetError(f"digits: {path} is missing from the scikit-learn installation")
    return path


def read_digits(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as pixels ``(1797, 64)`` uint8 in ``0..16`` and labels ``(1797,)``
    int32: each line of the CSV is 64 pixels (row-major) and the label."""
    path = digits_file() if path is None else path
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int32, ndmin=2)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{path}: cannot read the digits ({error})") from error
    if table.shape != (DIGITS_EXAMPLES, 65) or table.min() < 0 or table[:, :64].max() > 16:
        raise DatasetError(f"{path}: expected {DIGITS_EXAMPLES} rows of 64 pixels in 0..16 and "
                           f"a label; got shape {table.shape}")
    return table[:, :64].astype(np.uint8), table[:, 64]


def stratified_split(labels: np.ndarray, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, test indices)``: ``ceil(test_fraction · N)`` examples in the test set,
    each class contributing in proportion to its size (largest remainders get the leftover
    places, ties to the lower class), drawn without replacement by
    ``np.random.default_rng(seed)``; both index lists shuffled."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    n_test = int(np.ceil(test_fraction * len(labels)))
    exact = counts * n_test / len(labels)
    per_class = np.floor(exact).astype(int)
    leftover = n_test - per_class.sum()
    per_class[np.argsort(-(exact - per_class), kind="stable")[:leftover]] += 1
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                           for c, k in zip(classes, per_class, strict=True)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    return rng.permutation(train), rng.permutation(test)


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images), split train/test, stratified by class.

    ``x = pixels / 16`` (pixels are 0..16), float32 ``(N, 64)``; ``t`` int32 in ``0..9``. The
    split (:func:`stratified_split`) puts ``ceil(test_fraction · 1797)`` images in the test
    set (360 by default) with the class proportions of the whole, and is the same for the same
    ``seed``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits: test_fraction must be in (0, 1); got {test_fraction}")
    pixels, labels = read_digits()
    x = np.divide(pixels, np.float32(16), dtype=np.float32)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset("digits", x[train], labels[train], x[test], labels[test], NUM_CLASSES,
                   (8, 8), (DIGITS_SOURCE,))
