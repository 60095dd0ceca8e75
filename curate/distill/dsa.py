"""Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021) as the MTT/TESLA reference uses it.

Strategy 'color_crop_cutout_flip_scale_rotate' in the reference's single mode ('S'): each call picks one of the
six families uniformly at random and applies it, with parameters drawn per image:

- color: brightness x + (b - 0.5) * 1.0, then saturation (x - channel mean) * 2s + channel mean, then contrast
  (x - image mean) * (c + 0.5) + image mean, with b, s, c ~ U(0, 1);
- crop: a translation by up to round(0.125 * side) pixels each way, the uncovered border filled with zeros;
- cutout: a zeroed square of half the side at a random centre (clipped to the image);
- flip: horizontal, with probability 1/2;
- scale: x and y scaled by factors ~ U(1/1.2, 1.2) (bilinear resampling, zeros outside);
- rotate: by an angle ~ U(-15, 15) degrees (bilinear resampling, zeros outside).

Every operation is differentiable w.r.t. the images. The randomness is separated from the application: `draw`
makes a `DSAParams` from an explicit torch.Generator (so the same generator state gives the same augmentation), and
`apply` uses them; applying one `DSAParams` to two batches is the siamese use (the same transformation of real and
synthetic images). `batchwise=True` draws one transformation for the whole batch (the reference's seeded
'batchmode'), which applies to a batch of any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAConfig:
    """The augmentation's strategy and ranges (the reference's ParamDiffAug defaults)."""

    strategy: str = STRATEGY
    single: bool = True  # 'S' mode: one family per call; False applies every family in turn ('M')
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


@dataclass
class DSAParams:
    """One drawn augmentation: the families to apply, in order, and their random values (first dimension: one
    row per image, or 1 for a batch-wide draw)."""

    families: tuple[str, ...]
    values: dict[str, torch.Tensor] = field(default_factory=dict)


def draw(n: int, image_size: int, generator: torch.Generator, config: DSAConfig = DSAConfig(),
         batchwise: bool = False) -> DSAParams:
    """Returns the random parameters of one augmentation of `n` images of side `image_size`, drawn from
    `generator` only (one shared draw when `batchwise`)."""
    import torch

    families = tuple(config.strategy.split("_")) if config.strategy not in ("", "none", "None") else ()
    unknown = set(families) - set(_DRAWS)
    if unknown:
        raise ValueError(f"unknown DSA families: {sorted(unknown)}")
    if config.single and families:
        families = (families[int(torch.randint(len(families), (1,), generator=generator))],)
    rows = 1 if batchwise else n
    values: dict[str, torch.Tensor] = {}
    for family in families:
        values.update(_DRAWS[family](rows, image_size, generator, config))
    return DSAParams(families, values)


def apply(images: torch.Tensor, params: DSAParams, config: DSAConfig = DSAConfig()) -> torch.Tensor:
    """Returns the images (N x C x S x S) transformed by `params`; differentiable w.r.t. the images."""
    x = images
    for family in params.families:
        x = _APPLIES[family](x, params.values, config)
    return x.contiguous()


def augment(images: torch.Tensor, generator: torch.Generator, config: DSAConfig = DSAConfig()) -> torch.Tensor:
    """Returns the images under a fresh per-image augmentation drawn from `generator`."""
    return apply(images, draw(len(images), images.shape[-1], generator, config), config)


def _uniform(rows: int, generator: torch.Generator) -> torch.Tensor:
    import torch

    return torch.rand(rows, generator=generator, dtype=torch.float64)


def _draw_color(rows: int, size: int, generator: torch.Generator, config: DSAConfig) -> dict[str, torch.Tensor]:
    return {"brightness": _uniform(rows, generator), "saturation": _uniform(rows, generator),
            "contrast": _uniform(rows, generator)}


def _draw_crop(rows: int, size: int, generator: torch.Generator, config: DSAConfig) -> dict[str, torch.Tensor]:
    import torch

    shift = int(size * config.ratio_crop_pad + 0.5)
    return {"crop": torch.randint(-shift, shift + 1, (rows, 2), generator=generator)}


def _draw_cutout(rows: int, size: int, generator: torch.Generator, config: DSAConfig) -> dict[str, torch.Tensor]:
    import torch

    side = int(size * config.ratio_cutout + 0.5)
    return {"cutout": torch.randint(0, size + (1 - side % 2), (rows, 2), generator=generator)}


def _draw_flip(rows: int, size: int, generator: torch.Generator, config: DSAConfig) -> dict[str, torch.Tensor]:
    return {"flip": _uniform(rows, generator) < config.prob_flip}


def _draw_scale(rows: int, size: int, generator: torch.Generator, config: DSAConfig) -> dict[str, torch.Tensor]:
    import torch

    r = config.ratio_scale
    return {"scale": torch.stack([_uniform(rows, generator), _uniform(rows, generator)], 1) * (r - 1 / r) + 1 / r}


def _draw_rotate(rows: int, size: int, generator: torch.Generator, config: DSAConfig) -> dict[str, torch.Tensor]:
    return {"rotate": (_uniform(rows, generator) - 0.5) * 2 * config.ratio_rotate / 180 * math.pi}


def _column(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _apply_color(x: torch.Tensor, values: dict[str, torch.Tensor], config: DSAConfig) -> torch.Tensor:
    x = x + (_column(values["brightness"], x) - 0.5) * config.brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_column(values["saturation"], x) * config.saturation) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_column(values["contrast"], x) + config.contrast) + mean


def _apply_crop(x: torch.Tensor, values: dict[str, torch.Tensor], config: DSAConfig) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    shift = values["crop"].to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + shift[:, :1] + 1).clamp(0, h + 1)  # into the 1-px zero pad
    cols = (torch.arange(w, device=x.device)[None, :] + shift[:, 1:] + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    rows = rows.expand(n, h)[:, None, :, None].expand(n, c, h, w + 2)
    picked = padded.gather(2, rows)
    cols = cols.expand(n, w)[:, None, None, :].expand(n, c, h, w)
    return picked.gather(3, cols)


def _apply_cutout(x: torch.Tensor, values: dict[str, torch.Tensor], config: DSAConfig) -> torch.Tensor:
    import torch

    _, _, h, w = x.shape
    side_h, side_w = int(h * config.ratio_cutout + 0.5), int(w * config.ratio_cutout + 0.5)
    start = values["cutout"].to(x.device) - torch.tensor([side_h // 2, side_w // 2], device=x.device)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + side_h)
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + side_w)
    mask = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * mask[:, None].to(x.dtype)


def _apply_flip(x: torch.Tensor, values: dict[str, torch.Tensor], config: DSAConfig) -> torch.Tensor:
    import torch

    return torch.where(values["flip"].to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    theta = theta.to(device=x.device, dtype=x.dtype).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _apply_scale(x: torch.Tensor, values: dict[str, torch.Tensor], config: DSAConfig) -> torch.Tensor:
    import torch

    scale = values["scale"]
    zero = torch.zeros_like(scale[:, 0])
    theta = torch.stack([torch.stack([scale[:, 0], zero, zero], 1), torch.stack([zero, scale[:, 1], zero], 1)], 1)
    return _affine(x, theta)


def _apply_rotate(x: torch.Tensor, values: dict[str, torch.Tensor], config: DSAConfig) -> torch.Tensor:
    import torch

    angle = values["rotate"]
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta)


_DRAWS = {"color": _draw_color, "crop": _draw_crop, "cutout": _draw_cutout, "flip": _draw_flip,
          "scale": _draw_scale, "rotate": _draw_rotate}
_APPLIES = {"color": _apply_color, "crop": _apply_crop, "cutout": _apply_cutout, "flip": _apply_flip,
            "scale": _apply_scale, "rotate": _apply_rotate}
