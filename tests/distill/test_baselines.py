"""Real-image baselines: herding picks the greedy mean-matching points in order (ties to the lowest index);
random_real is seeded and per class; both refuse an impossible IPC with a one-line UsageError naming the class."""

import numpy as np
import pytest

from curate.distill.baselines import herding, random_real
from curate.errors import UsageError


def test_herding_picks_the_points_that_keep_the_running_mean_closest_in_order():
    # class 0 at rows 1, 3, 4, 6, 7 with 1-D features 0, 10, 4, 6, 5 (mean 5):
    # step 1 takes 5 (row 7); step 2 needs 5 again: 4 and 6 tie at distance 1, the lower index wins (row 4, value 4);
    # step 3 needs 15 - 9 = 6 (row 6); step 4 needs 20 - 15 = 5: 0 and 10 tie, row 1 wins.
    # class 1 at rows 0, 2, 5, 8 with features 1, 3, 2, 2 (mean 2): rows 5 and 8 (both 2) tie, row 5 first, then
    # row 8; step 3 needs 6 - 4 = 2: 1 and 3 tie, row 0 wins; then row 2.
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 0, 1])
    features = np.array([[1.0], [0.0], [3.0], [10.0], [4.0], [2.0], [6.0], [5.0], [2.0]])
    assert herding(features, labels, 4).tolist() == [7, 4, 6, 1, 5, 8, 0, 2]
    assert herding(features, labels, 2).tolist() == [7, 4, 5, 8]
    assert herding(np.hstack([features, np.zeros((9, 3))]), labels.tolist(), 1).tolist() == [7, 5]


def test_herding_equals_the_brute_force_running_mean_rule():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    features = rng.normal(size=(60, 5))
    picked = herding(features, labels, 4)
    for c in range(3):
        rows = np.flatnonzero(labels == c)
        mean, chosen = features[rows].mean(0), []
        for _ in range(4):
            left = [r for r in rows if r not in chosen]
            chosen.append(min(left, key=lambda r: np.linalg.norm(features[[*chosen, r]].mean(0) - mean)))
        assert picked[4 * c:4 * c + 4].tolist() == chosen


def test_random_real_is_seeded_and_per_class():
    labels = np.repeat(np.arange(4), 25)[np.random.default_rng(1).permutation(100)]
    first = random_real(labels, 3, seed=7)
    assert first.dtype == np.int64 and len(first) == 12 and len(set(first.tolist())) == 12
    assert labels[first].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert np.array_equal(first, random_real(labels, 3, seed=7))
    assert not np.array_equal(first, random_real(labels, 3, seed=8))
    assert sorted(random_real(labels, 25, seed=0).tolist()) == list(range(100))


@pytest.mark.parametrize("select", [lambda f, y, ipc: random_real(y, ipc, 0), herding])
def test_an_impossible_ipc_is_a_one_line_usage_error(select):
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    features = np.zeros((8, 2))
    with pytest.raises(UsageError, match="ipc must be at least 1") as error:
        select(features, labels, 0)
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="class 1 has 2 images") as error:
        select(features, labels, 3)
    assert "\n" not in str(error.value)


def test_herding_refuses_features_that_do_not_match_the_labels():
    with pytest.raises(UsageError, match="one row per label"):
        herding(np.zeros((3, 2)), np.array([0, 0, 1, 1]), 1)
