"""SSCD's score normalization (Pizzi et al. 2022, eq. 8), with the pool as its background set, one-sided.

A copy descriptor's similarity means more in some places than in others: a sample in a dense part of the pool
(many renderings of one scene) is close to many images it is not a copy of, so a fixed threshold removes it
falsely. SSCD subtracts from a query's similarities its mean similarity to its nearest images in a background set
that holds no copies of it (its default: weight 1, the 1st to 3rd neighbours). Here the background is the pool
itself, each sample's own copies skipped (pool samples at or above the copy threshold), so an image present
several times in the pool does not hide behind its siblings; and only the excess of that background over the
pool's median is subtracted. One-sided, a score is never above the raw similarity: the threshold keeps the raw
similarity's scale, only samples with a raw similarity at the threshold need their background (one nearest-
neighbour search of those, not of the pool), and an identical image stays a copy wherever it lies. On the
benchmarks' pools the one-sided form finds what the two-sided one does (benchmarks/README.md, copy detection).
"""

from __future__ import annotations

import numpy as np

from curate.copydetect.search import TOLERANCE, nearest

SCORE_NORMS = ("pool", "none")  # the --score-norm choices: normalized with the pool as background, or raw
NEIGHBOURS = 3  # SSCD's default: the mean of the 1st to 3rd nearest background similarities
CANDIDATES = 32  # nearest pool samples searched per sample for those neighbours, its copies skipped
MEDIAN_SAMPLE = 10_000  # pool samples whose background gives the median (a seeded draw past this many)


class VectorNeighbours:
    """The pool as vectors in memory, searched with faiss (curate.copydetect.search) on `runner`'s workers."""

    def __init__(self, vectors: np.ndarray, runner=None):
        self.vectors, self.runner = vectors, runner

    def __len__(self) -> int:
        """Returns the number of pool rows."""
        return len(self.vectors)

    def nearest(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (sims, found), len(rows) x k: each row's k nearest pool rows, best first."""
        return nearest(self.vectors[rows], self.vectors, k, self.runner)


def _neighbours(pool, runner):
    """Returns `pool` as a neighbour search: itself when it is one (e.g. curate.stages.filesearch's), else its
    vectors in memory."""
    return VectorNeighbours(pool, runner) if isinstance(pool, np.ndarray) else pool


def background_similarity(pool, rows: np.ndarray, copy_level: float, runner=None) -> np.ndarray:
    """Returns, for each of `rows` of the pool (unit vectors, or a neighbour search over them), the mean similarity
    to its NEIGHBOURS nearest other rows that are not its copies (similarity < copy_level) among its CANDIDATES
    nearest; NaN where there is none."""
    pool, rows = _neighbours(pool, runner), np.asarray(rows, dtype=np.int64)
    if len(rows) == 0 or len(pool) < 2:
        return np.full(len(rows), np.nan)
    sims, found = pool.nearest(rows, min(len(pool), CANDIDATES + 1))
    usable = (found >= 0) & (found != rows[:, None]) & (sims < np.float32(copy_level - TOLERANCE))
    taken = usable & (np.cumsum(usable, axis=1) <= NEIGHBOURS)
    count = taken.sum(axis=1)
    total = np.where(taken, sims, 0).sum(axis=1, dtype=np.float64)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def background_excess(pool, rows: np.ndarray, copy_level: float, runner=None) -> np.ndarray:
    """Returns, for each of `rows`, how far its background similarity is above the pool's median one (0 where it
    is below or unknown): what normalization subtracts from that sample's similarities."""
    pool, rows = _neighbours(pool, runner), np.asarray(rows, dtype=np.int64)
    n = len(pool)
    if len(rows) == 0:
        return np.zeros(0)
    sample = np.arange(n) if n <= MEDIAN_SAMPLE else np.sort(
        np.random.default_rng(0).choice(n, MEDIAN_SAMPLE, replace=False))
    # rows the median's sample already covers (all of them up to MEDIAN_SAMPLE) are not searched again
    position = np.minimum(np.searchsorted(sample, rows), len(sample) - 1)
    sampled = sample[position] == rows
    searched = np.concatenate([sample, rows[~sampled]])
    found = background_similarity(pool, searched, copy_level)
    typical = found[:len(sample)]
    if not np.isfinite(typical).any():
        return np.zeros(len(rows))
    background = np.empty(len(rows))
    background[sampled] = typical[position[sampled]]
    background[~sampled] = found[len(sample):]
    return np.nan_to_num(np.maximum(background - np.median(typical[np.isfinite(typical)]), 0), nan=0.0)


def normalized(sims: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """Returns float32 `sims` less `excess`, except that identical images (similarity 1) keep their 1."""
    return np.where(sims >= np.float32(1 - TOLERANCE), sims, sims - excess).astype(np.float32)
