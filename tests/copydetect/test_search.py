"""faiss search of unit vectors: the inverted file finds every planted pair the exact search finds, identical
vectors meet threshold 1, chunks and runners give the same pairs, nearest and k-nearest match brute force."""

import numpy as np
import pytest

from curate.copydetect.search import (
    NPROBE,
    build_index,
    ivf_lists,
    knn_edges,
    nearest,
    similar_pairs,
)
from curate.errors import UsageError
from curate.runners import make_runner


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(n: int = 3000, dim: int = 64, pairs: int = 60, similarity: float = 0.85, seed: int = 0):
    """Returns (vectors, planted pairs): n random unit vectors (in 64 dimensions no two reach 0.8), then a copy of
    each of `pairs` chosen ones at cosine `similarity`, and 5 exact duplicates."""
    rng = np.random.default_rng(seed)
    x = unit(rng.normal(size=(n, dim)))
    sources = rng.choice(n, pairs + 5, replace=False)
    noise = rng.normal(size=(pairs, dim))
    noise -= (noise * x[sources[:pairs]]).sum(1, keepdims=True) * x[sources[:pairs]]
    copies = similarity * x[sources[:pairs]] + np.sqrt(1 - similarity**2) * unit(noise)
    vectors = np.concatenate([x, unit(copies), x[sources[pairs:]]])
    return vectors, {(int(s), n + k) for k, s in enumerate(sources)}


def as_set(i, j) -> set:
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_the_inverted_file_finds_every_planted_pair_of_the_exact_search():
    vectors, pairs = planted()
    exact_i, exact_j, exact_s = similar_pairs(vectors, 0.8)
    assert as_set(exact_i, exact_j) == pairs  # nothing else reaches 0.8
    index = build_index(vectors, exact_limit=1000)
    assert index.nlist == ivf_lists(len(vectors)) == 221 and index.nprobe == NPROBE
    i, j, s = similar_pairs(vectors, 0.8, exact_limit=1000)
    assert as_set(i, j) == pairs  # recall 1.0 at the default nprobe
    np.testing.assert_allclose(s, exact_s, atol=1e-6)  # the same exact similarities, in (i, j) order
    assert np.all(i < j) and np.all(np.diff(i * len(vectors) + j) > 0)
    one_probe = as_set(*similar_pairs(vectors, 0.8, exact_limit=1000, nprobe=1)[:2])
    assert one_probe < pairs  # the inverted file is searched, not every vector: one list per query misses some


@pytest.mark.parametrize("exact_limit", [10_000, 10])
def test_identical_vectors_meet_threshold_one(exact_limit):
    rng = np.random.default_rng(1)
    x = unit(rng.normal(size=(200, 48)))
    twin = unit(x[7:8] * 3.0)  # the same direction, normalized again: may differ from x[7] in the last bit
    vectors = np.concatenate([x, twin, x[7:8], x[100:101]])
    i, j, s = similar_pairs(vectors, 1.0, exact_limit=exact_limit)
    assert as_set(i, j) == {(7, 200), (7, 201), (200, 201), (100, 202)}
    assert np.all(s > 1 - 1e-5)


def test_chunks_and_runners_give_the_same_pairs():
    vectors, _ = planted(n=1500, pairs=20)
    expected = similar_pairs(vectors, 0.5, exact_limit=500)
    pool = make_runner("local", workers=2, progress=False)  # two processes: the index travels serialized
    for got in (similar_pairs(vectors, 0.5, exact_limit=500, chunk=97),
                similar_pairs(vectors, 0.5, pool, exact_limit=500, chunk=400)):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    sims, idx = nearest(vectors[:300], vectors[300:], 2, pool, chunk=100)
    same = nearest(vectors[:300], vectors[300:], 2)
    np.testing.assert_array_equal(idx, same[1])
    np.testing.assert_array_equal(sims, same[0])


def test_nearest_and_knn_match_brute_force():
    rng = np.random.default_rng(2)
    queries, base = unit(rng.normal(size=(50, 16))), unit(rng.normal(size=(80, 16)))
    sims, idx = nearest(queries, base, k=3, chunk=7)
    full = queries @ base.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :3])
    np.testing.assert_allclose(sims, -np.sort(-full, axis=1)[:, :3], atol=1e-6)
    empty_sims, empty_idx = nearest(queries, base[:0])
    assert np.all(empty_idx == -1) and np.all(np.isinf(empty_sims))

    x = base
    i, j, s = knn_edges(x, 4)
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    expected = {(min(a, b), max(a, b)) for a in range(len(x)) for b in np.argsort(-full[a])[:4].tolist()}
    assert as_set(i, j) == expected and np.all(i < j)
    np.testing.assert_allclose(s, full[i, j], atol=1e-6)
    assert [len(a) for a in knn_edges(x[:1], 4)] == [0, 0, 0]


def test_too_many_pairs_is_a_usage_error():
    x = unit(np.random.default_rng(3).normal(size=(100, 8)))
    assert len(similar_pairs(x, -1.0)[0]) == 100 * 99 // 2
    with pytest.raises(UsageError, match="makes over 1,000 similar pairs among 100 vectors"):
        similar_pairs(x, -1.0, max_pairs=1000)
