"""SemDeDup's rule on hand-built clusters: order, the non-transitive removal, blocking, eps from a fraction."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.concepts.members import cluster_members
from curate.concepts.similarity import (
    cluster_similarities,
    earlier_max_similarity,
    eps_for_fraction,
    gather_scores,
)
from curate.errors import UsageError
from curate.runners import make_runner
from curate.stages.ranks import ColumnRanks


def unit(degrees: float) -> list[float]:
    return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees)), 0.0]


def test_chain_removes_both_later_members_not_a_closure():
    # A-B and B-C are 10 degrees apart (cos 0.985), A-C 20 degrees (cos 0.940); threshold 1 - eps = 0.95.
    x = np.array([unit(0), unit(10), unit(20)], np.float32)
    best, which = earlier_max_similarity(x)
    assert np.isnan(best[0]) and which.tolist() == [-1, 0, 1]
    np.testing.assert_allclose(best[1:], [np.cos(np.radians(10))] * 2, rtol=1e-6)
    scores = gather_scores(3, [np.arange(3)], [(best, which)])
    assert scores.keep(0.05).tolist() == [True, False, False]  # C goes although its only near neighbour B goes too
    assert scores.keep(0.01).tolist() == [True, True, True]


def test_hard_order_keeps_the_member_farthest_from_the_centroid():
    # Two exact duplicates and one distinct member in one cluster; the duplicate pair differs only in distance.
    distance = np.array([0.10, 0.30, 0.20], np.float32)
    members = cluster_members(np.zeros(3, np.int32), distance, "hard", seed=0)
    assert members[0].tolist() == [1, 2, 0]
    assert cluster_members(np.zeros(3, np.int32), distance, "easy", seed=0)[0].tolist() == [0, 2, 1]
    shuffled = cluster_members(np.zeros(3, np.int32), distance, "random", seed=0)[0]
    assert sorted(shuffled.tolist()) == [0, 1, 2]
    assert cluster_members(np.zeros(3, np.int32), distance, "random", seed=0)[0].tolist() == shuffled.tolist()
    x = np.array([unit(0), unit(0), unit(60)], np.float32)  # rows 0 and 1 are duplicates
    scores = gather_scores(3, members, cluster_similarities(x, members))
    assert scores.keep(0.01).tolist() == [False, True, True]  # row 1 (farther) is kept, row 0 duplicates it
    assert scores.earlier_row.tolist() == [1, -1, 1]


def test_each_cluster_is_separate_and_singletons_stay():
    x = np.array([unit(0), unit(0), unit(0)], np.float32)
    assignment = np.array([0, 1, 0], np.int32)  # row 1 is alone in its cluster although it equals the others
    members = cluster_members(assignment, np.zeros(3, np.float32), "hard", seed=0)
    scores = gather_scores(3, members, cluster_similarities(x, members))
    assert scores.keep(0.001).tolist() == [True, True, False]
    assert np.isnan(scores.max_similarity[1])


@pytest.mark.parametrize("block_entries", [1, 7, 64, 1 << 20])
def test_blocks_agree_with_the_full_matrix(block_entries):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x[[7, 23, 41]] = x[3]  # planted exact duplicates across block edges
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    best, which = earlier_max_similarity(x, block_entries)
    full = x @ x.T
    for j in range(1, 50):
        assert which[j] == int(np.argmax(full[j, :j]))
        assert best[j] == pytest.approx(full[j, :j].max(), abs=1e-6)
    assert which[[7, 23, 41]].tolist() == [3, 3, 3]


def test_eps_for_fraction_keeps_the_asked_share_exactly(tmp_path):
    rng = np.random.default_rng(1)
    sims = rng.uniform(0.5, 1.0, 100).astype(np.float32)
    sims[[0, 50]] = np.nan  # two clusters' first members: always kept
    sims[[10, 11, 12]] = sims[9]  # ties
    files = []
    for i, part in enumerate(np.array_split(sims, 3)):  # the scores of three buckets, nulls for first members
        files.append(tmp_path / f"{i}.parquet")
        pq.write_table(pa.table({"sim": pa.array(part, mask=np.isnan(part))}), files[-1])
    ranks = ColumnRanks(make_runner("local", progress=False), files, "sim")
    for fraction in (0.02, 0.1, 0.37, 0.5, 1.0):
        eps = eps_for_fraction(100, ranks, fraction)
        kept = ~(sims > np.float32(1 - eps))
        assert kept.sum() == int(100 * fraction) or (fraction == 0.1 and kept.sum() == 12)
    with pytest.raises(UsageError, match="fewer than the 2 clusters"):
        eps_for_fraction(100, ranks, 0.01)
    with pytest.raises(UsageError, match="keep-fraction"):
        eps_for_fraction(100, ranks, 0)
