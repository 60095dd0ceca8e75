"""Exact order statistics of a float column spread over Parquet files, without gathering the column anywhere.

A radix selection on the float bits: each value maps to an unsigned integer key in the same order (32 bits for
float32, 64 for float64), tasks count 16 bits of the keys per file, highest first, among the keys that share the
bits already chosen, and the driver follows the bin holding rank k down: two passes over the files for float32,
four for float64, and the driver holds one 65,536-bin histogram at a time whatever N is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from curate.runners import Runner

DIGIT = 16
BINS = 1 << DIGIT
KEY_TYPES = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Returns unsigned keys ordered as the float32 or float64 values are (negatives' bits flipped, positives' sign
    bit set)."""
    unsigned = KEY_TYPES[values.dtype]
    bits = np.ascontiguousarray(values).view(unsigned)
    sign = unsigned(1) << unsigned(8 * values.itemsize - 1)
    return np.where(bits & sign, ~bits, bits | sign)


def key_value(key: int, dtype: np.dtype) -> float:
    """Returns the float value (of `dtype`) of a key made by sortable_keys."""
    width = 8 * np.dtype(dtype).itemsize
    sign = 1 << (width - 1)
    bits = key & (sign - 1) if key & sign else ~key & ((1 << width) - 1)
    return float(np.array([bits], dtype=KEY_TYPES[np.dtype(dtype)]).view(dtype)[0])


def _file_keys(column: str, path: str) -> np.ndarray:
    values = pq.read_table(path, columns=[column])[column].to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.float64 if values.dtype == np.float64 else np.float32)  # a null is NaN
    return sortable_keys(values[~np.isnan(values)])


def _histogram(shared: tuple, path: str) -> np.ndarray:
    """Returns the counts of a file's keys by the 16 bits below `shift`, among keys whose bits above are `prefix`."""
    column, prefix, shift = shared
    keys = _file_keys(column, path).astype(np.uint64)
    if prefix is not None:
        keys = keys[(keys >> np.uint64(shift + DIGIT)) == np.uint64(prefix)]
    return np.bincount(((keys >> np.uint64(shift)) & np.uint64(BINS - 1)).astype(np.int64), minlength=BINS)


class ColumnRanks:
    """The values of one float column over Parquet files (nulls and NaN left out), ranked without gathering them."""

    def __init__(self, runner: Runner, files: Sequence, column: str):
        self.runner, self.files, self.column = runner, [str(f) for f in files], column
        kind = pq.read_schema(self.files[0]).field(column).type.to_pandas_dtype() if self.files else np.float32
        self.dtype = np.dtype(np.float64 if np.dtype(kind) == np.float64 else np.float32)
        self.width = 8 * self.dtype.itemsize
        self.top = self._counts(None, self.width - DIGIT)

    def _counts(self, prefix: int | None, shift: int) -> np.ndarray:
        counts = np.zeros(BINS, np.int64)
        for part in self.runner.each(_histogram, (self.column, prefix, shift), self.files, desc=f"rank {self.column}"):
            counts += part
        return counts

    def __len__(self) -> int:
        """Returns how many values there are."""
        return int(self.top.sum())

    def kth_smallest(self, k: int) -> float:
        """Returns the k-th smallest value (k from 1); raises IndexError when k is outside 1..len(self)."""
        if not 1 <= k <= len(self):
            raise IndexError(f"rank {k} of {len(self)} values")
        counts, prefix, shift = self.top, 0, self.width - DIGIT
        while True:
            cumulative = np.cumsum(counts)
            digit = int(np.searchsorted(cumulative, k))
            k -= int(cumulative[digit - 1]) if digit else 0
            prefix = (prefix << DIGIT) | digit
            if shift == 0:
                return key_value(prefix, self.dtype)
            shift -= DIGIT
            counts = self._counts(prefix, shift)
