"""Finding similar pairs among unit vectors with faiss: every pair above a cosine threshold (near duplicates),
each vector's k nearest neighbours (for a keep fraction), and each query's nearest base vector (decontamination).

Up to EXACT_LIMIT vectors the search is exact (IndexFlatIP); past it, an inverted-file index (IndexIVFFlat with
4 x sqrt(N) lists, IVF_NPROBE of them visited per query), whose pairs are those an exact search finds except the
few whose two vectors fall in lists far apart. Queries go in chunks of CHUNK rows, so memory stays bounded by the
index plus one chunk's results.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_LIMIT = 200_000
IVF_NPROBE = 16
CHUNK = 8192
TOLERANCE = 1e-5  # float32 inner products of identical unit vectors can land a hair under 1


def build_index(vectors: np.ndarray, exact_limit: int = EXACT_LIMIT, seed: int = 0):
    """Returns a faiss inner-product index holding `vectors` (float32 unit rows): exact up to `exact_limit` rows,
    IVF past it (its quantizer trained on the vectors with `seed`)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(4 * math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = np.random.default_rng(seed).choice(n, size=min(n, lists * 64), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = IVF_NPROBE
    index.add(vectors)
    return index


def similar_pairs(vectors: np.ndarray, threshold: float, exact_limit: int = EXACT_LIMIT) -> tuple[np.ndarray, ...]:
    """Returns (rows i, rows j, similarities) of every pair i < j whose inner product is >= threshold."""
    index = build_index(vectors, exact_limit)
    found_i, found_j, found_s = [], [], []
    for start in range(0, len(vectors), CHUNK):
        queries = np.ascontiguousarray(vectors[start:start + CHUNK], dtype=np.float32)
        lims, sims, ids = index.range_search(queries, float(threshold) - TOLERANCE)
        rows = np.repeat(np.arange(start, start + len(queries)), np.diff(lims).astype(np.int64))
        later = ids > rows
        found_i.append(rows[later])
        found_j.append(ids[later])
        found_s.append(sims[later])
    return _joined(found_i, np.int64), _joined(found_j, np.int64), _joined(found_s, np.float32)


def knn_pairs(vectors: np.ndarray, k: int, exact_limit: int = EXACT_LIMIT) -> tuple[np.ndarray, ...]:
    """Returns (rows i, rows j, similarities) of each vector's k nearest other vectors, as pairs i < j without
    repeats."""
    index = build_index(vectors, exact_limit)
    found_i, found_j, found_s = [], [], []
    for start in range(0, len(vectors), CHUNK):
        queries = np.ascontiguousarray(vectors[start:start + CHUNK], dtype=np.float32)
        sims, ids = index.search(queries, min(k + 1, len(vectors)))
        rows = np.broadcast_to(np.arange(start, start + len(queries))[:, None], ids.shape)
        valid = (ids >= 0) & (ids != rows)
        found_i.append(np.minimum(rows, ids)[valid])
        found_j.append(np.maximum(rows, ids)[valid])
        found_s.append(sims[valid])
    i, j, s = _joined(found_i, np.int64), _joined(found_j, np.int64), _joined(found_s, np.float32)
    _, first = np.unique(i * len(vectors) + j, return_index=True)
    return i[first], j[first], s[first]


def nearest(queries: np.ndarray, base: np.ndarray, exact_limit: int = EXACT_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """Returns (similarity, row in `base`) of each query's nearest base vector (-inf and -1 for an empty base)."""
    if len(base) == 0:
        return np.full(len(queries), -np.inf, np.float32), np.full(len(queries), -1, np.int64)
    index = build_index(base, exact_limit)
    sims, ids = [], []
    for start in range(0, len(queries), CHUNK):
        s, i = index.search(np.ascontiguousarray(queries[start:start + CHUNK], dtype=np.float32), 1)
        sims.append(s[:, 0])
        ids.append(i[:, 0])
    return _joined(sims, np.float32), _joined(ids, np.int64)


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
