"""Squeeze (SRe2L, CDA): a batch-norm teacher trained on the real labelled images; the recovery
(curate.distill.cda) matches its BN layers' running statistics and its predictions.

Architectures (`--teacher`, recorded in the set's options and the teacher file):

    resnet18  torchvision's ResNet-18 adapted to small images as the reference's small-dataset squeeze
              (SRe2L small_dataset/squeeze_cifar.py): conv1 3x3 stride 1 padding 1 without bias, no max pool.
    convnet   the distillation papers' ConvNet (curate.distill.convnet's geometry: depth x [conv 3x3 -> norm ->
              ReLU -> avg pool 2x2], then one linear layer) with BatchNorm2d in place of the instance norm, for the
              smallest sets.

Reference recipe (squeeze_cifar.py): SGD lr 0.1, momentum 0.9, weight decay 5e-4, cosine annealing stepped per
epoch over 200 epochs, batch 128, RandomCrop(32, padding=4) (black padding) and a horizontal flip, cross-entropy.
Departures: the padding is side // 8 pixels (the reference's 4 at 32 px) so that tiny images are not mostly
padding; a last batch of a single image is skipped (batch norm cannot train on one value per channel); every random
choice comes from the seed given.

The teacher is saved as safetensors (its state_dict, BN running statistics included) with metadata naming the
architecture and shape, written to a temporary name and renamed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from curate.errors import UsageError
from curate.models.weights import read_weights
from curate.rundir import RunDir

if TYPE_CHECKING:
    import torch
    from torch import nn

ARCHS = ("resnet18", "convnet")
SHAPE_KEYS = ("arch", "channels", "classes", "image_size", "width", "depth")


@dataclass(frozen=True)
class TeacherConfig:
    """How the teacher trains: architecture (ARCHS), epochs, SGD settings, batch, the ConvNet's width/depth (unused
    by resnet18), and the crop-and-flip augmentation on or off. Defaults: the reference's small-dataset recipe."""

    arch: str = "resnet18"
    epochs: int = 200
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    width: int = 128
    depth: int = 3
    augment: bool = True


def build_teacher(arch: str, channels: int, classes: int, image_size: int, width: int = 128,
                  depth: int = 3) -> nn.Module:
    """Returns a freshly initialized (global RNG) teacher of the architecture; raises UsageError for an unknown one."""
    from torch import nn

    from curate.distill.convnet import ConvNetSpec

    if arch == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=classes)
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return model
    if arch != "convnet":
        raise UsageError(f"unknown --teacher {arch!r}; choose one of {', '.join(ARCHS)}")
    spec = ConvNetSpec(channels, classes, image_size, width, depth)
    layers: list[nn.Module] = []
    cin = channels
    for block in range(depth):
        layers += [nn.Conv2d(cin, width, 3, padding=spec.first_padding if block == 0 else 1), nn.BatchNorm2d(width),
                   nn.ReLU(), nn.AvgPool2d(2, 2)]
        cin = width
    layers += [nn.Flatten(), nn.Linear(width * spec.feature_size**2, classes)]
    return nn.Sequential(*layers)


def take_pixels(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Returns out[i, c, r, k] = x[i, c, rows[i, r], cols[i, k]]: a per-image window (rows: N x H', cols: N x W'
    indices into x's N x C x H x W), differentiable w.r.t. x."""
    n, c, _, w = x.shape
    rows, cols = rows.to(x.device), cols.to(x.device)
    picked = x.gather(2, rows[:, None, :, None].expand(n, c, rows.shape[1], w))
    return picked.gather(3, cols[:, None, None, :].expand(n, c, rows.shape[1], cols.shape[1]))


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int,
              pad_value: Sequence[float] | None = None) -> torch.Tensor:
    """Returns the images randomly cropped back to their size after padding `pad` pixels on every side with
    `pad_value` per channel (None: 0), each flipped horizontally with probability 1/2 (per-image draws)."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    fill = torch.zeros(c) if pad_value is None else torch.tensor(pad_value, dtype=x.dtype)
    padded = F.pad(x - fill.to(x).view(1, c, 1, 1), (pad, pad, pad, pad)) + fill.to(x).view(1, c, 1, 1)
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = take_pixels(padded, offsets[:, :1] + torch.arange(h), offsets[:, 1:] + torch.arange(w))
    return torch.where(flips.to(x.device).view(n, 1, 1, 1), out.flip(3), out)


def train_teacher(images: torch.Tensor, labels: torch.Tensor, classes: int, config: TeacherConfig, seed: int,
                  pad_value: Sequence[float] | None = None) -> nn.Module:
    """Trains a teacher of config.arch on the (N x C x S x S, normalized) images from an initialization seeded
    `seed`; returns it in eval mode, on the images' device. `pad_value`: the crop padding per channel (the normalized
    value of a black pixel, -mean / std, as the reference pads before normalizing; None: 0)."""
    import torch
    import torch.nn.functional as F

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_teacher(config.arch, images.shape[1], classes, images.shape[-1], config.width, config.depth)
    model = model.to(images.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    generator = torch.Generator().manual_seed(seed)
    labels, pad = labels.to(images.device), max(1, images.shape[-1] // 8)
    model.train()
    for _ in range(config.epochs):
        for batch in torch.randperm(len(images), generator=generator).split(config.batch_size):
            if len(batch) < 2:
                continue
            batch = batch.to(images.device)
            x = crop_flip(images[batch], generator, pad, pad_value) if config.augment else images[batch]
            loss = F.cross_entropy(model(x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
    return model.eval()


def shape_meta(config: TeacherConfig, channels: int, classes: int, image_size: int) -> dict[str, str]:
    """Returns the metadata that rebuilds a teacher of `config` for images of this shape (SHAPE_KEYS)."""
    return dict(arch=config.arch, channels=str(channels), classes=str(classes), image_size=str(image_size),
                width=str(config.width), depth=str(config.depth), config=json.dumps(asdict(config), sort_keys=True))


def save_teacher(path: str | Path, model: nn.Module, meta: dict[str, str]) -> Path:
    """Writes the model's state_dict (BN running statistics included) and `meta` (string values, with every key of
    SHAPE_KEYS) as safetensors atomically (RunDir.write_bytes); returns the path."""
    from safetensors.torch import save

    missing = [k for k in SHAPE_KEYS if k not in meta]
    if missing:
        raise ValueError(f"teacher metadata lacks {', '.join(missing)}")
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return RunDir(path.parent).write_bytes(path.name, save(tensors, metadata={k: str(v) for k, v in meta.items()}))


def teacher_meta(path: str | Path) -> dict[str, str]:
    """Returns the metadata stored with the teacher at `path`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_teacher(path: str | Path) -> nn.Module:
    """Returns the teacher saved at `path`, rebuilt from its metadata, in eval mode on the CPU."""
    from safetensors.torch import load_file

    meta = teacher_meta(path)
    model = build_teacher(meta["arch"], int(meta["channels"]), int(meta["classes"]), int(meta["image_size"]),
                          int(meta["width"]), int(meta["depth"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def load_checkpoint(file: str | Path, arch: str, channels: int, classes: int, image_size: int, width: int = 128,
                    depth: int = 3) -> nn.Module:
    """Returns a teacher of `arch` (ARCHS, this module's layouts) with the weights of a PyTorch checkpoint `file`
    (a state_dict, or a dict holding one under 'model', 'state_dict' or 'net', keys optionally prefixed 'module.'
    by DataParallel), in eval mode; raises UsageError for a file that is not such a checkpoint of that shape."""
    state = read_weights(file, "--teacher-checkpoint")
    for key in ("model", "state_dict", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise UsageError(f"--teacher-checkpoint {file} holds no state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_teacher(arch, channels, classes, image_size, width, depth)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise UsageError(f"--teacher-checkpoint {file} does not fit a {arch} teacher of {classes} classes at "
                         f"{image_size} px: {(lines[1:] or lines or [''])[0][:200]}") from None
    return model.eval()
