"""Atomic writes: the old file or the whole new one, no temporary left, errors name the path."""

from __future__ import annotations

import errno
import os

import pytest

from fnnet import atomic
from fnnet.atomic import atomic_write, atomic_write_text


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_full_disk_keeps_the_old_file_leaves_no_temporary_and_names_the_path(tmp_path):
    target = tmp_path / "out.json"
    target.write_text('{"valid": true}')

    def write_then_fail(file):
        file.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_write(target, write_then_fail)
    assert info.value.filename == str(target) and str(target) in str(info.value)
    assert target.read_text() == '{"valid": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failing_fsync_or_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OSError, match=str(target)):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_missing_directory_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        atomic_write_text(tmp_path / "missing" / "out.json", "x")
