"""The pruners under real torch.distributed: two CPU processes on the gloo backend, results reported via files."""

from __future__ import annotations

import datetime
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from curate.dynamic import gather_updates, make_pruner

NUM_SAMPLES, EPOCHS, WORLD = 101, 4, 2
OPTIONS = {"seta": {"num_groups": 4, "window_scale": 0.5}, "infobatch": {}}


def _loss(index: torch.Tensor, epoch: int) -> torch.Tensor:
    """A per-sample loss both ranks and the parent can recompute: distinct per index, changing with the epoch."""
    return ((index * 37) % NUM_SAMPLES).float() / 10 + epoch


def _run_pruner(name: str, rank: int) -> dict:
    """Trains `EPOCHS` epochs of `name` on this rank; returns what each epoch showed."""
    pruner = make_pruner(name, NUM_SAMPLES, EPOCHS, 0.3, 11, **OPTIONS[name])
    out = {"mine": [], "selection": [], "scores": [], "weights": []}
    for epoch in range(EPOCHS):
        pruner.set_epoch(epoch)
        mine = torch.tensor(list(pruner), dtype=torch.int64)
        out["mine"].append(mine)
        out["selection"].append(pruner.selection())
        out["weights"].append(pruner.weights(mine))
        split = 3 if rank == 0 else 7  # two updates per rank, of sizes that differ between the ranks
        for part in (mine[:split], mine[split:]):
            pruner.update(part, _loss(part, epoch))
        out["scores"].append(pruner.scores.clone())
    out["stats"] = pruner.stats()
    return out


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    """One DDP rank: runs both pruners and a gather of indices too large for float32, saves the results."""
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results = {name: _run_pruner(name, rank) for name in OPTIONS}
        big = torch.tensor([2**40 + 2 * rank + 1], dtype=torch.int64)
        results["big"] = gather_updates(big, torch.tensor([0.5 + rank]))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_share_the_selection_disjointly_and_hold_the_same_scores(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    for name in OPTIONS:
        a, b = ranks[0][name], ranks[1][name]
        expected = torch.full((NUM_SAMPLES,), 3.0)
        for epoch in range(EPOCHS):
            selection = a["selection"][epoch]
            assert torch.equal(selection, b["selection"][epoch])
            mine_a, mine_b = set(a["mine"][epoch].tolist()), set(b["mine"][epoch].tolist())
            assert len(a["mine"][epoch]) == len(b["mine"][epoch]) == -(-selection.numel() // WORLD)
            assert mine_a | mine_b == set(selection.tolist())
            padding = 2 * len(a["mine"][epoch]) - selection.numel()
            assert len(mine_a & mine_b) == padding <= WORLD - 1
            assert torch.equal(a["scores"][epoch], b["scores"][epoch])
            expected[selection] = _loss(selection, epoch)
            assert torch.equal(a["scores"][epoch], expected), (name, epoch)
        assert a["stats"] == b["stats"]
        assert a["stats"].forwarded == [s.numel() for s in a["selection"]]

    seta, info = ranks[0]["seta"], ranks[0]["infobatch"]
    assert seta["selection"][0].numel() == 70 and seta["selection"][1].numel() < 70  # share, then a window
    assert info["selection"][0].numel() == NUM_SAMPLES and info["selection"][1].numel() < NUM_SAMPLES
    assert (info["weights"][1] > 1).any()
    for r in range(WORLD):
        indices, losses = ranks[r]["big"]
        assert indices.dtype == torch.int64
        assert indices.tolist() == [2**40 + 1, 2**40 + 3]
        assert losses.tolist() == [0.5, 1.5]
