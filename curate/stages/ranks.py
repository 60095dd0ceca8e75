"""Exact order statistics of a float column spread over Parquet files, without gathering the column anywhere.

A radix selection on the float32 bits: each value maps to an unsigned 32-bit key in the same order, tasks count the
keys' high 16 bits per file, the driver finds the bin holding rank k, and a second round counts the low 16 bits
within that bin. Two passes over the files, and the driver holds two 65,536-bin histograms whatever N is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from curate.runners import Runner

BINS = 1 << 16


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Returns uint32 keys ordered as the float32 values are (negative values' bits flipped, positives' sign set)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))


def key_value(key: int) -> float:
    """Returns the float32 value of a key made by sortable_keys."""
    bits = key & 0x7FFFFFFF if key & 0x80000000 else ~key & 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def _file_keys(column: str, path: str) -> np.ndarray:
    values = pq.read_table(path, columns=[column])[column].to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.float32)  # a null reads as NaN
    return sortable_keys(values[~np.isnan(values)])


def _histogram(shared: tuple, path: str) -> np.ndarray:
    """Returns the counts of a file's keys by high 16 bits, or by low 16 bits among those with high bits `prefix`."""
    column, prefix = shared
    keys = _file_keys(column, path)
    if prefix is None:
        return np.bincount(keys >> 16, minlength=BINS)
    return np.bincount(keys[(keys >> 16) == prefix] & 0xFFFF, minlength=BINS)


class ColumnRanks:
    """The values of one float column over Parquet files (nulls and NaN left out), ranked without gathering them."""

    def __init__(self, runner: Runner, files: Sequence, column: str):
        self.runner, self.files, self.column = runner, [str(f) for f in files], column
        self.high = self._counts(None)

    def _counts(self, prefix: int | None) -> np.ndarray:
        parts = self.runner.map(_histogram, (self.column, prefix), self.files, desc=f"rank {self.column}")
        return np.sum(parts, axis=0) if parts else np.zeros(BINS, np.int64)

    def __len__(self) -> int:
        """Returns how many values there are."""
        return int(self.high.sum())

    def kth_smallest(self, k: int) -> float:
        """Returns the k-th smallest value (k from 1); raises IndexError when k is outside 1..len(self)."""
        if not 1 <= k <= len(self):
            raise IndexError(f"rank {k} of {len(self)} values")
        cumulative = np.cumsum(self.high)
        top = int(np.searchsorted(cumulative, k))
        below = int(cumulative[top - 1]) if top else 0
        low = int(np.searchsorted(np.cumsum(self._counts(top)), k - below))
        return key_value((top << 16) | low)
