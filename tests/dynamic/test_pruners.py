"""Tests of the dynamic pruners (SeTa, InfoBatch, random) with real torch: selections pinned by hand."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from curate.dynamic import (
    INITIAL_SCORE,
    PRUNERS,
    IndexedDataset,
    InfoBatchPruner,
    RandomPruner,
    SeTaPruner,
    group_by_score,
    is_annealing,
    kmeans_1d,
    make_pruner,
    shard,
)
from curate.errors import UsageError


def _clustered_scores(num_samples: int, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (scores, level): sample i sits at loss level `level[i]` (levels 10 apart, interleaved over the
    indices so index order says nothing about loss order), with a jitter of at most 0.6 inside a level."""
    i = torch.arange(num_samples)
    level = (i * 3) % num_groups
    return level.double() * 10 + (i % 7).double() * 0.1, level


def _selected(pruner, epoch: int) -> set[int]:
    pruner.set_epoch(epoch)
    return set(pruner.selection().tolist())


# --- k-means and grouping ----------------------------------------------------------------------------------


def test_kmeans_1d_separates_levels_and_orders_centers():
    values = torch.tensor([9.2, 1.0, 5.1, 1.1, 9.0, 5.0, 1.2])
    labels, centers = kmeans_1d(values, 3)
    assert labels.tolist() == [2, 0, 1, 0, 2, 1, 0]
    assert torch.allclose(centers, torch.tensor([1.1, 5.05, 9.1], dtype=torch.float64))


def test_kmeans_1d_lloyd_moves_off_the_quantile_seeds():
    # seeds are 1 and 4 (mid-quantiles); Lloyd must move the split to isolate the outlier
    labels, centers = kmeans_1d(torch.tensor([0.0, 1, 2, 3, 4, 100]), 2)
    assert labels.tolist() == [0, 0, 0, 0, 0, 1]
    assert centers.tolist() == [2.0, 100.0]


def test_kmeans_1d_needs_enough_distinct_values():
    with pytest.raises(ValueError, match="distinct"):
        kmeans_1d(torch.tensor([1.0, 1.0, 2.0]), 3)


def test_group_by_score_orders_clusters_by_mean_loss():
    scores = torch.tensor([30.0, 10.0, 20.0, 10.5, 30.5, 20.5])
    indices = torch.tensor([100, 101, 102, 103, 104, 105])
    groups = group_by_score(scores, indices, 3)
    assert [sorted(g.tolist()) for g in groups] == [[101, 103], [102, 105], [100, 104]]


def test_group_by_score_equal_scores_fall_back_to_equal_chunks():
    indices = torch.arange(25).flip(0)
    groups = group_by_score(torch.full((25,), 3.0), indices, 10)
    assert [g.numel() for g in groups] == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    assert torch.equal(torch.cat(groups), indices)  # stable sort: the given order


def test_group_by_score_few_distinct_values_chunk_the_sorted_order():
    scores = torch.tensor([2.0, 1.0, 2.0, 0.0, 1.0, 0.0])
    groups = group_by_score(scores, torch.arange(6), 4)
    assert [g.tolist() for g in groups] == [[3, 5], [1, 4], [0], [2]]


# --- SeTa --------------------------------------------------------------------------------------------------


def test_seta_window_positions_slide_one_group_per_epoch_and_wrap():
    pruner = SeTaPruner(1000, 100, 0.0, num_groups=10, window_scale=0.5)
    assert pruner.window_size == 5
    assert [pruner.window(e) for e in range(14)] == [(0, 10)] + [((e % 6), 5) for e in range(1, 14)]
    assert [pruner.window(e)[0] for e in range(1, 14)] == [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1]
    # the reference's CIFAR setting: round(5 * 0.9) = round(4.5) = 4 groups (Python rounds half to even)
    assert SeTaPruner(10, 2, num_groups=5, window_scale=0.9).window_size == 4


def test_seta_selects_exactly_the_window_of_loss_ordered_clusters():
    scores, level = _clustered_scores(100, 10)
    pruner = SeTaPruner(100, 100, 0.0, seed=4, num_groups=10, window_scale=0.5)
    pruner.update(torch.arange(100), scores)
    assert _selected(pruner, 0) == set(range(100))  # first epoch: all groups
    for epoch in range(1, 13):
        start = epoch % 6
        expected = {i for i in range(100) if start <= int(level[i]) < start + 5}
        assert _selected(pruner, epoch) == expected, epoch
        assert len(pruner) == 50


def test_seta_clusters_only_the_random_share():
    scores, level = _clustered_scores(400, 10)
    pruner = SeTaPruner(400, 100, 0.5, seed=1, num_groups=10, window_scale=0.3)
    pruner.update(torch.arange(400), scores)
    for epoch in (1, 5, 8):
        share = set(pruner.random_share(epoch).tolist())
        assert len(share) == 200
        start = epoch % 8
        expected = {i for i in share if start <= int(level[i]) < start + 3}
        assert _selected(pruner, epoch) == expected


def test_seta_first_epoch_is_the_random_share_not_the_full_data():
    scores, _ = _clustered_scores(200, 10)
    pruner = SeTaPruner(200, 50, 0.3, seed=2)
    pruner.update(torch.arange(200), scores)
    first = _selected(pruner, 0)
    assert first == set(pruner.random_share(0).tolist())
    assert len(first) == 140
    assert _selected(pruner, 1) < set(pruner.random_share(1).tolist())


def test_seta_equal_scores_use_chunks_of_the_share():
    pruner = SeTaPruner(100, 100, 0.0, seed=3, num_groups=10, window_scale=0.5)
    share = pruner.random_share(1)
    assert _selected(pruner, 1) == set(share[10:60].tolist())  # chunks 1..5 of the share's order


def test_seta_annealing_epochs_take_the_random_share_without_clustering():
    scores, _ = _clustered_scores(100, 10)
    pruner = SeTaPruner(100, 8, 0.5, seed=6, num_groups=10, window_scale=0.5, delta=0.875)
    pruner.update(torch.arange(100), scores)
    assert [is_annealing(e, 8, 0.875) for e in range(8)] == [False] * 7 + [True]
    assert len(_selected(pruner, 6)) < 50  # clustered: a window of the share
    annealed = _selected(pruner, 7)
    assert annealed == set(pruner.random_share(7).tolist())
    assert len(annealed) == 50
    assert pruner.weights(torch.arange(100)).eq(1).all()


def test_annealing_starts_at_floor_of_delta_times_epochs():
    assert [e for e in range(10) if is_annealing(e, 10, 0.875)] == [8, 9]
    assert next(e for e in range(200) if is_annealing(e, 200, 0.875)) == 175
    assert not any(is_annealing(e, 10, 1.0) for e in range(10))


# --- InfoBatch ---------------------------------------------------------------------------------------------


def test_infobatch_prunes_only_below_mean_and_rescales_the_kept_ones():
    pruner = InfoBatchPruner(100, 10, 0.3, seed=0)
    pruner.update(torch.arange(100), torch.arange(100.0))  # mean 49.5: samples 0..49 are below
    chosen = _selected(pruner, 1)
    assert set(range(50, 100)) <= chosen
    kept_below = chosen & set(range(50))
    assert len(kept_below) == int(0.7 * 50) == 35
    weights = pruner.weights(torch.arange(100))
    expected = torch.tensor([1 / 0.7 if i in kept_below else 1.0 for i in range(100)])
    assert torch.allclose(weights, expected)
    assert len(pruner) == 85


def test_infobatch_samples_at_the_mean_are_never_pruned():
    pruner = InfoBatchPruner(5, 10, 0.5)
    pruner.update([0, 1, 2, 3, 4], [0.0, 2.0, 2.0, 2.0, 4.0])  # mean 2: only sample 0 is below
    assert _selected(pruner, 1) == {1, 2, 3, 4}  # int(0.5 * 1) = 0 of the below-mean ones kept


def test_infobatch_keep_ratio_floor_gives_weight_ten():
    pruner = InfoBatchPruner(100, 10, 0.95, seed=1)
    pruner.update(torch.arange(100), torch.arange(100.0))
    chosen = _selected(pruner, 2)
    assert len(chosen & set(range(50))) == 5
    assert sorted(set(pruner.weights(torch.arange(100)).tolist())) == pytest.approx([1.0, 10.0])


def test_infobatch_first_and_annealing_epochs_use_full_data_at_weight_one():
    pruner = InfoBatchPruner(100, 8, 0.5, seed=0)
    pruner.update(torch.arange(100), torch.arange(100.0))
    for epoch in (0, 7):
        assert _selected(pruner, epoch) == set(range(100))
        assert pruner.weights(torch.arange(100)).eq(1).all()
    assert len(_selected(pruner, 6)) == 75


def test_initial_scores_are_three_as_in_the_references():
    assert INITIAL_SCORE == 3.0
    assert InfoBatchPruner(7, 2).scores.tolist() == [3.0] * 7
    assert SeTaPruner(7, 2, initial_score=1.0).scores.tolist() == [1.0] * 7


# --- random, accounting, determinism -----------------------------------------------------------------------


def test_random_pruner_draws_a_fresh_share_each_epoch():
    pruner = RandomPruner(1000, 5, 0.6, seed=0)
    selections = [_selected(pruner, e) for e in range(3)]
    assert all(len(s) == 400 for s in selections)
    assert selections[0] != selections[1] != selections[2]
    assert pruner.weights(torch.arange(1000)).eq(1).all()


def test_saved_fraction_matches_a_hand_count():
    pruner = RandomPruner(10, 5, 0.35)  # keep 0.65: floor(6.5) = 6 per epoch
    for epoch in range(3):
        pruner.set_epoch(epoch)
        list(pruner)
    pruner.set_epoch(2)
    list(pruner)  # the same epoch again is not counted twice
    stats = pruner.stats()
    assert (stats.epochs, stats.forwarded, stats.skipped) == ([0, 1, 2], [6, 6, 6], [4, 4, 4])
    assert (stats.total_forwarded, stats.total_skipped, stats.saved_fraction) == (18, 12, 0.4)

    info = InfoBatchPruner(100, 10, 0.3)
    info.update(torch.arange(100), torch.arange(100.0))
    _selected(info, 0), _selected(info, 1)
    assert info.stats().skipped == [0, 15]
    assert info.stats().saved_fraction == 15 / 200


def test_seta_accounting_counts_what_was_selected():
    scores, _ = _clustered_scores(300, 10)
    pruner = SeTaPruner(300, 20, 0.2, seed=9)
    pruner.update(torch.arange(300), scores)
    sizes = [len(_selected(pruner, e)) for e in range(4)]
    stats = pruner.stats()
    assert stats.forwarded == sizes
    assert stats.saved_fraction == pytest.approx(sum(300 - s for s in sizes) / (300 * 4))
    assert sizes[0] == 240 and all(s < 240 for s in sizes[1:])


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_same_seed_same_epochs_regardless_of_global_rng(name):
    scores, _ = _clustered_scores(120, 10)

    def run(global_seed: int, seed: int) -> list[list[int]]:
        np_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            np.random.seed(global_seed)
            pruner = make_pruner(name, 120, 6, 0.4, seed)
            pruner.update(torch.arange(120), scores)
            orders = []
            for epoch in range(4):
                pruner.set_epoch(epoch)
                orders.append(list(pruner))
                pruner.update(torch.arange(120), scores.flip(0) * (epoch + 1))
        np.random.set_state(np_state)
        return orders

    assert run(1, seed=7) == run(2, seed=7)
    assert run(1, seed=7) != run(1, seed=8)


def test_pruners_leave_the_global_rng_alone():
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    for name in PRUNERS:
        pruner = make_pruner(name, 50, 4, 0.5, 3)
        for epoch in range(3):
            pruner.set_epoch(epoch)
            list(pruner)
            pruner.update(torch.arange(50), torch.linspace(0, 5, 50))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert random.getstate() == py_state


def test_iteration_is_shuffled_and_set_epoch_recomputes():
    pruner = RandomPruner(200, 4, 0.0, seed=0)
    order = list(pruner)
    assert sorted(order) == list(range(200)) and order != sorted(order)
    assert list(pruner) == order  # same epoch, same order
    pruner.set_epoch(1)
    assert list(pruner) != order


# --- DataLoader, sharding, updates -------------------------------------------------------------------------


def test_works_with_a_plain_dataloader_via_sampler_and_batch_sampler():
    data = IndexedDataset(TensorDataset(torch.arange(60.0).unsqueeze(1) * 2))
    pruner = InfoBatchPruner(60, 8, 0.5, seed=0)
    pruner.update(torch.arange(60), torch.arange(60.0))
    pruner.set_epoch(1)
    chosen = pruner.selection().tolist()

    loader = DataLoader(data, sampler=pruner, batch_size=8)
    assert len(loader) == math.ceil(len(chosen) / 8)
    seen = []
    for indices, (x,) in loader:
        assert torch.equal(x.squeeze(1), indices.float() * 2)
        weights = pruner.weights(indices)
        assert weights.shape == indices.shape
        pruner.update(indices, (x.squeeze(1) * weights).detach())
        seen += indices.tolist()
    assert sorted(seen) == chosen
    assert pruner.scores[seen].tolist() == (torch.tensor(seen) * 2.0 * pruner.weights(seen)).tolist()

    batches = list(DataLoader(data, batch_sampler=pruner.batch_sampler(7, drop_last=True)))
    assert len(batches) == len(chosen) // 7 and all(b[0].numel() == 7 for b in batches)
    assert len(DataLoader(data, batch_sampler=pruner.batch_sampler(7))) == math.ceil(len(chosen) / 7)


def test_explicit_ranks_get_disjoint_shares_padded_to_equal_length():
    shares = [list(RandomPruner(101, 3, 0.0, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 51
    assert set(shares[0]) | set(shares[1]) == set(range(101))
    assert len(set(shares[0]) & set(shares[1])) == 1  # one padding repeat
    order = RandomPruner(101, 3, 0.0, seed=1).epoch_order()
    assert shares[1][-1] == int(order[0])  # padding repeats the start of the order
    assert [shard(torch.arange(5), r, 3).tolist() for r in range(3)] == [[0, 3], [1, 4], [2, 0]]


def test_update_takes_lists_and_the_last_report_wins():
    pruner = SeTaPruner(6, 3)
    pruner.update([1, 4, 1], [0.5, 0.25, 0.75])
    assert pruner.scores.tolist() == [3.0, 0.75, 3.0, 3.0, 0.25, 3.0]
    pruner.update(np.array([5]), torch.tensor([[2.0]], requires_grad=True))
    assert pruner.scores[5].item() == 2.0


def test_state_dict_round_trip():
    pruner = InfoBatchPruner(20, 4, 0.5, seed=2)
    pruner.update(torch.arange(20), torch.arange(20.0))
    _selected(pruner, 1)
    restored = InfoBatchPruner(20, 4, 0.5, seed=2)
    restored.load_state_dict(pruner.state_dict())
    assert torch.equal(restored.selection(), pruner.selection())
    assert restored.stats() == pruner.stats()


# --- usage errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("nope", 10, 2), {}, "unknown pruner 'nope'; choose one of infobatch, random, seta"),
        (("seta", 10, 2, 1.0), {}, "prune_ratio must be in [0, 1), got 1.0"),
        (("seta", 10, 2, -0.1), {}, "prune_ratio must be in [0, 1), got -0.1"),
        (("infobatch", 10, 0), {}, "epochs must be an integer >= 1, got 0"),
        (("random", 0, 2), {}, "num_samples must be an integer >= 1, got 0"),
        (("random", 10, 2, 0.5, -1), {}, "seed must be an integer >= 0, got -1"),
        (("seta", 10, 2), {"num_groups": 0}, "num_groups must be an integer >= 1, got 0"),
        (("seta", 10, 2), {"window_scale": 0}, "window_scale must be in (0, 1], got 0"),
        (("seta", 10, 2), {"window_scale": 1.5}, "window_scale must be in [0, 1], got 1.5"),
        (("infobatch", 10, 2), {"delta": 2}, "delta must be in [0, 1], got 2"),
        (("infobatch", 10, 2), {"num_groups": 3}, "pruner 'infobatch' has no option num_groups"),
        (("random", 10, 2), {"rank": 0}, "give both rank and world_size"),
        (("random", 10, 2), {"rank": 2, "world_size": 2}, "rank must be an integer in [0, 2), got 2"),
    ],
)
def test_usage_errors_say_what_to_fix(args, options, message):
    with pytest.raises(UsageError) as err:
        make_pruner(*args, **options)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_update_usage_errors():
    pruner = RandomPruner(10, 2)
    cases = [
        (([0, 1], [1.0]), "update got 2 indices but 1 losses"),
        ((torch.tensor([0.0]), [1.0]), "indices must be integers"),
        (([10], [1.0]), "indices must lie in [0, 10)"),
        (([0], [float("nan")]), "non-finite loss"),
    ]
    for (indices, losses), message in cases:
        with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            pruner.update(indices, losses)
    assert pruner.scores.eq(3.0).all()
    with pytest.raises(UsageError, match="epoch must be an integer >= 0"):
        pruner.set_epoch(-1)
