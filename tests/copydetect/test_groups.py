"""Duplicate groups: transitive components numbered in pool order, the kept member by rank, the threshold that
leaves a given number of groups (checked against a plain Kruskal), and the --keep rules on a real catalog."""

import numpy as np
import pyarrow as pa
import pytest

from curate.copydetect.groups import (
    components,
    duplicate_groups,
    keep_rank,
    parse_keep,
    threshold_for_count,
)
from curate.errors import UsageError
from curate.stages.embeddings import load_embeddings
from tests.shards import planted_datacomp_run


def test_components_are_transitive_and_numbered_by_first_row():
    labels = components(7, np.array([5, 1, 2]), np.array([6, 4, 4]))  # 1-4-2 a chain, 5-6 a pair
    assert labels.tolist() == [0, 1, 1, 2, 1, 3, 3]
    assert components(0, np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == []


def test_each_group_keeps_its_lowest_rank():
    rank = np.array([0, 5, 1, 9, 3, 2, 4])
    groups = duplicate_groups(7, np.array([5, 1, 2]), np.array([6, 4, 4]), rank)
    assert groups.group.tolist() == [-1, 0, 0, -1, 0, 1, 1]
    assert groups.kept.tolist() == [0, 2, 2, 3, 2, 5, 5]
    assert groups.keep.tolist() == [True, False, True, True, False, True, False]
    assert groups.sizes.tolist() == [3, 2]


def kruskal(n, i, j, sims, count):
    """The reference: links in descending similarity, one at a time, until `count` components remain."""
    parent = list(range(n))

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    components_left = n
    for edge in np.argsort(-sims, kind="stable"):
        a, b = root(i[edge]), root(j[edge])
        if a != b:
            parent[a] = b
            components_left -= 1
            if components_left == count:
                return float(sims[edge])
    raise AssertionError("unreachable")


def test_threshold_for_count_is_kruskals_and_exact_without_ties():
    rng = np.random.default_rng(0)
    n = 60
    i, j = np.triu_indices(n, 1)
    keep = rng.random(len(i)) < 0.2
    i, j = i[keep], j[keep]
    sims = rng.random(len(i)).astype(np.float32)
    for count in (1, 5, 30, 59):
        threshold = threshold_for_count(n, i, j, sims, count)
        assert threshold == kruskal(n, i, j, sims, count)
        linked = sims >= threshold - 1e-6
        assert len(np.unique(components(n, i[linked], j[linked]))) == count
    assert threshold_for_count(n, i, j, sims, n) is None


def test_ties_link_together_and_too_few_links_are_refused():
    i, j = np.array([0, 2, 4]), np.array([1, 3, 5])
    sims = np.array([0.9, 0.9, 0.5], np.float32)
    assert threshold_for_count(6, i, j, sims, 5) == pytest.approx(0.9)  # both 0.9 links join: 4 groups, not 5
    assert threshold_for_count(6, i, j, sims, 3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="leave more than 2"):
        threshold_for_count(6, i, j, sims, 2)


@pytest.fixture(scope="module")
def datacomp(tmp_path_factory):
    run = planted_datacomp_run(tmp_path_factory.mktemp("groups"))[0]
    return run, load_embeddings(run, None, progress=False).uids


def test_keep_rules_rank_by_pool_order_or_a_column(datacomp):
    run, uids = datacomp
    assert keep_rank(run, uids, "first").tolist() == list(range(len(uids)))
    from curate.catalogs import connect

    scores = dict(connect(run).execute("SELECT uid, clip_b32_similarity_score FROM samples").fetchall())
    rank = keep_rank(run, uids, "highest:clip_b32_similarity_score")
    by_score = sorted(range(len(uids)), key=lambda r: (-scores[uids[r].as_py()], r))
    assert rank[by_score].tolist() == list(range(len(uids)))
    outsiders = pa.concat_arrays([pa.array(["not-in-samples"], pa.string()), uids.slice(0, 2)])
    assert keep_rank(run, outsiders, "highest:clip_b32_similarity_score")[0] == 2  # no value: last


@pytest.mark.parametrize("rule, message", [
    ("largest", "unknown --keep rule 'largest'"),
    ("highest", "--keep highest:<column> needs a column"),
    ("first:uid", "--keep first takes no column"),
])
def test_bad_rules(rule, message):
    with pytest.raises(UsageError, match=message):
        parse_keep(rule)


def test_a_column_is_an_identifier_checked_against_the_catalog(datacomp):
    run, uids = datacomp
    for column in ["nope", "uid; DROP VIEW samples", 'x" DESC, (SELECT 1) --']:
        with pytest.raises(UsageError, match=r"no column .* in samples; columns: uid, shard"):
            keep_rank(run, uids, f"highest:{column}")
