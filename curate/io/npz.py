"""Rows of the arrays in an untrusted .npz (a zip of .npy files) without loading the archive: a task reads the
rows it needs, by byte range where the member is stored uncompressed (as np.savez writes it), else by streaming
through the compressed member. Nothing is unpickled: an array of Python objects is refused, as is anything that is
not a plain 2-D numeric array."""

from __future__ import annotations

import contextlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy

LOCAL_HEADER = b"PK\x03\x04"
LOCAL_HEADER_BYTES = 30  # the fixed part of a zip local file header; the name and extra field follow
NUMERIC_KINDS = "fiu"
HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
# What zipfile, zlib and numpy's header parser raise on a damaged or hostile archive.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, SyntaxError, TypeError,
               NotImplementedError, RuntimeError, struct.error)


class NpzError(ValueError):
    """An .npz that can't be read as asked; its message says why, in one line."""


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turns any error of reading a damaged archive into an NpzError naming `what` was being read."""
    try:
        yield
    except NpzError:
        raise
    except READ_ERRORS as exc:
        raise NpzError(f"{what} can't be read ({type(exc).__name__}: {exc})".replace("\n", " ")) from None


def npz_shapes(f: BinaryIO) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Returns each array of the .npz open in `f` (seekable, binary) by name (without .npy): its shape and dtype,
    from the .npy headers alone (whatever the dtype: npz_rows refuses what isn't numbers); raises NpzError for a file
    that is not an .npz or a member whose header can't be read."""
    shapes = {}
    with _reading("the .npz"), zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                with _reading(info.filename), archive.open(info) as member:
                    shapes[info.filename[:-4]] = _header(member)
    return shapes


def npz_rows(f: BinaryIO, name: str, start: int, stop: int) -> np.ndarray:
    """Returns rows [start, stop) of the 2-D array `name` of the .npz open in `f` (seekable, binary), in its stored
    dtype; raises NpzError when it is missing, not a 2-D numeric array, shorter than `stop` rows or damaged (a
    whole array is checked against its CRC; a range of a stored one is read as is)."""
    with _reading("the .npz"), zipfile.ZipFile(f) as archive:
        if f"{name}.npy" not in archive.namelist():
            raise NpzError(f"no array {name!r}")
        info = archive.getinfo(f"{name}.npy")
        with _reading(name), archive.open(info) as member:
            shape, dtype = _header(member)
            if dtype.hasobject or dtype.kind not in NUMERIC_KINDS:
                raise NpzError(f"{name} has dtype {dtype}: not numbers (Python objects are never unpickled)")
            if len(shape) != 2 or not 0 <= start <= stop <= shape[0]:
                raise NpzError(f"{name} has shape {shape}: rows {start}..{stop} are not in it")
            header_bytes, row_bytes = member.tell(), shape[1] * dtype.itemsize
            size = (stop - start) * row_bytes
            if info.file_size < header_bytes + stop * row_bytes:
                raise NpzError(f"{name} is truncated: {shape[0]} rows declared, {info.file_size} bytes stored")
            if info.compress_type == zipfile.ZIP_STORED and (start, stop) != (0, shape[0]):  # a byte range
                f.seek(_data_offset(f, info) + header_bytes + start * row_bytes)
                data = f.read(size)
            else:  # streams through the rows before; reading to the end checks the member's CRC
                member.seek(header_bytes + start * row_bytes)
                data = member.read(size)
                if stop == shape[0]:
                    member.read()
    if len(data) != size:
        raise NpzError(f"{name} is truncated: rows {start}..{stop} need {size} bytes, {len(data)} are there")
    return np.frombuffer(data, dtype).reshape(stop - start, shape[1])


def _header(stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Returns (shape, dtype) from a .npy header, the stream left at the array's first byte."""
    version = npy.read_magic(stream)
    if version not in HEADER_READERS:
        raise NpzError(f"unsupported .npy version {version}")
    shape, fortran_order, dtype = HEADER_READERS[version](stream)
    if fortran_order and len(shape) > 1:
        raise NpzError("a Fortran-ordered array (rows not contiguous)")
    return shape, dtype


def _data_offset(f: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Returns where a stored member's bytes begin in the file: after its local header, name and extra field."""
    f.seek(info.header_offset)
    header = f.read(LOCAL_HEADER_BYTES)
    if len(header) != LOCAL_HEADER_BYTES or header[:4] != LOCAL_HEADER:
        raise NpzError(f"{info.filename}: no zip local header at offset {info.header_offset}")
    name_bytes, extra_bytes = struct.unpack("<HH", header[26:30])
    return info.header_offset + LOCAL_HEADER_BYTES + name_bytes + extra_bytes
