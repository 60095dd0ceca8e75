"""Expert trajectories: epoch 0..E recorded, written atomically, skipped when complete, loaded back identically."""

import functools
import itertools
import pickle

import pytest
import torch

from curate.distill.convnet import init_params
from curate.distill.experts import (
    ExpertConfig,
    expert_path,
    expert_seed,
    load_trajectory,
    save_trajectory,
    spec_for,
    train_expert,
    train_experts,
)

CONFIG = ExpertConfig(epochs=3, width=4, batch_size=8)



@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(8)
    images = torch.randn(len(labels), 3, 8, 8, generator=generator) + labels[:, None, None, None]
    return images, labels


def test_a_trajectory_records_the_initialization_and_every_epoch(data):
    images, labels = data
    trajectory = train_expert(images, labels, 3, CONFIG, seed=11)
    assert len(trajectory) == CONFIG.epochs + 1
    assert torch.equal(trajectory[0], init_params(spec_for(images, 3, CONFIG), 11))
    assert all(not torch.equal(a, b) for a, b in itertools.pairwise(trajectory))
    assert all(torch.equal(a, b) for a, b in zip(trajectory, train_expert(images, labels, 3, CONFIG, 11), strict=True))
    assert pickle.loads(pickle.dumps(functools.partial(train_expert, images, labels, 3, CONFIG)))  # Ray-ready


def test_experts_resume_skipping_complete_files(data, tmp_path):
    images, labels = data
    asked: list[list[int]] = []

    def recording_map(fn, indices):
        asked.append(list(indices))
        return map(fn, asked[-1])

    paths = train_experts(images, labels, 3, CONFIG, tmp_path, experts=3, seed=4, map_fn=recording_map)
    assert asked == [[0, 1, 2]] and paths == [expert_path(tmp_path, i) for i in range(3)]
    first = [load_trajectory(p) for p in paths]
    assert torch.equal(first[1][0], init_params(spec_for(images, 3, CONFIG), expert_seed(4, 1)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temporary files left
    paths[1].unlink()
    save_trajectory(paths[2], first[2][:2])  # a trajectory of the wrong length is not complete
    stamp = paths[0].stat().st_mtime_ns
    train_experts(images, labels, 3, CONFIG, tmp_path, experts=3, seed=4, map_fn=recording_map)
    assert asked[-1] == [1, 2] and paths[0].stat().st_mtime_ns == stamp
    for before, path in zip(first, paths, strict=True):
        after = load_trajectory(path)
        assert len(after) == len(before) and all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    train_experts(images, labels, 3, CONFIG, tmp_path, experts=3, seed=4, map_fn=recording_map)
    assert asked[-1] == []


def test_a_saved_trajectory_loads_back_identically(tmp_path):
    trajectory = [torch.randn(17) for _ in range(4)]
    path = save_trajectory(tmp_path / "sub" / "expert_0.safetensors", trajectory)
    loaded = load_trajectory(path)
    assert len(loaded) == 4 and all(torch.equal(a, b) for a, b in zip(trajectory, loaded, strict=True))
