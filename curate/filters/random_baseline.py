"""A random baseline (DataComp's): keep a seeded random fraction of the embedded pool, to compare a curated
subset against a random one of the same size.

random_score is a uniform number in [0, 1) drawn from a hash of the sample's uid and the seed, so a sample's
draw does not depend on the order or the size of the pool; random_keep applies DataComp's fraction rule to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.options import option
from curate.stages.threshold import ThresholdMethod


def uid_draws(uids: list[str], seed: int) -> np.ndarray:
    """Returns one uniform float64 in [0, 1) per uid, a function of (uid, seed) alone."""
    key = seed.to_bytes(8, "little", signed=True)
    words = [int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8, key=key).digest(), "little") for u in uids]
    return np.array(words, dtype=np.uint64) / np.float64(2**64)


@dataclass(frozen=True, kw_only=True)
class RandomBaseline(ThresholdMethod):
    """A seeded random subset of the embedded pool."""

    name = "random"
    columns = ("random_score", "random_keep")
    hint = "curate filter random RUN --keep-fraction F"

    keep_fraction: float = option(help="keep this fraction of the whole embedded pool")
    seed: int = option(0, "seed of the draw")

    def file_scores(self, path: str) -> tuple[pa.Array, np.ndarray]:
        """Returns the uids of one embedding file and their draws."""
        uids = pq.read_table(path, columns=["uid"])["uid"]
        return uids, uid_draws(uids.to_pylist(), self.seed)
