"""Tests of the dynamic pruners (SeTa, InfoBatch, random) with real torch: selections pinned by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from curate.dynamic import INITIAL_SCORE, PRUNERS, InfoBatchPruner, RandomPruner, SeTaPruner, is_annealing, make_pruner


def _clustered_scores(num_samples: int, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (scores, level): sample i sits at loss level `level[i]` (levels 10 apart, interleaved over the
    indices so index order says nothing about loss order), with a jitter of at most 0.6 inside a level."""
    i = torch.arange(num_samples)
    level = (i * 3) % num_groups
    return level.double() * 10 + (i % 7).double() * 0.1, level


def _selected(pruner, epoch: int) -> set[int]:
    pruner.set_epoch(epoch)
    return set(pruner.selection().tolist())


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
