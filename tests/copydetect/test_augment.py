"""The copy augmentations: seeded, shaped and in range, each one on its own doing what it says, and none when all
are off."""

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from curate.copydetect.augment import AugmentConfig, copy_views

NONE = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), pad_p=0, flip_p=0, jitter=0, blur_p=0,
                     overlay_p=0, jpeg_p=0)


def random_pixels(batch: int = 4, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def smooth_pixels(batch: int = 4, side: int = 32) -> torch.Tensor:
    """Returns gradients (JPEG and blur barely change them, overlays stand out)."""
    ramp = torch.linspace(0, 255, side)
    image = torch.stack([ramp[None].expand(side, side), ramp[:, None].expand(side, side),
                         torch.full((side, side), 128.0)])
    return image.round().byte()[None].repeat(batch, 1, 1, 1)


def views(pixels: torch.Tensor, config: AugmentConfig, seed: int = 0, size: int | None = None) -> torch.Tensor:
    return copy_views(pixels, size or pixels.shape[-1], config, torch.Generator().manual_seed(seed))


def test_copy_views_are_seeded_in_range_and_differ_from_the_source():
    pixels = random_pixels(6, 40)
    first, again, other = views(pixels, AugmentConfig(), 3, 32), views(pixels, AugmentConfig(), 3, 32), views(
        pixels, AugmentConfig(), 4, 32)
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1


def test_the_source_is_not_changed_and_each_image_gets_its_own_draws():
    pixels = random_pixels(1).repeat(4, 1, 1, 1)
    before = pixels.clone()
    out = views(pixels, AugmentConfig())
    assert torch.equal(pixels, before)
    assert all(not torch.equal(out[0], out[i]) for i in range(1, 4))


def test_every_augmentation_can_be_switched_off():
    pixels = random_pixels(3, 16)
    assert torch.allclose(views(pixels, NONE), pixels.float() / 255, atol=1e-5)


def test_a_flip_mirrors_the_image():
    pixels = random_pixels()
    assert torch.allclose(views(pixels, replace(NONE, flip_p=1.0)), pixels.flip(3).float() / 255, atol=1e-5)


def test_a_jpeg_re_encode_is_pils_at_the_drawn_quality():
    pixels = random_pixels(2)
    out = views(pixels, replace(NONE, jpeg_p=1.0, jpeg_quality=(30, 30)))
    for image, view in zip(pixels, out, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=30)
        expected = np.asarray(Image.open(buffer).convert("RGB"))
        assert np.array_equal((view * 255).round().byte().permute(1, 2, 0).numpy(), expected)


def test_padding_puts_the_shrunk_image_on_a_plain_grey_canvas():
    out = views(random_pixels(), replace(NONE, pad_p=1.0, pad_shrink=(0.5, 0.5)))
    grey = (out[:, 0] == out[:, 1]) & (out[:, 1] == out[:, 2])  # random colours are almost never grey
    assert grey.float().mean(dim=(1, 2)).min() > 0.6  # the image covers a quarter of the canvas


def test_a_crop_zooms_in():
    pixels = smooth_pixels()
    out = views(pixels, replace(NONE, crop_scale=(0.25, 0.25)))
    ranges = out[:, 0].amax(dim=(1, 2)) - out[:, 0].amin(dim=(1, 2))  # the horizontal ramp spans half as much
    assert torch.all(ranges < 0.6)


def test_a_blur_smooths_and_jitter_changes_colours():
    pixels = random_pixels()
    blurred = views(pixels, replace(NONE, blur_p=1.0, blur_sigma=(1.0, 1.0)))
    variation = (blurred[..., 1:] - blurred[..., :-1]).abs().mean()
    assert variation < 0.5 * (pixels[..., 1:].float() - pixels[..., :-1].float()).abs().mean() / 255
    jittered = views(pixels, replace(NONE, jitter=0.3))
    assert not torch.allclose(jittered, pixels.float() / 255, atol=1e-3) and 0 <= jittered.min() <= jittered.max() <= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_an_overlay_marks_part_of_the_image(seed):
    pixels = smooth_pixels(8, 64)
    changed = (views(pixels, replace(NONE, overlay_p=1.0), seed) - pixels.float() / 255).abs().amax(dim=1) > 0.02
    share = changed.float().mean(dim=(1, 2))
    assert torch.all(share > 0) and torch.all(share < 0.5)
