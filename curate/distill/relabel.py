"""FKD-style soft-label relabelling (SRe2L / CDA's third step; reference VILA-Lab/SRe2L, relabel/ and validate/):
for every training epoch of the student, one RandomResizedCrop box and horizontal-flip flag per image, and the
teacher's logits on that crop; the student then trains on exactly those crops with the KL divergence at
temperature T to the teacher's softened outputs.

    crops = relabel(teacher, images, RelabelConfig(epochs=300))
    write_relabel(set_folder, crops)                            # <set>/relabel.safetensors
    model = train_on_set(images, labels, classes, EvalConfig(), crops=crops)

The reference's recipe, kept: crops by torchvision's RandomResizedCrop.get_params (scale (0.08, 1), ratio (3/4, 4/3),
ten attempts, then the whole square image), a flip with probability 1/2, resized bilinearly back to the image side;
the teacher in eval mode; logits stored as float16 (relabel.sh's --use-fp16); the student's loss
KLDivLoss(reduction='batchmean')(log_softmax(student / T), softmax(teacher / T)) with no other augmentation (no DSA).

Departures: (1) each (epoch, image) draws its crop from its own generator, seeded by (seed, epoch, image), so the
crops do not depend on the batch size, the image order in a batch or how many images the set holds (the reference
draws from a seeded loader, which ties the labels to its batch size); (2) the student's batches reshuffle freely,
because the labels are stored per image, not per batch; (3) the loss is multiplied by T^2 (Hinton et al.): the
reference leaves that line commented out but trains with AdamW, which a constant loss scale does not change, while the
evaluation protocol here trains with SGD at a fixed lr, where T^2 keeps the gradients as large as cross-entropy's;
(4) no mixup/CutMix (the reference's --mix-type; the papers' small-image runs do not use it); (5) crops are taken
from the normalized float images, not from 8-bit pixels before normalization (the same up to rounding).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from curate.distill.layout import RELABEL
from curate.rundir import RunDir

if TYPE_CHECKING:
    import torch
    from torch import nn

ATTEMPTS = 10  # RandomResizedCrop's tries before it falls back to the whole image
RATIO = (3 / 4, 4 / 3)
FORMAT = "curate-relabel-1"


@dataclass(frozen=True)
class RelabelConfig:
    """The relabelling: student epochs that get labels (the student reuses them modulo this count), the KD
    temperature (SRe2L's train_FKD.sh: 20), RandomResizedCrop's scale range, horizontal flips on or off, the
    teacher's batch (speed only: the labels do not depend on it) and the seed (the reference's --fkd-seed)."""

    epochs: int = 300
    temperature: float = 20.0
    min_scale: float = 0.08
    max_scale: float = 1.0
    flip: bool = True
    batch: int = 256
    seed: int = 42

    def check(self) -> None:
        """Raises ValueError for a configuration no relabelling can run with."""
        if self.epochs < 1 or self.batch < 1:
            raise ValueError(f"relabel epochs and batch must be at least 1, got {self.epochs} and {self.batch}")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"crop scales must satisfy 0 < min <= max <= 1, got {self.min_scale}, {self.max_scale}")
        if not self.temperature > 0 or self.seed < 0:
            raise ValueError(f"temperature must be > 0 and seed >= 0, got {self.temperature} and {self.seed}")


@dataclass
class SoftCrops:
    """A set's relabelling: boxes (int64 epochs x images x 4: top, left, height, width in pixels), flips (bool
    epochs x images), the teacher's logits on those crops (float16 epochs x images x classes), the images' side
    and the configuration that made them."""

    config: RelabelConfig
    image_size: int
    boxes: torch.Tensor
    flips: torch.Tensor
    logits: torch.Tensor

    @property
    def epochs(self) -> int:
        """Returns the number of stored epochs."""
        return int(self.boxes.shape[0])

    @property
    def images(self) -> int:
        """Returns the number of images relabelled."""
        return int(self.boxes.shape[1])

    @property
    def classes(self) -> int:
        """Returns the number of classes of the teacher's logits."""
        return int(self.logits.shape[-1])

    def epoch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (boxes, flips, logits) of student epoch `index`: the stored epoch index % epochs."""
        stored = index % self.epochs
        return self.boxes[stored], self.flips[stored], self.logits[stored]


def _box(draws: list[float], size: int, config: RelabelConfig) -> tuple[int, int, int, int]:
    """Returns RandomResizedCrop.get_params' (top, left, height, width) on a size x size image, from 4 draws in
    [0, 1) per attempt; the whole image when no attempt fits (its fallback for a square image)."""
    low, high = math.log(RATIO[0]), math.log(RATIO[1])
    for attempt in range(ATTEMPTS):
        scale, ratio, top, left = draws[4 * attempt:4 * attempt + 4]
        area = size * size * (config.min_scale + (config.max_scale - config.min_scale) * scale)
        aspect = math.exp(low + (high - low) * ratio)
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= size and 0 < h <= size:
            return int(top * (size - h + 1)), int(left * (size - w + 1)), h, w
    return 0, 0, size, size


def draw_crops(images: int, size: int, config: RelabelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (boxes: int64 epochs x images x 4 as top, left, height, width; flips: bool epochs x images) for
    `images` square images of side `size`; image n's crop in epoch e comes from a generator seeded
    (config.seed, e, n) alone."""
    import numpy as np
    import torch

    boxes = np.empty((config.epochs, images, 4), np.int64)
    flips = np.zeros((config.epochs, images), bool)
    for epoch in range(config.epochs):
        for image in range(images):
            draws = np.random.default_rng([config.seed, epoch, image]).random(4 * ATTEMPTS + 1).tolist()
            boxes[epoch, image] = _box(draws, size, config)
            flips[epoch, image] = config.flip and draws[-1] < 0.5
    return torch.from_numpy(boxes), torch.from_numpy(flips)


def _sources(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Returns (lower index, upper index, weight of the upper), each N x size, of bilinear resampling (half-pixel
    centres, edges clamped: F.interpolate with align_corners=False) of spans [start, start + length) to `size`."""
    import torch

    target = torch.arange(size, device=start.device, dtype=torch.float32)
    source = ((target + 0.5) * (length.float()[:, None] / size) - 0.5).clamp(min=0)
    last = (length - 1)[:, None]
    lower = torch.minimum(source.floor().long(), last)
    upper = torch.minimum(lower + 1, last)
    return start[:, None] + lower, start[:, None] + upper, source - lower


def apply_crops(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """Returns the crops (N x C x size x size) of the images (N x C x H x W) at the boxes (N x 4: top, left,
    height, width), resized bilinearly (torchvision's resized_crop) and flipped horizontally where `flips`;
    differentiable w.r.t. the images. A whole-image box of the images' side without a flip returns them unchanged."""
    import torch

    boxes = boxes.to(images.device, torch.int64)
    flips = flips.to(images.device, torch.bool)[:, None]
    n, c, _, width = images.shape
    top, bottom, down = _sources(boxes[:, 0], boxes[:, 2], size)
    left, right, across = _sources(boxes[:, 1], boxes[:, 3], size)
    left, right, across = (torch.where(flips, t.flip(1), t) for t in (left, right, across))
    down = down[:, None, :, None].to(images.dtype)
    rows = (images.gather(2, top[:, None, :, None].expand(n, c, size, width)) * (1 - down)
            + images.gather(2, bottom[:, None, :, None].expand(n, c, size, width)) * down)
    across = across[:, None, None, :].to(images.dtype)
    return (rows.gather(3, left[:, None, None, :].expand(n, c, size, size)) * (1 - across)
            + rows.gather(3, right[:, None, None, :].expand(n, c, size, size)) * across)


def relabel(teacher: nn.Module, images: torch.Tensor, config: RelabelConfig = RelabelConfig()) -> SoftCrops:
    """Returns the SoftCrops of the images (N x C x S x S, normalized as the teacher expects): per epoch of
    `config` and image a crop box and flip (draw_crops) and the teacher's float16 logits on apply_crops of it
    (eval mode, batches of config.batch on the teacher's device). The teacher's train/eval mode is restored."""
    import torch

    config.check()
    if images.dim() != 4 or images.shape[-1] != images.shape[-2] or len(images) == 0:
        raise ValueError(f"relabel needs N x C x S x S images, got {tuple(images.shape)}")
    size = images.shape[-1]
    boxes, flips = draw_crops(len(images), size, config)
    device = next(teacher.parameters(), images).device
    training = teacher.training
    teacher.eval()
    logits = []
    try:
        with torch.inference_mode():
            for epoch in range(config.epochs):
                logits.append(torch.cat([
                    teacher(apply_crops(images[s:s + config.batch].to(device), boxes[epoch, s:s + config.batch],
                                        flips[epoch, s:s + config.batch], size)).half().cpu()
                    for s in range(0, len(images), config.batch)]))
    finally:
        teacher.train(training)
    return SoftCrops(config, size, boxes, flips, torch.stack(logits))


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Returns T^2 * KL(softmax(teacher / T) || softmax(student / T)) averaged over the batch (KLDivLoss with
    reduction 'batchmean', the reference's), for N x K logits; differentiable w.r.t. the student's."""
    import torch.nn.functional as F

    t = float(temperature)
    target = F.softmax(teacher.float() / t, dim=1)
    return F.kl_div(F.log_softmax(student / t, dim=1), target, reduction="batchmean") * (t * t)


def check_crops(crops: SoftCrops, images: torch.Tensor, classes: int) -> None:
    """Raises ValueError when the soft crops do not belong to these images (count, side) and classes."""
    if (crops.images, crops.image_size, crops.classes) != (len(images), images.shape[-1], classes):
        raise ValueError(f"the soft crops are of {crops.images} images of side {crops.image_size} over "
                         f"{crops.classes} classes; the set has {len(images)} of side {images.shape[-1]} over "
                         f"{classes}")


def kd_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, crops: SoftCrops,
             epoch: int, batch_size: int, generator: torch.Generator) -> None:
    """Trains `model` one epoch in place on the stored crops of `epoch` (modulo crops.epochs): shuffled batches,
    each image cropped by apply_crops (no other augmentation), kd_loss against the teacher's stored logits."""
    import torch

    boxes, flips, logits = crops.epoch(epoch)
    size = images.shape[-1]
    for batch in torch.randperm(len(images), generator=generator).split(batch_size):
        x = apply_crops(images[batch.to(images.device)], boxes[batch], flips[batch], size)
        loss = kd_loss(model(x), logits[batch].to(images.device), crops.config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def save_soft_crops(path: str | Path, crops: SoftCrops) -> Path:
    """Writes the soft crops as safetensors (boxes, flips, logits; the configuration and image side as metadata)
    atomically (RunDir.write_bytes); returns the path."""
    import torch
    from safetensors.torch import save

    path = Path(path)
    tensors = {"boxes": crops.boxes.to("cpu", torch.int64).contiguous(),
               "flips": crops.flips.to("cpu", torch.bool).contiguous(),
               "logits": crops.logits.to("cpu", torch.float16).contiguous()}
    metadata = {"format": FORMAT, "config": json.dumps(asdict(crops.config), sort_keys=True),
                "image_size": str(crops.image_size)}
    return RunDir(path.parent).write_bytes(path.name, save(tensors, metadata=metadata))


def load_soft_crops(path: str | Path) -> SoftCrops:
    """Returns the SoftCrops stored at `path`; raises ValueError when the file is not a consistent relabelling."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a curate relabelling ({FORMAT})")
        crops = SoftCrops(RelabelConfig(**json.loads(metadata["config"])), int(metadata["image_size"]),
                          f.get_tensor("boxes"), f.get_tensor("flips"), f.get_tensor("logits"))
    epochs, images = crops.boxes.shape[:2]
    side = crops.image_size
    top, left, height, width = crops.boxes.unbind(-1)
    if (crops.boxes.shape != (epochs, images, 4) or crops.flips.shape != (epochs, images)
            or crops.logits.shape[:2] != (epochs, images) or epochs != crops.config.epochs
            or bool((height < 1).any() | (width < 1).any() | (top < 0).any() | (left < 0).any()
                    | (top + height > side).any() | (left + width > side).any())):
        raise ValueError(f"{path} holds inconsistent soft crops")
    return crops


def write_relabel(folder: str | Path, crops: SoftCrops) -> Path:
    """Writes the soft crops as `relabel.safetensors` in a distilled set's folder (before its distilled.json, which
    marks the set finished); returns the path. `curate distill-eval` trains the set's networks on them."""
    return save_soft_crops(Path(folder) / RELABEL, crops)
