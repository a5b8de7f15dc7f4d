"""Where data files are looked for, in order, and where downloads are cached.

:func:`search_path` is the order every loader uses: an explicit ``data_dir`` alone, or else
``$FNNET_DATA``, the cache (:func:`cache_dir`) and ``/usr/share/datasets`` (Debian's
``dataset-*`` packages).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

SYSTEM_DATA_DIR = Path("/usr/share/datasets")
"""Where Debian's ``dataset-*`` packages install data (``dataset-fashion-mnist``)."""


def cache_dir(name: str) -> Path:
    """Where downloads of ``name`` go: ``$XDG_CACHE_HOME/fnnet/<name>``, by default
    ``~/.cache/fnnet/<name>``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "fnnet" / name


def search_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories searched for ``name``'s IDX files, in order, without duplicates.

    With an explicit ``data_dir``: ``data_dir/<name>``, then ``data_dir`` itself, and nothing
    else (a missing or incomplete ``data_dir`` must not silently give files from elsewhere).
    Without:

    1. ``$FNNET_DATA/<name>``, then ``$FNNET_DATA`` itself (when set);
    2. :func:`cache_dir` (``~/.cache/fnnet/<name>``, honouring ``$XDG_CACHE_HOME``);
    3. ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` installs there).
    """
    if data_dir:
        root = Path(data_dir)
        return list(dict.fromkeys([root / name, root]))
    roots = [Path(root) for root in (os.environ.get("FNNET_DATA"),) if root]
    candidates = [d for root in roots for d in (root / name, root)]
    candidates += [cache_dir(name), SYSTEM_DATA_DIR / name]
    return list(dict.fromkeys(candidates))


def find_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` or ``directory/stem.gz``, whichever is a file (the former first)."""
    for path in (directory / stem, directory / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def find_directory(name: str, stems: Sequence[str],
                   data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first directory on :func:`search_path` holding every file of ``stems`` (each
    plain or ``.gz``), or ``None`` when none does."""
    for directory in search_path(name, data_dir):
        if all(find_file(directory, stem) for stem in stems):
            return directory
    return None
