"""Decoded copies of data files, so a run pays gzip decoding and parsing once, not every time.

A copy is keyed by the identity of its source files — resolved path, size and modification
time (ns) of each — so a changed or replaced source gets a new copy. A copy is one
uncompressed ``.npz`` in ``~/.cache/fnnet/decoded/<name>/`` holding the arrays and a manifest (the
sources' identity and the SHA-256 of every array), checked on every read; a copy that fails
the check is rebuilt. It is written to a temporary file, fsynced and renamed into place, so
concurrent runs each see a complete copy or none. Where the cache cannot be written the
arrays are simply decoded each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fnnet.atomic import atomic_write
from fnnet.data.files import cache_dir

KEEP_COPIES = 3
"""Decoded copies kept per dataset (the newest; one per set of source files)."""

_MANIFEST = "__manifest__"


def source_identity(sources: Sequence[Path]) -> list[list[object]]:
    """``[resolved path, size, mtime_ns]`` of each source file."""
    identity = []
    for source in sources:
        stat = Path(source).stat()
        identity.append([str(Path(source).resolve()), stat.st_size, stat.st_mtime_ns])
    return identity


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def copy_path(name: str, sources: Sequence[Path]) -> Path:
    """Where the decoded copy of ``sources`` for dataset ``name`` lives."""
    key = hashlib.sha256(json.dumps(source_identity(sources)).encode()).hexdigest()[:20]
    return cache_dir(name).parent / "decoded" / name / f"{key}.npz"


def read_copy(path: Path, sources: Sequence[Path]) -> dict[str, np.ndarray] | None:
    """The arrays of the copy at ``path`` if it is complete, made from ``sources`` as they
    are now, and every array matches its checksum; otherwise None."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            manifest = json.loads(archive[_MANIFEST].tobytes())
            if manifest.get("sources") != source_identity(sources):
                return None
            arrays = {name: archive[name] for name in manifest["sha256"]}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    if any(_digest(arrays[name]) != digest for name, digest in manifest["sha256"].items()):
        return None
    return arrays


def write_copy(path: Path, sources: Sequence[Path], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` with their manifest to ``path`` atomically; keep the newest
    :data:`KEEP_COPIES` copies in its directory."""
    manifest = {"sources": source_identity(sources),
                "sha256": {name: _digest(array) for name, array in arrays.items()}}
    members = {**arrays, _MANIFEST: np.frombuffer(json.dumps(manifest).encode(), np.uint8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: np.savez(file, **members))
    older = sorted((p for p in path.parent.glob("*.npz") if p != path),
                   key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for stale in older[KEEP_COPIES - 1:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def cached_arrays(name: str, sources: Sequence[Path],
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``build()`` (the decoded arrays of ``sources``), read from the decoded copy when one
    is valid, else built and stored (when the cache is writable). ``FNNET_NO_DATA_CACHE=1``
    turns the copies off."""
    if os.environ.get("FNNET_NO_DATA_CACHE"):
        return build()
    try:
        path = copy_path(name, sources)
    except (OSError, RuntimeError):  # a source vanished, or no home directory
        return build()
    arrays = read_copy(path, sources)
    if arrays is not None:
        return arrays
    arrays = build()
    with contextlib.suppress(OSError):  # a read-only or full cache: decode again next time
        write_copy(path, sources, arrays)
    return arrays
