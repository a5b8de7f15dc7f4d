"""The IDX file format of MNIST-like datasets: :func:`read_idx` and its inverse
:func:`write_idx` (each file gzipped when its name ends in ``.gz``)."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from fnnet.data.dataset import DatasetError

# IDX type codes (third byte of the magic number) and their big-endian NumPy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped when ``path`` ends in ``.gz``) into a native-endian array.

    Layout: 2 zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions ``d``, then ``d`` big-endian uint32
    sizes, then exactly ``prod(sizes)`` big-endian items.

    Raises:
        DatasetError: naming the file, if it cannot be read or decompressed, or if its header
            or length does not match the layout above.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX type code 0x{code:02x}")
    header_len = 4 + 4 * ndim
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares 0 dimensions")
    if len(raw) < header_len:
        raise DatasetError(f"{path}: IDX header truncated ({len(raw)} of {header_len} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = header_len + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: IDX dimensions {shape} of {dtype.newbyteorder('=')} need {expected} bytes; "
            f"the file has {len(raw)} (truncated or corrupt)"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    ``array`` needs 1–255 dimensions and a dtype among uint8, int8, int16, int32, float32,
    float64. The inverse of :func:`read_idx`.
    """
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("=")
    if dtype not in _IDX_CODES:
        raise TypeError(
            f"write_idx: array dtype must be one of uint8, int8, int16, int32, float32, "
            f"float64; got {array.dtype}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: array must have 1 to 255 dimensions; got {array.ndim}")
    header = bytes([0, 0, _IDX_CODES[dtype], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(_IDX_DTYPES[_IDX_CODES[dtype]]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":  # no name, no time in the header: the same array, the same bytes
        with open(path, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as file:
            file.write(payload)
    else:
        path.write_bytes(payload)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is a ``.gz``; any failure as a DatasetError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                return file.read()
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DatasetError(f"{path}: corrupt or truncated gzip file ({error})") from error
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
