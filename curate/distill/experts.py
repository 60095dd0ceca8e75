"""Expert trajectories for trajectory matching (MTT/TESLA `buffer.py`): ConvNets trained on the real labelled
images, their flat parameters recorded at initialization and after every epoch.

Reference recipe (buffer.py defaults): SGD lr_teacher 0.01, momentum 0 (`--mom 0`), weight decay 0 (`--l2 0`), no
lr decay, batch 256 (`--batch_train`), 50 epochs (`--train_epochs`), cross-entropy, DSA augmentation of every
batch ('color_crop_cutout_flip_scale_rotate', per-image draws), 100 experts for CIFAR-10 (`--num_experts`).

Each expert's trajectory is one safetensors file, `expert_{i}.safetensors`, holding tensors `epoch_0` ..
`epoch_{E}` (flat float32 parameters) and metadata naming the epochs and parameter count; it is written to a
temporary name and renamed, so an existing file with the expected metadata is complete and a rerun skips it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from curate.rundir import RunDir

if TYPE_CHECKING:
    import torch

    from curate.distill.convnet import ConvNetSpec


@dataclass(frozen=True)
class ExpertConfig:
    """How each expert trains: epochs, SGD settings, batch, network width/depth and augmentation."""

    epochs: int = 50
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 256
    width: int = 128
    depth: int = 3
    dsa: bool = True


def expert_seed(seed: int, index: int) -> int:
    """Returns the seed of expert `index` of a run seeded `seed` (independent streams per expert)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def spec_for(images: torch.Tensor, classes: int, config: ExpertConfig) -> ConvNetSpec:
    """Returns the ConvNet spec the experts of `config` use on these (N x C x S x S) images."""
    from curate.distill.convnet import ConvNetSpec

    return ConvNetSpec(images.shape[1], classes, images.shape[-1], config.width, config.depth)


def train_expert(images: torch.Tensor, labels: torch.Tensor, classes: int, config: ExpertConfig,
                 seed: int) -> list[torch.Tensor]:
    """Trains one ConvNet on the images from an initialization seeded `seed`; returns its trajectory, the flat
    float32 parameters at epoch 0 (initialization) and after each of config.epochs epochs (epochs + 1 tensors).

    A plain module-level function of picklable arguments, so a Ray task (or any executor) can run it."""
    import torch

    from curate.distill.convnet import convnet, flatten_params

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = convnet(spec_for(images, classes, config))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    trajectory = [flatten_params(model)]
    model.train()
    for _ in range(config.epochs):
        sgd_epoch(model, optimizer, images, labels, config.batch_size, config.dsa, generator)
        trajectory.append(flatten_params(model))
    return trajectory


def sgd_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
              batch_size: int, augment: bool, generator: torch.Generator) -> None:
    """Trains `model` one epoch in place: shuffled batches (DSA-augmented when `augment`), cross-entropy against
    the labels (class indices or soft targets). Expert training and the evaluation protocol share it."""
    import torch
    import torch.nn.functional as F

    from curate.distill import dsa

    for batch in torch.randperm(len(images), generator=generator).split(batch_size):
        batch = batch.to(images.device)
        x = images[batch]
        if augment:
            x = dsa.augment(x, generator)
        loss = F.cross_entropy(model(x), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def expert_path(folder: str | Path, index: int) -> Path:
    """Returns the path of expert `index`'s trajectory file in `folder`."""
    return Path(folder) / f"expert_{index}.safetensors"


def save_trajectory(path: str | Path, trajectory: list[torch.Tensor]) -> Path:
    """Writes the trajectory as safetensors atomically (RunDir.write_bytes); returns the path."""
    from safetensors.torch import save

    path = Path(path)
    tensors = {f"epoch_{t}": p.detach().to("cpu").contiguous() for t, p in enumerate(trajectory)}
    metadata = {"epochs": str(len(trajectory) - 1), "params": str(trajectory[0].numel())}
    return RunDir(path.parent).write_bytes(path.name, save(tensors, metadata=metadata))


def load_trajectory(path: str | Path) -> list[torch.Tensor]:
    """Returns the trajectory stored at `path`: flat parameters at epochs 0..E, in order."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        epochs = int((f.metadata() or {})["epochs"])
        return [f.get_tensor(f"epoch_{t}") for t in range(epochs + 1)]


def is_complete(path: str | Path, epochs: int, params: int) -> bool:
    """Returns whether `path` holds a finished trajectory of `epochs` epochs of `params` parameters."""
    from safetensors import safe_open

    if not Path(path).exists():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            return metadata.get("epochs") == str(epochs) and metadata.get("params") == str(params)
    except Exception:  # an unreadable file is not a finished trajectory: train it again
        return False


def _train_seeded(images: torch.Tensor, labels: torch.Tensor, classes: int, config: ExpertConfig, seed: int,
                  index: int) -> list[torch.Tensor]:
    return train_expert(images, labels, classes, config, expert_seed(seed, index))


def train_experts(images: torch.Tensor, labels: torch.Tensor, classes: int, config: ExpertConfig,
                  folder: str | Path, experts: int = 100, seed: int = 0,
                  map_fn: Callable[[Callable, Iterable[int]], Iterable] = map) -> list[Path]:
    """Trains the experts of `folder` that are not complete yet (expert i from seed expert_seed(seed, i)) and
    writes each trajectory as its result arrives; returns the paths of all `experts` trajectories.

    `map_fn(fn, indices)` runs fn (a picklable partial of train_expert) over the missing expert indices and yields
    their trajectories in order; the default is the builtin (lazy, sequential) map, a runner can pass a parallel
    one."""
    from curate.distill.convnet import param_count

    params = param_count(spec_for(images, classes, config))
    paths = [expert_path(folder, i) for i in range(experts)]
    missing = [i for i, path in enumerate(paths) if not is_complete(path, config.epochs, params)]
    work = functools.partial(_train_seeded, images, labels, classes, config, seed)
    results: Iterator = iter(map_fn(work, missing))
    for index, trajectory in zip(missing, results, strict=True):
        save_trajectory(paths[index], trajectory)
    return paths
