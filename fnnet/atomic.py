"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

The bytes go to a hidden temporary file in the destination's own directory (so the rename
stays within one file system), are flushed and ``fsync``-ed, and the file is renamed onto its
final name with ``os.replace`` (atomic on POSIX and Windows); then the directory is
``fsync``-ed so the rename itself is durable. If anything fails — a full disk, a permission,
Ctrl-C — the temporary file is removed and the previous file is untouched.

Every ``OSError`` raised here names the destination path, e.g. ``[Errno 28] No space left
on device: 'run.json'`` (an error from ``write`` on an open file carries no file name).

>>> import pathlib, tempfile
>>> target = pathlib.Path(tempfile.mkdtemp()) / "run.json"
>>> atomic_write_text(target, '{"ok": true}\\n') == target, target.read_text()
(True, '{"ok": true}\\n')
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_directory"]


def fsync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable (a no-op where directories cannot be opened,
    e.g. on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _named(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file name (same class, errno and message)."""
    if error.filename is not None or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, str(path))


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], None],
    *,
    temp_prefix: str | None = None,
    temp_suffix: str = ".tmp",
) -> Path:
    """Write ``path`` atomically: ``write(file)`` fills a temporary file, which replaces it.

    Args:
      path: the destination; its directory must exist.
      write: called once with the temporary file, opened ``"wb"``.
      temp_prefix: name prefix of the temporary file (default ``.<name>.``); a random part
        and ``temp_suffix`` follow. Callers that clean up stray temporaries glob on it.
      temp_suffix: name suffix of the temporary file.

    Returns:
      ``path`` as a :class:`~pathlib.Path`.

    Raises:
      OSError: naming ``path``; the previous file is untouched and no temporary is left.
    """
    path = Path(path)
    prefix = f".{path.name}." if temp_prefix is None else temp_prefix
    temporary = path.parent / f"{prefix}{uuid.uuid4().hex}{temp_suffix}"
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise _named(error, path) from None
        raise
    fsync_directory(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda file: file.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode(encoding))
