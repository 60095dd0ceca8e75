"""TESLA dataset distillation (Cui et al., ICML 2023): learn a few synthetic images per class (and the student's
learning rate) so that N SGD steps on them from an expert's epoch-t parameters land near the expert's epoch-(t+M)
parameters, with a gradient whose memory does not grow with N (see curate.distill.matching).

Reference defaults (justincui03/tesla distill.py argparse): ipc 1, syn_steps 20, expert_epochs 3,
max_start_epoch 25, lr_img 1000, lr_lr 1e-5, lr_teacher (alpha's initial value, learned directly, not its log)
0.01, batch_syn = all synthetic images, 10000 iterations, real-image initialization, DSA on. Its CIFAR-10 command
(ipc 1): syn_steps 50, expert_epochs 2, max_start_epoch 5, lr_img 1000, lr_lr 1e-7, lr_teacher 0.01; the MTT
CIFAR-10 ipc 10 command: syn_steps 30, expert_epochs 2, max_start_epoch 20, lr_lr 1e-5 (lr_img 1e5 with ZCA).
Images are updated by SGD(lr_img, momentum 0.5), alpha by SGD(lr_lr, momentum 0.5). `soft_labels` is the
reference's --teacher_label: each iteration's targets are the softmax of the target expert (epoch t+M) on the
synthetic images. Departure: alpha is kept at or above lr_teacher * MIN_LR_FRACTION after each update (the
reference lets it cross zero).

Each iteration's randomness (expert, start epoch, minibatches, augmentations) comes from a generator seeded by
(seed, iteration), so a run resumed from a checkpoint ends with exactly the images of an uninterrupted run.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from curate.models.weights import read_weights
from curate.rundir import RunDir

if TYPE_CHECKING:
    import torch

    from curate.distill.convnet import ConvNetSpec
    from curate.distill.matching import MatchGradients

CHECKPOINT = "checkpoint.pt"
# The learned lr stays above this share of its initial value: SGD on it can cross zero (the reference lets it), and a
# negative lr makes every student step, and the set's evaluation, climb the loss.
MIN_LR_FRACTION = 0.01
# mean normalized matching loss of the first iterations above which the settings overshoot: the student ends more
# than twice the expert's own move away from the expert's target epoch (loss 1 is not moving at all)
OVERSHOOT_LOSS = 4.0
OVERSHOOT_WINDOW = 10


@dataclass(frozen=True)
class TeslaConfig:
    """The distillation's settings (defaults: the reference's argparse defaults)."""

    ipc: int = 1
    iterations: int = 10000
    syn_steps: int = 20
    expert_epochs: int = 3
    max_start_epoch: int = 25
    lr_img: float = 1000.0
    lr_lr: float = 1e-5
    lr_teacher: float = 0.01
    batch_syn: int | None = None  # None: all classes * ipc images in every step
    dsa: bool = True
    soft_labels: bool = False
    method: str = "tesla"  # "tesla" (constant memory) or "mtt" (full unroll, memory grows with syn_steps)
    width: int = 128
    depth: int = 3
    checkpoint_every: int = 100
    seed: int = 0
    progress: bool = False


@dataclass
class DistillResult:
    """The distilled set: float images (in the input's normalized space), hard labels, the learned learning rate
    (None for a method that learns none: CDA, SRe2L), the loss of every iteration, the seconds spent, and with
    soft_labels the last iteration's soft labels (the target expert's softmax on the images before that
    iteration's update)."""

    images: torch.Tensor
    labels: torch.Tensor
    lr: float | None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    soft_labels: torch.Tensor | None = None
    warnings: list[str] = field(default_factory=list)


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """Returns the generator of one iteration's randomness, seeded by (seed, iteration)."""
    return _generator(seed, 1, iteration)


def _generator(*keys: int) -> torch.Generator:
    import numpy as np
    import torch

    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(keys)).generate_state(1)[0]))


def init_synthetic(images: torch.Tensor, labels: torch.Tensor, classes: int, ipc: int,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (ipc random real images of each class, in class order, and their labels); raises ValueError when a
    class has fewer than ipc images."""
    import torch

    generator = _generator(seed, 0, 0)
    chosen = []
    for c in range(classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < ipc:
            raise ValueError(f"class {c} has {len(members)} images; ipc {ipc} needs more")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:ipc]])
    index = torch.cat(chosen)
    return images[index].detach().clone(), labels[index].clone()


def load_trajectories(trajectories: Sequence[str | Path | Sequence[torch.Tensor]],
                      epochs: int) -> list[list[torch.Tensor]]:
    """Returns each trajectory (a path or a list of flat parameters) cut to its first `epochs` + 1 epochs; raises
    ValueError when one is shorter."""
    from curate.distill.experts import load_trajectory

    loaded = []
    for trajectory in trajectories:
        epochs_list = load_trajectory(trajectory) if isinstance(trajectory, str | Path) else list(trajectory)
        if len(epochs_list) < epochs + 1:
            raise ValueError(f"a trajectory has {len(epochs_list) - 1} epochs; matching needs {epochs}")
        loaded.append(epochs_list[:epochs + 1])
    if not loaded:
        raise ValueError("no expert trajectories")
    return loaded


def distill_step(images: torch.Tensor, labels: torch.Tensor, lr: float, trajectories: list[list[torch.Tensor]],
                 spec: ConvNetSpec, config: TeslaConfig, iteration: int) -> tuple[MatchGradients, torch.Tensor]:
    """Returns (the matching loss and gradients, the targets used) of one iteration: a random expert and start
    epoch t < max_start_epoch, syn_steps student steps from theta*_t, matched against theta*_{t+M}."""
    import torch

    from curate.distill.dsa import DSAConfig
    from curate.distill.matching import make_plan, soft_labels, tesla_gradients, unrolled_gradients

    generator = iteration_generator(config.seed, iteration)
    expert = trajectories[int(torch.randint(len(trajectories), (1,), generator=generator))]
    start_epoch = int(torch.randint(config.max_start_epoch, (1,), generator=generator))
    start = expert[start_epoch].to(images.device, images.dtype)
    target = expert[start_epoch + config.expert_epochs].to(images.device, images.dtype)
    targets = soft_labels(images, target, spec) if config.soft_labels else labels
    dsa_config = DSAConfig() if config.dsa else None
    plan = make_plan(len(images), config.syn_steps, config.batch_syn or len(images), images.shape[-1], generator,
                     dsa_config)
    if config.method == "tesla":
        return tesla_gradients(images, targets, lr, start, target, spec, plan, dsa_config), targets
    if config.method == "mtt":
        return unrolled_gradients(images, targets, lr, start, target, spec, plan, dsa_config), targets
    raise ValueError(f"unknown method {config.method!r}: 'tesla' or 'mtt'")


def distill(images: torch.Tensor, labels: torch.Tensor, classes: int,
            trajectories: Sequence[str | Path | Sequence[torch.Tensor]], config: TeslaConfig,
            folder: str | Path | None = None,
            callback: Callable[[int, float], None] | None = None) -> DistillResult:
    """Distills the real images (N x C x S x S float, as the experts saw them) and labels into config.ipc images
    per class against the expert trajectories; returns the DistillResult.

    With `folder`, a checkpoint is written there every config.checkpoint_every iterations and at the end, and a
    run resumes from it. `callback(iteration, loss)` is called after every iteration."""
    import torch

    from curate.distill.convnet import ConvNetSpec, param_count

    spec = ConvNetSpec(images.shape[1], classes, images.shape[-1], config.width, config.depth)
    loaded = load_trajectories(trajectories, config.max_start_epoch + config.expert_epochs)
    if loaded[0][0].numel() != param_count(spec):
        raise ValueError(f"the trajectories have {loaded[0][0].numel()} parameters; a ConvNet of width "
                         f"{config.width} and depth {config.depth} has {param_count(spec)}")
    state = _initial_state(images, labels, classes, config)
    path = None if folder is None else Path(folder) / CHECKPOINT
    if path is not None and path.exists():
        state = _load_state(path)
        if state["images"].shape != (classes * config.ipc, *images.shape[1:]):
            raise ValueError(f"{path} holds images of shape {tuple(state['images'].shape)}, not this run's")
    syn, alpha = state["images"].requires_grad_(True), state["lr"].requires_grad_(True)
    optimizers = (torch.optim.SGD([syn], lr=config.lr_img, momentum=0.5),
                  torch.optim.SGD([alpha], lr=config.lr_lr, momentum=0.5))
    _restore_momentum(optimizers, state)
    losses, seconds, soft = state["losses"].tolist(), float(state["seconds"]), state.get("soft_labels")
    for iteration in tqdm(range(len(losses), config.iterations), desc="distill", disable=not config.progress):
        began = time.perf_counter()
        grads, targets = distill_step(syn.detach(), state["labels"], float(alpha.detach()), loaded, spec, config,
                                      iteration)
        syn.grad, alpha.grad = grads.images, torch.tensor(grads.lr, dtype=alpha.dtype, device=alpha.device)
        for optimizer in optimizers:
            optimizer.step()
        with torch.no_grad():
            alpha.clamp_(min=config.lr_teacher * MIN_LR_FRACTION)
        losses.append(grads.loss)
        soft = targets if config.soft_labels else None
        seconds += time.perf_counter() - began
        done = iteration + 1
        if path is not None and (done % config.checkpoint_every == 0 or done == config.iterations):
            _save_state(path, syn, state["labels"], alpha, optimizers, losses, seconds, soft)
        if callback is not None:
            callback(iteration, grads.loss)
    return DistillResult(syn.detach().clone(), state["labels"], float(alpha.detach()), losses, seconds, soft,
                         matching_warnings(losses, config))


def matching_warnings(losses: Sequence[float], config: TeslaConfig) -> list[str]:
    """Returns one-line warnings about the settings (empty when there is none to give): when the first
    OVERSHOOT_WINDOW iterations' normalized matching loss averages above OVERSHOOT_LOSS, the student's syn_steps
    steps at lr_teacher end far from the expert's target: TESLA answers by shrinking the learned lr and pushing
    the images away from the data, and such a set can score below random real images."""
    first = list(losses[:OVERSHOOT_WINDOW])
    if not first or (mean := sum(first) / len(first)) <= OVERSHOOT_LOSS:
        return []
    return [f"the first matching losses average {mean:.1f}: after {config.syn_steps} student steps at lr "
            f"{config.lr_teacher:g} the student ends {mean ** 0.5:.1f} times the expert's own move away from the "
            f"expert's epoch t+{config.expert_epochs}; try fewer --syn-steps or a lower --lr-teacher, and compare "
            "the set with `curate distill-eval --baselines random`"]


def _initial_state(images: torch.Tensor, labels: torch.Tensor, classes: int,
                   config: TeslaConfig) -> dict[str, torch.Tensor]:
    import torch

    syn, syn_labels = init_synthetic(images, labels, classes, config.ipc, config.seed)
    return {"images": syn, "labels": syn_labels, "lr": torch.tensor(config.lr_teacher, dtype=images.dtype),
            "losses": torch.zeros(0, dtype=torch.float64), "seconds": torch.tensor(0.0, dtype=torch.float64)}


def _save_state(path: Path, syn: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor,
                optimizers: tuple[torch.optim.Optimizer, ...], losses: list[float], seconds: float,
                soft: torch.Tensor | None) -> None:
    import torch

    state = {"images": syn.detach().clone(), "labels": labels, "lr": alpha.detach().clone(),
             "losses": torch.tensor(losses, dtype=torch.float64), "seconds": torch.tensor(seconds, dtype=torch.float64)}
    if soft is not None:
        state["soft_labels"] = soft
    for name, optimizer in zip(("images_momentum", "lr_momentum"), optimizers, strict=True):
        (param,) = optimizer.param_groups[0]["params"]
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            state[name] = buffer.detach().clone()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    RunDir(path.parent).write_bytes(path.name, buffer.getvalue())


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    return read_weights(path, "the checkpoint")


def _restore_momentum(optimizers: tuple[torch.optim.Optimizer, ...], state: dict[str, torch.Tensor]) -> None:
    for name, optimizer in zip(("images_momentum", "lr_momentum"), optimizers, strict=True):
        if name in state:
            (param,) = optimizer.param_groups[0]["params"]
            optimizer.state[param]["momentum_buffer"] = state[name].clone()
