"""How much one task of a whole-pool stage may hold: the byte budget of a bucket (a file of vectors that one task
reads whole), shared by the k-means partition and the inverted lists of the near-duplicate search."""

from __future__ import annotations

import os

from curate.errors import UsageError

BUCKET_BYTES_VARIABLE = "CURATE_PARTITION_BYTES"
DEFAULT_BUCKET_BYTES = 256 << 20  # a task holds about 3x its bucket's vectors (read, sorted or in float32)
MIN_BUCKETS = 16  # so that a pool spreads over the workers...
MIN_BUCKET_BYTES = 16 << 20  # ...unless it is small: a pool under 16 MiB of vectors is one bucket


def bucket_bytes() -> int:
    """Returns the most bytes of vectors one bucket (one task's input) may hold: $CURATE_PARTITION_BYTES or 256 MiB."""
    value = os.environ.get(BUCKET_BYTES_VARIABLE, "")
    if not value:
        return DEFAULT_BUCKET_BYTES
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{BUCKET_BYTES_VARIABLE} must be a positive number of bytes, got {value!r}")
    return int(value)


def bucket_target(total_bytes: float) -> int:
    """Returns the bytes to fill a bucket with, of a pool holding `total_bytes`: the smaller of 4/5 of the budget
    (sizes may be estimates) and 1/MIN_BUCKETS of the pool (at least MIN_BUCKET_BYTES)."""
    return min(bucket_bytes() * 4 // 5, max(MIN_BUCKET_BYTES, int(total_bytes) // MIN_BUCKETS))
