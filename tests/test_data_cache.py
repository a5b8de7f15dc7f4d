"""Decoded copies of IDX datasets (fnnet.data.cache): read back instead of decoding, rebuilt
when a source changes or the copy is corrupt, harmless when the cache cannot be written,
complete under concurrent builders."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from fnnet import data
from fnnet.data import cache
from tests.test_data import write_fake_set


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("FNNET_DATA", raising=False)
    monkeypatch.delenv("FNNET_NO_DATA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _copies(tmp_path) -> list:
    return sorted((tmp_path / "cache" / "fnnet" / "decoded" / "mnist").glob("*.npz"))


def _no_decoding(monkeypatch):
    def refuse(path):
        raise AssertionError(f"decoded {path} although a valid copy exists")

    monkeypatch.setattr("fnnet.data.mnist.read_idx", refuse)


def test_the_second_load_reads_the_copy_and_gives_the_same_data(tmp_path, monkeypatch):
    arrays = write_fake_set(tmp_path / "files")
    first = data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    assert len(_copies(tmp_path)) == 1
    _no_decoding(monkeypatch)
    second = data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second.t_test, arrays["t10k-labels-idx1-ubyte"])
    np.testing.assert_allclose(second.x_train * 255,
                               arrays["train-images-idx3-ubyte"].reshape(len(second.x_train), -1),
                               rtol=1e-6)
    assert second.files[0] == str(tmp_path / "files" / "train-images-idx3-ubyte.gz")


def test_a_changed_source_gets_a_new_copy(tmp_path):
    write_fake_set(tmp_path / "files", seed=0)
    data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    changed = write_fake_set(tmp_path / "files", seed=5)
    stem = tmp_path / "files" / "train-images-idx3-ubyte.gz"
    os.utime(stem, ns=(stem.stat().st_atime_ns, stem.stat().st_mtime_ns + 10**9))
    again = data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    np.testing.assert_allclose(again.x_train[0] * 255,
                               changed["train-images-idx3-ubyte"][0].ravel(), rtol=1e-6)
    assert len(_copies(tmp_path)) == 2


def test_a_corrupt_copy_is_rebuilt_not_used(tmp_path):
    arrays = write_fake_set(tmp_path / "files")
    data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    (copy,) = _copies(tmp_path)
    raw = bytearray(copy.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 8] = bytes(255 - b for b in raw[middle:middle + 8])
    copy.write_bytes(bytes(raw))
    again = data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    np.testing.assert_allclose(
        again.x_train * 255, arrays["train-images-idx3-ubyte"].reshape(len(again.x_train), -1),
        rtol=1e-6)
    assert cache.read_copy(copy, [tmp_path / "files" / f"{s}.gz" for s in data.IDX_FILES])


def test_a_truncated_copy_is_rebuilt(tmp_path):
    write_fake_set(tmp_path / "files")
    data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    (copy,) = _copies(tmp_path)
    copy.write_bytes(copy.read_bytes()[:100])
    data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    assert cache.read_copy(copy, [tmp_path / "files" / f"{s}.gz" for s in data.IDX_FILES])


def test_an_unwritable_cache_still_loads(tmp_path, monkeypatch):
    write_fake_set(tmp_path / "files")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    dataset = data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    assert dataset.x_train.shape == (20, 784)


def test_no_copy_when_turned_off(tmp_path, monkeypatch):
    write_fake_set(tmp_path / "files")
    monkeypatch.setenv("FNNET_NO_DATA_CACHE", "1")
    data.load_dataset("mnist", data_dir=tmp_path / "files", download=False)
    assert _copies(tmp_path) == []


def test_concurrent_builders_all_get_the_data_and_leave_one_complete_copy(tmp_path):
    write_fake_set(tmp_path / "files")
    results, errors = [], []

    def load():
        try:
            results.append(data.load_dataset("mnist", data_dir=tmp_path / "files",
                                              download=False))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].x_train, other.x_train)
    (copy,) = _copies(tmp_path)
    assert cache.read_copy(copy, [tmp_path / "files" / f"{s}.gz" for s in data.IDX_FILES])
    leftovers = [p for p in copy.parent.iterdir() if p.suffix != ".npz"]
    assert leftovers == []
