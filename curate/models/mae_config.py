"""The MAE's shape and training settings: plain dataclasses, importable without torch (the CLI's defaults)."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MAEConfig:
    """The MAE's shape and input convention; the defaults are curate's tiny MAE (32 px images, 4 px patches)."""

    img_size: int = 32
    patch_size: int = 4
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 2
    decoder_embed_dim: int = 64
    decoder_depth: int = 2
    decoder_num_heads: int = 2
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def grid(self) -> int:
        """Returns the patches per side."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Returns the patches per image."""
        return self.grid**2


@dataclass
class MAETrainConfig:
    """How to train: steps, batch, AdamW and schedule, masking, augmentation, seed."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 30
    mask_ratio: float = 0.75
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    seed: int = 0
    progress: bool = True
