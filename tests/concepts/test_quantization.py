"""DQ's bins and bin sampling: the fast GraphCut picks exactly what the reference's dense computation picks, in
the same order; bin sizes, shares and seeded draws."""

import numpy as np
import pytest

from curate.concepts.quantization import (
    bin_sizes,
    graphcut_bins,
    graphcut_bins_dense,
    graphcut_coreset,
    keep_counts,
    sample_bins,
)
from curate.errors import UsageError


def test_a_hand_built_case_puts_a_duplicate_in_the_next_bin():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # bin 0 from V = {0, 1, 2}: gains x . sum(V) = [2, 2, 1], the tie goes to 0; minus 2 s(x, x0) = [-, 0, 1]: 2
    for bins in (graphcut_bins(x, 2, "dot"), graphcut_bins_dense(x, 2, "dot")):
        assert [b.tolist() for b in bins] == [[0, 2], [1]]


@pytest.mark.parametrize("seed", range(24))
def test_the_fast_path_picks_what_the_dense_oracle_picks_in_the_same_order(seed):
    rng = np.random.default_rng(seed)
    n, d, k = int(rng.integers(5, 80)), int(rng.integers(2, 17)), int(rng.integers(1, 7))
    x = rng.normal(size=(n, d))
    if seed % 3 == 0:  # exact duplicates: ties that only the lowest-index rule decides
        x[rng.integers(n, size=n // 3)] = x[0]
    if seed % 4 == 1:  # integer coordinates: sums are exact, so are the ties
        x = rng.integers(-2, 3, size=(n, d)).astype(float)
    for similarity in ("cosine", "dot"):
        lam = float(rng.choice([0.5, 1.0, 2.0]))
        fast, dense = graphcut_bins(x, k, similarity, lam), graphcut_bins_dense(x, k, similarity, lam)
        assert [b.tolist() for b in fast] == [b.tolist() for b in dense]
        assert sorted(np.concatenate(fast).tolist()) == list(range(n))


def test_bins_have_round_n_over_k_members_and_the_last_the_rest():
    assert bin_sizes(10, 3) == [3, 3, 4]
    assert bin_sizes(11, 3) == [4, 4, 3]
    assert bin_sizes(7, 7) == [1] * 7
    assert bin_sizes(9, 6) == [1, 1, 1, 1, 1, 4]  # round(1.5) = 2 would leave the last bin nothing
    with pytest.raises(UsageError, match="cannot make 5 bins from 4 samples"):
        bin_sizes(4, 5)


def test_keep_counts_take_the_same_share_of_every_bin_and_sum_exactly():
    assert keep_counts(np.array([10, 10, 10]), 15).tolist() == [5, 5, 5]
    counts = keep_counts(np.array([7, 7, 7, 9]), 9)  # 9 of 30 over shares 2.1, 2.1, 2.1, 2.7
    assert counts.tolist() == [2, 2, 2, 3] and counts.sum() == 9
    for total in (11, 28, 47):
        assert keep_counts(np.array([13, 8, 21, 5]), total).sum() == total
    with pytest.raises(UsageError, match=r"keeps 4 of 47 samples, none from some of the 4 bins \(the smallest holds 5"):
        keep_counts(np.array([13, 8, 21, 5]), 4)


def test_bin_sampling_is_seeded_and_draws_from_each_bin():
    bins = [np.arange(0, 10), np.arange(10, 20), np.arange(20, 25)]
    drawn = sample_bins(bins, np.array([3, 3, 2]), seed=7)
    assert np.array_equal(drawn, sample_bins(bins, np.array([3, 3, 2]), seed=7))
    assert not np.array_equal(drawn, sample_bins(bins, np.array([3, 3, 2]), seed=8))
    assert [int(((drawn >= b[0]) & (drawn <= b[-1])).sum()) for b in bins] == [3, 3, 2]


def test_a_single_coreset_is_the_first_bin_when_sizes_match():
    x = np.random.default_rng(3).normal(size=(60, 8))
    first = graphcut_bins(x, 6)[0]
    assert np.array_equal(graphcut_coreset(x, len(first)), first)
    assert len(set(graphcut_coreset(x, 45).tolist())) == 45
