"""The pruners as torch samplers: DataLoader use, rank shares, score updates, state, usage errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from curate.dynamic import IndexedDataset, InfoBatchPruner, RandomPruner, SeTaPruner, make_pruner, shard
from curate.errors import UsageError

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
    pruner.set_epoch(1)
    pruner.selection()  # the state carries an epoch already selected and counted
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
