"""The .npz row reader on generated archives, good and hostile: it returns exactly the rows np.load gives, or
raises NpzError with a reason; never another exception, never a pickled object."""

import io
import zipfile
import zlib

import numpy as np
import pytest

from curate.io.npz import NpzError, npz_rows, npz_shapes

CASES = 150
DTYPES = (np.float16, np.float32, np.float64, np.int8, np.uint16, bool, "U3", object, np.complex64)


def archive(rng: np.random.Generator) -> tuple[bytes, dict, bool]:
    """Returns the bytes of a generated .npz (stored or compressed, arrays of varied dtypes and shapes, sometimes
    truncated or with flipped bytes), the arrays written to it and whether it was damaged."""
    arrays = {}
    for name in rng.choice(["l14_img", "l14_txt", "b32_img", "other"], rng.integers(1, 4), replace=False):
        shape = [(int(rng.integers(0, 7)), int(rng.integers(1, 5))), (int(rng.integers(0, 7)),), (2, 2, 2)][
            rng.choice(3, p=[0.8, 0.1, 0.1])]
        dtype = DTYPES[rng.integers(len(DTYPES))]
        values = rng.normal(size=shape) * 10
        arrays[str(name)] = np.array([{"x": 1}] * int(np.prod(shape)), dtype=object).reshape(shape) \
            if dtype is object else values.astype(dtype)
    buffer = io.BytesIO()
    (np.savez_compressed if rng.random() < 0.4 else np.savez)(buffer, **arrays)
    data = bytearray(buffer.getvalue())
    damage = rng.random()
    if damage < 0.15:
        data = data[: rng.integers(0, len(data))]
    elif damage < 0.3:
        for position in rng.integers(0, len(data), rng.integers(1, 6)):
            data[position] ^= 0xFF
    return bytes(data), arrays, damage < 0.3


def expected_rows(data: bytes, name: str, start: int, stop: int):
    """Returns np.load's rows of the array (allow_pickle=False), or None where the reader must refuse."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
            array = loaded[name]
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError, zlib.error):
        return None
    if array.ndim != 2 or array.dtype.kind not in "fiu" or not 0 <= start <= stop <= len(array):
        return None
    return array[start:stop]


@pytest.mark.parametrize("seed", range(CASES))
def test_rows_match_numpy_or_the_file_is_refused_with_a_reason(seed):
    rng = np.random.default_rng(seed)
    data, arrays, damaged = archive(rng)
    name = str(rng.choice([*arrays, "missing"]))
    length = len(arrays.get(name, ()))
    start = int(rng.integers(0, length + 2))
    stop = int(rng.integers(start, length + 3))
    expected = expected_rows(data, name, start, stop)
    try:
        shapes = npz_shapes(io.BytesIO(data))
        got = npz_rows(io.BytesIO(data), name, start, stop)
    except NpzError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert expected is None or damaged, f"refused rows numpy reads: {exc}"
        return
    assert got.shape == (stop - start, arrays[name].shape[1]) and got.dtype.kind in "fiu"
    if not damaged:  # a damaged stored member's range is read without its checksum: only its shape is known
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype and shapes[name][0][0] == length


def test_a_whole_array_is_checked_against_its_checksum():
    buffer = io.BytesIO()
    array = np.arange(6000, dtype=np.float32).reshape(2000, 3)  # larger than zipfile's read-ahead
    np.savez(buffer, l14_img=array)
    data = bytearray(buffer.getvalue())
    data[data.rindex(np.float32(5999).tobytes())] ^= 0xFF  # the last value's first byte
    with pytest.raises(NpzError, match=r"l14_img can.t be read \(BadZipFile: Bad CRC-32"):
        npz_rows(io.BytesIO(bytes(data)), "l14_img", 0, 2000)
    np.testing.assert_array_equal(npz_rows(io.BytesIO(bytes(data)), "l14_img", 1, 3), array[1:3])
