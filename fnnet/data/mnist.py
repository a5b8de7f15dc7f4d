"""MNIST and Fashion-MNIST from the four IDX files of their original distribution.

The files come from the first directory on :func:`fnnet.data.files.search_path` holding all
four (each ``.gz`` or not) or, failing that, are downloaded into the cache
(:mod:`fnnet.data.download`). The decoded arrays are kept as a checksummed copy
(:mod:`fnnet.data.cache`), so only the first run pays for gzip and parsing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fnnet.data import files
from fnnet.data.cache import cached_arrays
from fnnet.data.dataset import NUM_CLASSES, Dataset, DatasetError
from fnnet.data.download import IDX_FILES, download_dataset
from fnnet.data.files import cache_dir, find_file, search_path
from fnnet.data.idx import read_idx

IDX_DATASETS = ("mnist", "fashion-mnist")
"""The datasets read from IDX files (:func:`load_idx_dataset`)."""


def find_dataset_files(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first directory on :func:`~fnnet.data.files.search_path` holding all four
    :data:`IDX_FILES` of ``name`` (each ``.gz`` or uncompressed), or ``None``."""
    return files.find_directory(name, IDX_FILES, data_dir)


def _describe(directory: Path) -> str:
    """One line of the not-found message: the directory and what it lacks."""
    if not directory.is_dir():
        return f"  {directory}  (no such directory)"
    missing = [stem for stem in IDX_FILES if find_file(directory, stem) is None]
    return f"  {directory}  (missing {', '.join(missing)})"


def _not_found_message(name: str, searched: list[Path], download_error: str | None,
                       explicit: bool = False) -> str:
    """Why ``name`` could not be loaded: every directory searched, and how to get the files."""
    lines = [f"{name}: dataset files not found. Looked for {', '.join(IDX_FILES)} (.gz or not):"]
    lines += [_describe(directory) for directory in searched]
    if explicit:
        lines.append("An explicit data_dir (the CLI's --data-dir) is the only place looked in, "
                     "and nothing is downloaded into it; leave it out to search $FNNET_DATA, "
                     "the cache and /usr/share/datasets (and to download).")
        return "\n".join(lines)
    if download_error is None:
        lines.append("Downloading was not allowed (the CLI's --no-download; download=False).")
    else:
        lines.append(f"Downloading failed: {download_error}")
    lines.append("To get the files, any one of:")
    if name == "fashion-mnist":
        lines.append(
            f"  - sudo apt-get install dataset-fashion-mnist  (into {files.SYSTEM_DATA_DIR}/{name})"
        )
    lines += [
        "  - put the 4 files in a directory and pass it as data_dir (the CLI's --data-dir);",
        f"  - set $FNNET_DATA to a directory holding them, or holding a '{name}' subdirectory;",
        f"  - run again with network access, downloading allowed (no --no-download; "
        f"download=False in Python forbids it); the files are cached in {cache_dir(name)}.",
    ]
    return "\n".join(lines)


def load_idx_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load ``mnist`` or ``fashion-mnist`` from IDX files, downloading them if allowed.

    The files come from the first directory on :func:`search_path` that holds all four; if
    none does and ``download`` is true, they are downloaded (:func:`download_dataset`) into
    :func:`cache_dir` — except with an explicit ``data_dir``, which is the only place looked
    in (missing files there are an error). ``Dataset.files`` lists the four files read. The
    decoded arrays are kept as a checksummed copy in the cache (:mod:`fnnet.data.cache`) and
    read from there while the files stay as they are. Images become ``x = pixels / 255``,
    float32 ``(N, H·W)``; labels int32.

    Raises:
        ValueError: ``name`` is not an IDX dataset.
        DatasetError: files not found (the message lists every directory searched and how to
            get them), download failed, or a file is corrupt or inconsistent (names the file).
    """
    if name not in IDX_DATASETS:
        raise ValueError(
            f"load_idx_dataset: name must be one of {', '.join(IDX_DATASETS)}; got {name!r}"
        )
    directory = find_dataset_files(name, data_dir)
    if directory is None:
        directory = _download_or_explain(name, data_dir, download=download, progress=progress)
    paths = {stem: find_file(directory, stem) or directory / f"{stem}.gz" for stem in IDX_FILES}
    arrays = cached_arrays(name, [paths[stem] for stem in IDX_FILES], lambda: _decode(paths))
    height, width = arrays["x_train"].shape[1:]
    return Dataset(
        name,
        _flatten(arrays["x_train"]),
        arrays["t_train"],
        _flatten(arrays["x_test"]),
        arrays["t_test"],
        NUM_CLASSES,
        (height, width),
        tuple(str(paths[stem]) for stem in IDX_FILES),
    )


def _decode(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """The four IDX files as uint8 images ``(N, H, W)`` and int32 labels, checked."""
    x_train, t_train = _load_split(
        paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"]
    )
    x_test, t_test = _load_split(paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{paths['t10k-images-idx3-ubyte']}: test images are {x_test.shape[1:]}, "
            f"but training images are {x_train.shape[1:]}"
        )
    return {"x_train": x_train, "t_train": t_train, "x_test": x_test, "t_test": t_test}


def _download_or_explain(
    name: str, data_dir: str | os.PathLike[str] | None, *, download: bool, progress: bool
) -> Path:
    """Download ``name`` into the cache and return that directory, or raise the not-found
    error."""
    searched = search_path(name, data_dir)
    if data_dir:
        raise DatasetError(_not_found_message(name, searched, None, explicit=True))
    if not download:
        raise DatasetError(_not_found_message(name, searched, None))
    try:
        dest = download_dataset(name, cache_dir(name), progress=progress)
    except (DatasetError, OSError) as error:
        raise DatasetError(_not_found_message(name, searched, str(error))) from error
    return dest


def _load_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` read and checked against each other;
    labels returned as int32."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{images_path}: expected 3-D uint8 images; got shape {images.shape}, {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{labels_path}: expected 1-D uint8 labels; got shape {labels.shape}, {labels.dtype}"
        )
    if len(images) == 0:
        raise DatasetError(f"{images_path}: holds no images (IDX dimensions {images.shape})")
    if len(labels) != len(images):
        raise DatasetError(
            f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path}"
        )
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DatasetError(
            f"{labels_path}: label {labels.max()} out of range for {NUM_CLASSES} classes"
        )
    return images, labels.astype(np.int32)


def _flatten(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` → float32 ``(N, H·W)`` in ``[0, 1]``."""
    # One pass, casting inside the ufunc: ~20x faster than astype(float32) followed by / 255.
    return np.divide(images.reshape(len(images), -1), np.float32(255), dtype=np.float32)
