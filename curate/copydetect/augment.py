"""The augmentations that make copies, for training a copy descriptor: each call turns a batch of images into one
random "copy" of each, as the web copies images (SSCD's strong augmentation set at small scale).

Per image, in order: a random resized crop (area AugmentConfig.crop_scale of the image), a shift with padding
(the image shrunk and placed on a plain canvas), a horizontal flip, colour jitter (brightness, contrast,
saturation), a Gaussian blur, an overlay (a short random text or a filled mark), and a JPEG re-encode at a random
quality. Every draw comes from the torch generator passed in (PIL's steps from a numpy generator seeded by it),
so a seed gives the same views.
"""

from __future__ import annotations

import io
import string
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from curate.models.pairs import random_resized_crop


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation: ranges, and the probability that an image gets it."""

    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    pad_p: float = 0.3
    pad_shrink: tuple[float, float] = (0.6, 1.0)  # the image's side on the canvas, as a fraction
    flip_p: float = 0.5
    jitter: float = 0.3  # brightness, contrast and saturation factors drawn in [1 - jitter, 1 + jitter]
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.2, 1.5)
    overlay_p: float = 0.3
    jpeg_p: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)


def copy_views(pixels: torch.Tensor, size: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Returns float B x 3 x size x size images in [0, 1]: one random copy of each uint8 B x 3 x S x S image."""
    images = random_resized_crop(pixels, size, config.crop_scale, config.crop_ratio, generator)
    images = _pad_shift(images, config, generator)
    flip = torch.rand(len(images), generator=generator) < config.flip_p
    images[flip] = images[flip].flip(3)
    images = _colour_jitter(images, config.jitter, generator)
    images = _blur(images, config, generator)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return _pil_steps(images, config, np.random.default_rng(seed))


def _pad_shift(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Returns the images with some shrunk onto a plain canvas of a random grey at a random place."""
    batch = len(images)
    chosen = torch.rand(batch, generator=generator) < config.pad_p
    shrink = torch.empty(batch).uniform_(*config.pad_shrink, generator=generator)
    shrink = torch.where(chosen, shrink, torch.ones(batch))
    offset = (torch.rand(batch, 2, generator=generator) * 2 - 1) * (1 - shrink)[:, None]
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1 / shrink, 1 / shrink
    theta[:, :, 2] = -offset / shrink[:, None]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    placed = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(images[:, :1]), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    canvas = torch.rand(batch, 1, 1, 1, generator=generator)
    return placed + (1 - inside) * canvas


def _colour_jitter(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Returns the images with a random brightness, contrast and saturation factor each, clamped to [0, 1]."""
    batch = len(images)
    factors = 1 + (torch.rand(3, batch, 1, 1, 1, generator=generator) * 2 - 1) * strength
    images = images * factors[0]
    grey = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - grey) * factors[1] + grey
    luma = (0.299 * images[:, :1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:])
    return ((images - luma) * factors[2] + luma).clamp(0, 1)


def _blur(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Returns the images with some blurred by a 5 x 5 Gaussian of a random sigma (one depthwise conv)."""
    batch = len(images)
    chosen = torch.rand(batch, generator=generator) < config.blur_p
    if not chosen.any():
        return images
    sigma = torch.empty(int(chosen.sum())).uniform_(*config.blur_sigma, generator=generator)
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel1d = torch.exp(-taps[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel1d = kernel1d / kernel1d.sum(1, keepdim=True)
    kernel = (kernel1d[:, :, None] * kernel1d[:, None, :]).repeat_interleave(3, 0)[:, None]
    blurred = images[chosen].reshape(1, -1, *images.shape[2:])
    blurred = F.conv2d(F.pad(blurred, (2, 2, 2, 2), mode="replicate"), kernel, groups=kernel.shape[0])
    images = images.clone()
    images[chosen] = blurred.reshape(-1, 3, *images.shape[2:])
    return images


def _pil_steps(images: torch.Tensor, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Returns the images with some overlaid with text or a mark and some JPEG re-encoded (PIL, per image)."""
    overlay = rng.random(len(images)) < config.overlay_p
    jpeg = rng.random(len(images)) < config.jpeg_p
    if not (overlay.any() or jpeg.any()):
        return images
    pixels = images.mul(255).round().byte().permute(0, 2, 3, 1).numpy()
    out = images.clone()
    for i in np.flatnonzero(overlay | jpeg):
        im = Image.fromarray(pixels[i])
        if overlay[i]:
            _overlay(im, rng)
        if jpeg[i]:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=int(rng.integers(*config.jpeg_quality, endpoint=True)))
            im = Image.open(buf).convert("RGB")
        out[i] = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    return out


def _overlay(im: Image.Image, rng: np.random.Generator) -> None:
    """Draws a short random text or a filled rectangle/ellipse of a random colour somewhere on `im`."""
    draw, side = ImageDraw.Draw(im), im.size[0]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    x, y = (int(v) for v in rng.integers(0, max(1, side * 3 // 4), 2))
    if rng.random() < 0.5:
        text = "".join(rng.choice(list(string.ascii_letters + string.digits), int(rng.integers(2, 8))))
        draw.text((x, y), text, fill=colour)
        return
    w, h = (int(v) for v in rng.integers(max(2, side // 10), max(3, side // 3), 2))
    shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
    shape((x, y, x + w, y + h), fill=colour)
