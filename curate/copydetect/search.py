"""Similarity search over L2-normalized float32 vectors with faiss: every pair above a threshold (near duplicates),
each vector's k nearest neighbours (the keep-fraction search), and each query's nearest base vector
(decontamination).

The index: exact inner product (IndexFlatIP) up to EXACT_LIMIT base vectors; past it an inverted file
(IndexIVFFlat, nlist = 4 sqrt(N) lists from faiss's spherical k-means with its fixed seed, at most 256 training
points per list) searched at NPROBE lists per query. Both compare the stored float32 vectors exactly, so every
similarity reported is the true inner product; the inverted file can only miss a pair whose second member lies
in a list the query did not probe (a pair is searched from both of its members, and found when either finds it).

The queries are searched in chunks of CHUNK rows, so memory stays bounded by one chunk's results (and the index).
Given a runner (curate.runners), the chunks are its tasks: each worker process deserializes the index once and
holds one copy of it (N x d float32 plus the lists); the local runner's default single worker searches in this
process with the index as built, no copy. The index is built once, here, so every runner searches the same one
and gets the same results.

A pair is similar when its inner product is >= threshold - TOLERANCE: identical vectors (exact duplicates) meet
any threshold <= 1 despite float rounding.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np

from curate.errors import UsageError

EXACT_LIMIT = 100_000  # base vectors searched exhaustively; past this an inverted file
NPROBE = 32  # inverted lists probed per query
CHUNK = 4096  # query rows per search call
TOLERANCE = 1e-6  # float slack on the threshold, so exact duplicates always count as similar
MAX_PAIRS = 100_000_000  # more similar pairs than this (2 GiB of edges) is a threshold too low to mean "duplicate"

_LOADED: dict[str, Any] = {}  # per worker process: the deserialized index of the search it is running


def ivf_lists(n: int) -> int:
    """Returns the number of inverted lists for n base vectors: round(4 sqrt(n)), at most n."""
    return max(1, min(n, round(4 * math.sqrt(n))))


def build_index(base: np.ndarray, exact_limit: int = EXACT_LIMIT, nprobe: int = NPROBE):
    """Returns a faiss index over the unit rows of `base`: IndexFlatIP up to exact_limit rows, else a trained
    IndexIVFFlat (inner product, ivf_lists(N) lists) probing `nprobe` lists."""
    import faiss

    base = np.ascontiguousarray(base, dtype=np.float32)
    n, dim = base.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.index_factory(dim, f"IVF{ivf_lists(n)},Flat", faiss.METRIC_INNER_PRODUCT)
        faiss.extract_index_ivf(index).cp.spherical = True
        index.train(base)
        index.nprobe = nprobe
    index.add(base)
    return index


class SearchTask:
    """What every chunk of one search shares: the index, the query vectors and the search's parameters (radius,
    k, ...). Pickled (for another process) it carries the index serialized; each process deserializes it once."""

    def __init__(self, index, queries: np.ndarray, **params):
        self.token = uuid.uuid4().hex
        self.index = index
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.params = params

    def __getstate__(self) -> dict:
        import faiss

        return dict(token=self.token, blob=faiss.serialize_index(self.index), queries=self.queries,
                    params=self.params)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.index = None

    def live_index(self):
        """Returns the index: as built in this process, else deserialized once per process."""
        if self.index is not None:
            return self.index
        if self.token not in _LOADED:
            import faiss

            _LOADED.clear()
            blob = self.blob if self.blob.flags.writeable else np.array(self.blob)
            _LOADED[self.token] = faiss.deserialize_index(blob)
        return _LOADED[self.token]


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + chunk)) for start in range(0, n, chunk)]


def _spread(fn, task: SearchTask, chunk: int, runner, desc: str) -> list:
    """Returns [fn(task, (start, end)) for each chunk of the queries], on the runner when one is given."""
    items = _chunks(len(task.queries), chunk)
    if runner is None:
        return [fn(task, item) for item in items]
    return runner.map(fn, task, items, desc=desc)


def _range_chunk(task: SearchTask, item: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | int:
    """Returns (query rows, base rows, similarities) of the chunk's results above the task's radius, or their
    number when that is over the task's limit."""
    start, end = item
    limits, sims, found = task.live_index().range_search(task.queries[start:end], task.params["radius"])
    if len(found) > task.params["limit"]:
        return len(found)
    rows = np.repeat(np.arange(start, end, dtype=np.int64), np.diff(limits).astype(np.int64))
    return rows, found.astype(np.int64), sims.astype(np.float32)


def similar_pairs(vectors: np.ndarray, threshold: float, runner=None, exact_limit: int = EXACT_LIMIT,
                  nprobe: int = NPROBE, chunk: int = CHUNK,
                  max_pairs: int = MAX_PAIRS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (rows_i, rows_j, sims): every pair i < j of the unit rows of `vectors` whose inner product is
    >= threshold - TOLERANCE, sorted by (i, j), each with its float32 similarity. Raises UsageError when there
    are more than `max_pairs` of them."""
    n = len(vectors)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    # faiss keeps a result when its similarity is > radius; nextafter makes that >= threshold - TOLERANCE.
    radius = float(np.nextafter(np.float32(threshold - TOLERANCE), np.float32(-np.inf)))
    task = SearchTask(build_index(vectors, exact_limit, nprobe), vectors, radius=radius, limit=2 * max_pairs)
    parts = _spread(_range_chunk, task, chunk, runner, "similar pairs")
    found = sum(p if isinstance(p, int) else len(p[0]) for p in parts)  # each pair twice: from both members
    if found > 2 * max_pairs:
        raise UsageError(f"--threshold {threshold} makes over {max_pairs:,} similar pairs among {n:,} vectors: "
                         "that is not near-duplication; raise the threshold")
    return unique_pairs(n, *(np.concatenate(c) for c in zip(*parts, strict=True)))


def unique_pairs(n: int, rows: np.ndarray, found: np.ndarray,
                  sims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns the pairs (i < j) of the directed results, each once (found from either member), sorted."""
    valid = (found >= 0) & (found != rows)
    i, j = np.minimum(rows, found)[valid], np.maximum(rows, found)[valid]
    keys, first = np.unique(i * n + j, return_index=True)
    return keys // n, keys % n, sims[valid][first]


def _knn_chunk(task: SearchTask, item: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Returns (similarities, base rows) of the chunk's task.k nearest base vectors (-1 rows where fewer)."""
    start, end = item
    sims, found = task.live_index().search(task.queries[start:end], task.params["k"])
    return sims.astype(np.float32), found.astype(np.int64)


def nearest(queries: np.ndarray, base: np.ndarray, k: int = 1, runner=None, exact_limit: int = EXACT_LIMIT,
            nprobe: int = NPROBE, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Returns (sims, idx), float32 and int64 arrays of len(queries) x k: each query's k nearest rows of `base`
    by inner product, best first (idx -1 and sim -inf where the index finds fewer than k)."""
    k = max(1, k)
    if len(queries) == 0 or len(base) == 0:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    task = SearchTask(build_index(base, exact_limit, nprobe), queries, k=k)
    parts = _spread(_knn_chunk, task, chunk, runner, "nearest")
    sims, idx = (np.concatenate(c) for c in zip(*parts, strict=True))
    return np.where(idx >= 0, sims, -np.inf).astype(np.float32), idx


def knn_edges(vectors: np.ndarray, k: int, runner=None, exact_limit: int = EXACT_LIMIT, nprobe: int = NPROBE,
              chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (rows_i, rows_j, sims): the edges i < j between each unit row of `vectors` and its k nearest other
    rows, each edge once, sorted by (i, j)."""
    n = len(vectors)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    sims, found = nearest(vectors, vectors, min(n, k + 1), runner, exact_limit, nprobe, chunk)
    rows = np.repeat(np.arange(n, dtype=np.int64), found.shape[1])
    return unique_pairs(n, rows, found.reshape(-1), sims.reshape(-1))
