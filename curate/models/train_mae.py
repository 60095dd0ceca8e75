"""Training a small masked autoencoder from scratch on a pool's images (`curate train-mae`), for patch-drop exports.

MAE's recipe at small scale: random 75% masking per image, the loss on the dropped patches only (optionally on
per-patch normalized pixels), AdamW (betas 0.9/0.95, weight decay 0.05 on weight matrices and tokens), linear
warmup then cosine decay, random resized crops (scale 0.5-1) and horizontal flips. Images are resized whole to
the MAE's square input (encode.square_pixels), the same transform a patch-drop export applies. Every random draw
comes from generators seeded with `seed`: the same inputs and seed give the same weights on CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from curate.errors import UsageError
from curate.models.mae import MaskedAutoencoderViT, dropped_loss, random_keep
from curate.models.mae_config import MAEConfig, MAETrainConfig
from curate.models.mae_io import WEIGHTS_FILE
from curate.models.pairs import normalize, random_resized_crop
from curate.models.train import TrainResult, learning_rate, param_groups

TRAIN_RUN = "train_run"
INFO_FILE = "train_info.json"


def scratch_mae(config: MAEConfig, seed: int) -> MaskedAutoencoderViT:
    """Returns a new MAE initialised from `seed` (the global RNG is restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MaskedAutoencoderViT(config)


def augment(pixels: torch.Tensor, size: int, config: MAETrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Returns float B x 3 x size x size random resized crops in [0, 1] of uint8 pixels, half of them flipped."""
    crops = random_resized_crop(pixels, size, config.crop_scale, config.crop_ratio, generator)
    flip = torch.rand(len(crops), generator=generator) < 0.5
    crops[flip] = crops[flip].flip(3)
    return crops


def train_mae_model(mae: MaskedAutoencoderViT, pixels: torch.Tensor, config: MAETrainConfig,
                    device: str = "cpu") -> TrainResult:
    """Trains `mae` in place on uint8 N x 3 x S x S images for config.steps steps; returns its TrainResult
    (mean loss per step, samples seen, steps, seconds). The model is left in eval mode."""
    if not 0 < config.mask_ratio < 1:
        raise UsageError(f"--mask-ratio must be in (0, 1), got {config.mask_ratio}")
    mae.to(device).train()
    size, batch = mae.config.img_size, min(config.batch_size, len(pixels))
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(param_groups(mae, config.weight_decay), lr=config.lr, betas=config.betas)
    result, start, order = TrainResult(), time.perf_counter(), torch.empty(0, dtype=torch.long)
    total = config.steps * batch
    for _ in tqdm(range(config.steps), desc="train-mae", unit="step", disable=not config.progress):
        if len(order) < batch:
            order = torch.cat([order, torch.randperm(len(pixels), generator=generator)])
        indices, order = order[:batch], order[batch:]
        images = normalize(augment(pixels[indices], size, config, generator), mae.config.mean, mae.config.std)
        ids_keep = random_keep(len(indices), mae.config.num_patches, config.mask_ratio, generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(result.samples_seen, batch, total, config, batch)
        losses = dropped_loss(mae, images.to(device), ids_keep.to(device))
        optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        optimizer.step()
        result.record(losses.detach().cpu())
    mae.eval()
    result.seconds = time.perf_counter() - start
    return result


def check_out(out: Path) -> None:
    """Raises UsageError when `out` exists with content that is not a train-mae folder's."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the MAE")
    if out.is_dir() and any(out.iterdir()) and not ((out / WEIGHTS_FILE).exists() or (out / TRAIN_RUN).exists()):
        raise UsageError(f"--out {out} holds other files; give a new folder (or an earlier train-mae output)")
