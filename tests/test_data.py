"""Tests for fnnet.data: the IDX reader/writer, the search path, loading, errors, downloading
(from a local HTTP server on 127.0.0.1 only) and the bundled digits."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fnnet import data
from fnnet.data import DatasetError, Mirror

N_TRAIN, N_TEST = 20, 10
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """No test sees the user's $FNNET_DATA, cache or /usr/share/datasets; no proxy for
    127.0.0.1."""
    monkeypatch.delenv("FNNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data.files, "SYSTEM_DATA_DIR", tmp_path / "system")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def write_fake_set(directory: Path, *, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small MNIST-shaped set (N_TRAIN / N_TEST images of 28×28) and return its
    arrays, keyed by IDX file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(N_TEST)[::-1] % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        data.write_idx(directory / (f"{stem}.gz" if gz else stem), array)
    return arrays


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/"served" (four fake .gz files); yields
    (base URL, {stem: sha256}, {stem: arrays}, list of requested paths)."""
    root = tmp_path / "served"
    arrays = write_fake_set(root, gz=True, seed=1)
    hashes = {stem: sha256_of(root / f"{stem}.gz") for stem in data.IDX_FILES}
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", hashes, arrays, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def assert_matches(dataset: data.Dataset, arrays: dict[str, np.ndarray]) -> None:
    """The dataset holds ``arrays`` flattened, scaled to [0, 1], with int32 labels."""
    assert dataset.x_train.shape == (N_TRAIN, 784) and dataset.x_test.shape == (N_TEST, 784)
    assert dataset.x_train.dtype == np.float32 and dataset.x_test.dtype == np.float32
    assert dataset.t_train.dtype == np.int32 and dataset.t_test.dtype == np.int32
    assert dataset.num_classes == 10 and dataset.image_shape == (28, 28)
    np.testing.assert_array_equal(
        dataset.x_train * 255, arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, -1)
    )
    np.testing.assert_allclose(
        dataset.x_test, arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, -1) / 255, rtol=1e-6
    )
    np.testing.assert_array_equal(dataset.t_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(dataset.t_test, arrays["t10k-labels-idx1-ubyte"])
    assert dataset.x_train.min() >= 0.0 and dataset.x_train.max() <= 1.0


# ----------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([0, 1, 255], dtype=np.uint8),
        np.array([-128, 0, 127], dtype=np.int8),
        np.array([[-2, 300], [7, -32768]], dtype=np.int16),
        np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
        np.array([1.5, -0.25, np.inf], dtype=np.float32),
        np.array([[np.pi]], dtype=np.float64),
        np.zeros((0, 28, 28), dtype=np.uint8),
    ],
    ids=["u8-3d", "u8-1d", "i8", "i16", "i32", "f32", "f64", "empty"],
)
def test_idx_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"a.idx{suffix}"
    data.write_idx(path, array)
    back = data.read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, ">i2", "<i4", np.float32, ">f8"]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    gz=st.booleans(),
)
def test_idx_round_trip_property(tmp_path_factory, array, gz):
    path = tmp_path_factory.mktemp("idx") / ("a.gz" if gz else "a")
    data.write_idx(path, array)
    back = data.read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)


def test_read_idx_follows_the_published_layout(tmp_path):
    # Written by hand, not by write_idx: magic 0x00000801, then one big-endian uint32 size.
    (tmp_path / "u8").write_bytes(bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big") + b"\x07\x00\xff")
    np.testing.assert_array_equal(data.read_idx(tmp_path / "u8"), [7, 0, 255])
    payload = bytes([0, 0, 0x0C, 2]) + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
    payload += (258).to_bytes(4, "big") + (-1).to_bytes(4, "big", signed=True)
    (tmp_path / "i32").write_bytes(payload)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "i32"), [[258, -1]])


def test_write_idx_gz_is_gzip_and_deterministic(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    data.write_idx(tmp_path / "a.gz", array)
    data.write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.gz").read_bytes())[:4] == bytes([0, 0, 8, 1])


def test_write_idx_rejects_unsupported_arrays(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        data.write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        data.write_idx(tmp_path / "x", np.uint8(3))


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x08\x03\x00\x00" + bytes(16), "not an IDX file"),  # byte-swapped magic
        (b"", "not an IDX file"),
        (bytes([0, 0, 0x0A, 1]) + (1).to_bytes(4, "big") + b"x", "unknown IDX type code 0x0a"),
        (bytes([0, 0, 0x08, 0]), "0 dimensions"),
        (bytes([0, 0, 0x08, 3]) + (1).to_bytes(4, "big"), "header truncated"),
        (_idx_bytes(np.zeros((4, 2, 2), np.uint8))[:-1], "truncated or corrupt"),
        (_idx_bytes(np.zeros((4, 2, 2), np.uint8)) + b"\x00", "truncated or corrupt"),
    ],
    ids=["wrong-magic", "empty", "dtype-code", "no-dims", "short-header", "truncated", "extra"],
)
def test_read_idx_rejects_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "corrupt",
    [lambda b: b[: len(b) // 2], lambda b: b[:-4], lambda b: b"not gzip at all"],
    ids=["half", "no-trailer", "not-gzip"],
)
def test_read_idx_rejects_broken_gzip(tmp_path, corrupt):
    path = tmp_path / "images.gz"
    data.write_idx(path, np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DatasetError, match="gzip") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        data.read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------------- search path


def test_search_path_order(tmp_path, monkeypatch):
    monkeypatch.setenv("FNNET_DATA", str(tmp_path / "env"))
    # An explicit data_dir is the only place looked in.
    assert data.search_path("mnist", tmp_path / "arg") == [tmp_path / "arg" / "mnist",
                                                           tmp_path / "arg"]
    assert data.search_path("mnist") == [
        tmp_path / "env" / "mnist",
        tmp_path / "env",
        tmp_path / "cache" / "fnnet" / "mnist",
        tmp_path / "system" / "mnist",
    ]


def test_cache_dir_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir("mnist") == tmp_path / "home" / ".cache" / "fnnet" / "mnist"


def test_find_dataset_files_needs_all_four_and_takes_the_first(tmp_path, monkeypatch):
    write_fake_set(tmp_path / "env" / "mnist")
    monkeypatch.setenv("FNNET_DATA", str(tmp_path / "env"))
    partial = tmp_path / "arg"
    write_fake_set(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    assert data.find_dataset_files("mnist", partial) is None  # never files from elsewhere
    assert data.find_dataset_files("mnist") == tmp_path / "env" / "mnist"
    write_fake_set(partial, gz=False)  # now complete, mixing raw and .gz files
    assert data.find_dataset_files("mnist", partial) == partial
    assert data.find_dataset_files("fashion-mnist") is None
    write_fake_set(tmp_path / "env")
    assert data.find_dataset_files("fashion-mnist") == tmp_path / "env"  # $FNNET_DATA itself


# ----------------------------------------------------------------------------- loading


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_from_data_dir(tmp_path, gz):
    arrays = write_fake_set(tmp_path / "d", gz=gz)
    dataset = data.load_dataset("mnist", data_dir=tmp_path / "d", download=False)
    assert dataset.name == "mnist"
    assert_matches(dataset, arrays)


@pytest.mark.parametrize("subdir", [True, False], ids=["root-name", "root"])
def test_load_from_fnnet_data(tmp_path, monkeypatch, subdir):
    root = tmp_path / "root"
    arrays = write_fake_set(root / "fashion-mnist" if subdir else root)
    monkeypatch.setenv("FNNET_DATA", str(root))
    dataset = data.load_dataset("fashion-mnist", download=False, progress=False)
    assert dataset.name == "fashion-mnist"
    assert_matches(dataset, arrays)


def test_load_from_system_dir(tmp_path):
    arrays = write_fake_set(tmp_path / "system" / "fashion-mnist")
    assert_matches(data.load_idx_dataset("fashion-mnist", download=False), arrays)


def _replace(directory: Path, stem: str, array: np.ndarray) -> None:
    data.write_idx(directory / f"{stem}.gz", array)


@pytest.mark.parametrize(
    ("stem", "array", "message"),
    [
        ("train-labels-idx1-ubyte", np.zeros(N_TRAIN - 1, np.uint8), "19 labels for the 20"),
        ("t10k-labels-idx1-ubyte", np.full(N_TEST, 10, np.uint8), "label 10 out of range"),
        ("train-images-idx3-ubyte", np.zeros(N_TRAIN, np.uint8), "expected 3-D uint8 images"),
        ("train-labels-idx1-ubyte", np.zeros(N_TRAIN, np.int32), "expected 1-D uint8 labels"),
        ("t10k-images-idx3-ubyte", np.zeros((N_TEST, 8, 8), np.uint8), "test images are"),
    ],
    ids=["count-mismatch", "label-range", "images-1d", "labels-int32", "shape-mismatch"],
)
def test_inconsistent_files_name_the_file(tmp_path, stem, array, message):
    write_fake_set(tmp_path)
    _replace(tmp_path, stem, array)
    with pytest.raises(DatasetError, match=message) as info:
        data.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert f"{stem}.gz" in str(info.value)


def test_truncated_file_in_a_dataset(tmp_path):
    write_fake_set(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="truncated") as info:
        data.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(path) in str(info.value)


def test_missing_files_without_download_list_every_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("FNNET_DATA", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    data.write_idx(tmp_path / "env" / "train-images-idx3-ubyte.gz", np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(DatasetError) as info:
        data.load_dataset("fashion-mnist", download=False)
    message = str(info.value)
    for directory in data.search_path("fashion-mnist"):
        assert str(directory) in message
    assert "missing train-labels-idx1-ubyte, t10k-images" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "$FNNET_DATA" in message and "data_dir" in message
    assert "download=False" in message
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("download", [True, False])
def test_an_explicit_data_dir_is_the_only_place_looked_in(tmp_path, monkeypatch, download):
    """A missing or incomplete data_dir is an error, even when the files are elsewhere (and
    nothing is downloaded): the run must not silently read other files."""
    write_fake_set(tmp_path / "env")
    monkeypatch.setenv("FNNET_DATA", str(tmp_path / "env"))
    write_fake_set(tmp_path / "arg")
    (tmp_path / "arg" / "t10k-labels-idx1-ubyte.gz").unlink()
    for explicit in (tmp_path / "arg", tmp_path / "typo"):
        with pytest.raises(DatasetError) as info:
            data.load_dataset("mnist", data_dir=explicit, download=download)
        message = str(info.value)
        assert str(explicit) in message and "only place looked in" in message
        assert str(tmp_path / "env") not in message
    assert not (tmp_path / "cache").exists()


def test_a_dataset_records_the_files_it_read(tmp_path):
    write_fake_set(tmp_path / "d", gz=False)
    (tmp_path / "d" / "t10k-images-idx3-ubyte").rename(tmp_path / "d" / "moved")
    write_fake_set(tmp_path / "other")
    data.write_idx(tmp_path / "d" / "t10k-images-idx3-ubyte.gz",
                   data.read_idx(tmp_path / "d" / "moved"))
    dataset = data.load_dataset("mnist", data_dir=tmp_path / "d", download=False)
    assert dataset.files == tuple(str(tmp_path / "d" / name) for name in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte"))
    assert data.load_digits().files == (data.DIGITS_SOURCE,)


@pytest.mark.parametrize("stem", ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"])
def test_an_idx_file_with_zero_images_is_a_dataset_error_naming_it(tmp_path, stem):
    write_fake_set(tmp_path)
    labels = stem.replace("images-idx3", "labels-idx1")
    _replace(tmp_path, stem, np.zeros((0, 28, 28), np.uint8))
    _replace(tmp_path, labels, np.zeros(0, np.uint8))
    with pytest.raises(DatasetError, match="holds no images") as info:
        data.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert f"{stem}.gz" in str(info.value)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="digits, mnist, fashion-mnist"):
        data.load_dataset("cifar10")
    with pytest.raises(ValueError, match="mnist, fashion-mnist"):
        data.load_idx_dataset("digits")


# ----------------------------------------------------------------------------- downloading


def test_download_verifies_and_caches(server, monkeypatch, tmp_path, capsys):
    url, hashes, arrays, requests = server
    monkeypatch.setitem(data.MIRRORS, "mnist", (Mirror(url, hashes),))
    dataset = data.load_dataset("mnist", progress=True)
    assert_matches(dataset, arrays)
    cache = tmp_path / "cache" / "fnnet" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s}.gz" for s in data.IDX_FILES)
    assert all(sha256_of(cache / f"{stem}.gz") == hashes[stem] for stem in data.IDX_FILES)
    assert capsys.readouterr().err == ""  # progress bars are drawn on a terminal only
    assert len(requests) == 4
    assert_matches(data.load_dataset("mnist"), arrays)  # now from the cache
    assert len(requests) == 4


def test_download_bad_hash_leaves_nothing(server, tmp_path):
    url, hashes, _, _ = server
    wrong = dict(hashes, **{"t10k-images-idx3-ubyte": "0" * 64})
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError) as info:
        data.download_dataset("mnist", dest, mirrors=[Mirror(url, wrong)], progress=False)
    message = str(info.value)
    assert "SHA-256 mismatch for t10k-images-idx3-ubyte.gz" in message
    assert "expected " + "0" * 64 in message
    served = tmp_path / "served" / "t10k-images-idx3-ubyte.gz"
    assert f"got {sha256_of(served)}" in message
    assert list(dest.iterdir()) == []  # no temporary file, and not the 2 verified files either


def test_download_falls_back_to_the_next_mirror(server, tmp_path):
    url, hashes, _, requests = server
    mirrors = [
        Mirror(closed_port_url(), hashes),  # connection refused
        Mirror(url + "missing/", hashes),  # HTTP 404
        Mirror(url, {}),  # no hash known: skipped without a request
        Mirror(url, hashes),
    ]
    dest = data.download_dataset("mnist", tmp_path / "dest", mirrors=mirrors, progress=False)
    assert data.find_dataset_files("mnist", dest) == dest
    assert len(requests) == 8  # each file: one 404, one success


def test_download_failure_explains_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setitem(
        data.MIRRORS, "mnist", (Mirror(closed_port_url(), dict.fromkeys(data.IDX_FILES, "0")),)
    )
    with pytest.raises(DatasetError) as info:
        data.load_dataset("mnist", progress=False)
    message = str(info.value)
    assert "Downloading failed: could not download train-images-idx3-ubyte.gz" in message
    assert "127.0.0.1" in message
    for directory in data.search_path("mnist"):
        assert str(directory) in message
    assert "apt-get" not in message  # Debian packages Fashion-MNIST only
    cache = tmp_path / "cache" / "fnnet" / "mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_registered_mirrors_are_https_with_a_hash_for_every_file():
    assert set(data.MIRRORS) == set(data.IDX_DATASETS)
    for mirrors in data.MIRRORS.values():
        for mirror in mirrors:
            assert mirror.url.startswith("https://")
            assert set(mirror.sha256) == set(data.IDX_FILES)
            assert all(len(h) == 64 and int(h, 16) >= 0 for h in mirror.sha256.values())


# ----------------------------------------------------------------------------- digits


def test_digits():
    dataset = data.load_dataset("digits")
    assert dataset.name == "digits" and dataset.num_classes == 10
    assert dataset.image_shape == (8, 8)
    assert dataset.x_train.shape == (1437, 64) and dataset.x_test.shape == (360, 64)
    assert len(dataset.t_train) + len(dataset.t_test) == 1797
    for x, t in [(dataset.x_train, dataset.t_train), (dataset.x_test, dataset.t_test)]:
        assert x.dtype == np.float32 and t.dtype == np.int32
        assert x.min() == 0.0 and x.max() == 1.0
        assert set(np.unique(t)) == set(range(10))  # stratified: every class on both sides
    again = data.load_digits()
    for a, b in zip(dataset, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = data.load_digits(seed=1)
    assert not np.array_equal(dataset.t_test, other.t_test)


def test_digits_split_is_a_partition():
    from sklearn.datasets import load_digits

    dataset = data.load_digits(test_fraction=0.5)
    assert len(dataset.x_test) == 899  # ceil(0.5 · 1797)
    split = np.concatenate([dataset.x_train, dataset.x_test]) * 16
    labelled = np.column_stack([split, np.concatenate([dataset.t_train, dataset.t_test])])
    bunch = load_digits()
    whole = np.column_stack([bunch.data, bunch.target])
    # The same multiset of (image, label) rows: nothing lost, duplicated or relabelled.
    np.testing.assert_array_equal(np.unique(labelled, axis=0), np.unique(whole, axis=0))
    np.testing.assert_array_equal(
        np.unique(labelled, axis=0, return_counts=True)[1],
        np.unique(whole, axis=0, return_counts=True)[1],
    )


def test_digits_split_keeps_the_class_proportions_exactly():
    labels = np.concatenate([data.load_digits().t_train, data.load_digits().t_test])
    whole = np.bincount(labels)
    test = np.bincount(data.load_digits().t_test, minlength=10)
    assert test.sum() == 360
    # each class gets floor or ceil of its share of the 360 test places
    share = whole * 360 / whole.sum()
    assert np.all((test == np.floor(share)) | (test == np.ceil(share)))


def test_loading_digits_does_not_import_scikit_learn():
    code = ("import sys; from fnnet.data import load_digits; d = load_digits(); "
            "print(len(d.x_train), 'sklearn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split() == ["1437", "False"]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_digits_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=fraction)


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist():
    dataset = data.load_dataset("fashion-mnist", data_dir=FASHION_DIR, download=False)
    assert dataset.x_train.shape == (60000, 784) and dataset.x_test.shape == (10000, 784)
    assert dataset.x_train.dtype == np.float32 and dataset.t_train.dtype == np.int32
    assert dataset.x_train.min() == 0.0 and dataset.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(dataset.t_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(dataset.t_test), [1000] * 10)
    assert dataset.t_train[0] == 9 and dataset.t_test[0] == 9  # ankle boots


# Debian's dataset-fashion-mnist rewrote the gzip headers (strip-nondeterminism dropped the file
# name and reset the time); the deflate streams are the originals. With the original header put
# back (name, mtime 2017-08-31 10:50 UTC), each file is byte for byte the one the mirrors serve.
_FASHION_ORIGINAL_MTIME = {
    "train-images-idx3-ubyte": 1504176606,
    "train-labels-idx1-ubyte": 1504176606,
    "t10k-images-idx3-ubyte": 1504176627,
    "t10k-labels-idx1-ubyte": 1504176627,
}


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("stem", data.IDX_FILES)
def test_registered_fashion_mnist_hashes_match_the_debian_files(stem):
    debian = (FASHION_DIR / f"{stem}.gz").read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00"  # deflate, no file name
    header = b"\x1f\x8b\x08\x08" + _FASHION_ORIGINAL_MTIME[stem].to_bytes(4, "little")
    original = header + debian[8:10] + stem.encode() + b"\x00" + debian[10:]
    for mirror in data.MIRRORS["fashion-mnist"]:
        assert hashlib.sha256(original).hexdigest() == mirror.sha256[stem]


def test_spiral_is_the_books_generator_seeded():
    from fnnet.data.spiral import spiral_points

    x, t = spiral_points(100, 3, seed=1984)
    assert x.shape == (300, 2) and x.dtype == np.float32 and t.dtype == np.int32
    assert np.bincount(t).tolist() == [100, 100, 100]
    radius = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(radius, np.tile(np.arange(100) / 100, 3), atol=1e-6)
    # without noise each arm j is at angle 4j + 4r: the book's layout
    x0, _ = spiral_points(4, 2, noise=0.0)
    theta = 4.0 * np.repeat([0, 1], 4) + 4.0 * np.tile(np.arange(4) / 4, 2)
    rate = np.tile(np.arange(4) / 4, 2)
    np.testing.assert_allclose(x0, np.stack([rate * np.sin(theta), rate * np.cos(theta)], 1),
                               atol=1e-6)
    again, _ = spiral_points(100, 3, seed=1984)
    np.testing.assert_array_equal(x, again)
    assert not np.array_equal(x, spiral_points(100, 3, seed=1)[0])


def test_spiral_dataset_any_number_of_classes_and_a_fresh_test_draw():
    spiral = data.load_dataset("spiral")
    assert spiral.num_classes == 3 and spiral.x_train.shape == (300, 2)
    assert not np.array_equal(spiral.x_train, spiral.x_test)  # another draw, not a copy
    five = data.load_spiral(20, 5, test_points_per_class=7)
    assert five.num_classes == 5 and five.x_test.shape == (35, 2)
    assert set(five.t_train.tolist()) == set(range(5))
    with pytest.raises(ValueError, match="not images"):
        spiral.as_images()
    with pytest.raises(ValueError, match="classes"):
        data.load_spiral(10, 1)
