"""Verified downloads: each file fetched from a list of mirrors, checked against its SHA-256,
and moved into place only when the whole set has arrived."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from fnnet.atomic import fsync_directory
from fnnet.data.dataset import DatasetError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four files of an MNIST-like dataset; each may also be stored gzipped (``<name>.gz``)."""


class Mirror(NamedTuple):
    """A base URL serving ``<file>.gz`` for each of :data:`IDX_FILES`, and the SHA-256 (hex) of
    each ``.gz`` as served, keyed by the file name without ``.gz``.

    A file with no entry in ``sha256`` is never fetched from this mirror: nothing unverified is
    written to the cache.
    """

    url: str
    sha256: Mapping[str, str]


_MNIST_SHA256 = {
    # tensorflow/datasets, tensorflow_datasets/url_checksums/mnist.txt (url, size, sha256).
    "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_FASHION_MNIST_SHA256 = {
    # tensorflow/datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt (the S3 copies,
    # byte-identical to GitHub's data/fashion/*.gz). Debian's dataset-fashion-mnist holds the
    # same deflate streams under rewritten gzip headers; see tests/test_data.py.
    "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

MIRRORS: dict[str, tuple[Mirror, ...]] = {
    "mnist": (
        Mirror("https://ossci-datasets.s3.amazonaws.com/mnist/", _MNIST_SHA256),
        Mirror("https://storage.googleapis.com/cvdf-datasets/mnist/", _MNIST_SHA256),
    ),
    "fashion-mnist": (
        Mirror(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            _FASHION_MNIST_SHA256,
        ),
    ),
}
"""Download sources per dataset, tried in order. Tests and users may replace entries."""

_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike[str],
    *,
    mirrors: Sequence[Mirror] | None = None,
    progress: bool = True,
) -> Path:
    """Download the four ``.gz`` files of ``name`` into ``dest_dir``, verifying each SHA-256.

    Each file is tried from each mirror in turn (default ``MIRRORS[name]``). Downloads stream to
    temporary files in ``dest_dir`` and are fsynced; only once all four are fetched and verified
    are they moved into place with ``os.replace``. A failure removes every temporary file, so
    ``dest_dir`` never receives an unverified file nor, short of a crash, a partial set.
    Returns ``dest_dir``.

    Raises:
        DatasetError: when some file could not be fetched with the right hash from any mirror;
            the message lists each attempt (for a bad hash: file, expected and actual).
    """
    if mirrors is None:
        if name not in MIRRORS:
            raise ValueError(f"download_dataset: no mirrors known for {name!r}; see MIRRORS")
        mirrors = MIRRORS[name]
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    fetched: dict[str, Path] = {}
    try:
        for stem in IDX_FILES:
            fetched[f"{stem}.gz"] = _fetch_verified(stem, mirrors, dest, progress=progress)
        for filename, temp in fetched.items():
            os.replace(temp, dest / filename)
    finally:
        for temp in fetched.values():
            temp.unlink(missing_ok=True)
    fsync_directory(dest)
    return dest


def _fetch_verified(stem: str, mirrors: Sequence[Mirror], dest: Path, *, progress: bool) -> Path:
    """A temporary file in ``dest`` holding ``<stem>.gz`` from the first mirror that serves it
    with the expected SHA-256."""
    filename, failures = f"{stem}.gz", []
    for mirror in mirrors:
        url = mirror.url.rstrip("/") + "/" + filename
        expected = mirror.sha256.get(stem)
        if expected is None:
            failures.append(f"{url}: no SHA-256 known for {filename}, not fetched")
            continue
        try:
            temp, actual = _download(url, dest, filename, progress=progress)
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            failures.append(f"{url}: {error}")
            continue
        if actual == expected.lower():
            return temp
        temp.unlink(missing_ok=True)
        failures.append(
            f"{url}: SHA-256 mismatch for {filename}: expected {expected}, got {actual}"
        )
    raise DatasetError(f"could not download {filename}:\n    " + "\n    ".join(failures))


def _download(url: str, dest: Path, filename: str, *, progress: bool) -> tuple[Path, str]:
    """Stream ``url`` into a new temporary file in ``dest`` (fsynced); return it and its
    SHA-256. The temporary file is removed if anything fails."""
    fd, name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest)
    temp, digest = Path(name), hashlib.sha256()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
            tqdm(
                total=int(response.headers.get("Content-Length") or 0) or None,
                unit="B",
                unit_scale=True,
                desc=filename,
                disable=None if progress else True,  # drawn on a terminal only
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, digest.hexdigest()
