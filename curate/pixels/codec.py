"""Choosing and storing an image's kept patches: the keep mask from patch scores, and the lossless stored form.

Stored form of one image at the MAE's input size S with p x p patches on a g x g grid: an S x S RGB PNG
(lossless) whose dropped patches are black, and a small JSON mask: {"version", "input_size": S, "patch_size": p,
"grid": [g, g], "kept": hex bitmap of the g*g patches (row-major, most significant bit first), "original_size":
[width, height]}. Nothing is pickled; decoding checks every field against the PNG.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

MASK_VERSION = 2


def kept_count(patches: int, drop: float) -> int:
    """Returns how many of `patches` a drop fraction keeps: floor(patches * (1 - drop)) as MAE's masking does,
    and at least one, so no image is stored empty."""
    return max(1, math.floor(patches * (1 - drop) + 1e-9))


def select_patches(scores: np.ndarray, drop: float) -> np.ndarray:
    """Returns the bool N x L keep mask of N x L patch scores: each row keeps its kept_count(L, drop) highest
    scores; ties go to the lower patch index, NaN scores rank last."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    n, length = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")[:, : kept_count(length, drop)]
    keep = np.zeros((n, length), dtype=bool)
    np.put_along_axis(keep, order, True, axis=1)
    return keep


@dataclass
class PatchRecord:
    """A decoded stored image: S x S x 3 uint8 pixels (zeros where dropped), the bool keep mask over the g*g
    patches, the patch size, and the original (width, height)."""

    pixels: np.ndarray
    keep: np.ndarray
    patch_size: int
    original_size: tuple[int, int]

    @property
    def input_size(self) -> int:
        """Returns S, the side the patches were cut from."""
        return self.pixels.shape[0]


def encode_patches(pixels: np.ndarray, keep: np.ndarray, patch_size: int,
                   original_size: tuple[int, int]) -> tuple[bytes, dict]:
    """Returns (PNG bytes of the image with its dropped patches blacked out, the mask: a JSON-ready dict) of
    uint8 S x S x 3 pixels. The blacked-out runs cost PNG almost nothing, and the kept patches keep their
    neighbours, which compresses better than cutting them apart; the mask lists the kept patches as a hex
    bitmap (row-major, most significant bit first)."""
    size = pixels.shape[0]
    if pixels.shape != (size, size, 3) or size % patch_size:
        raise ValueError(f"pixels must be S x S x 3 with S a multiple of {patch_size}, got {pixels.shape}")
    keep = np.asarray(keep, dtype=bool)
    masked = np.where(pixel_mask(keep[None], patch_size)[0, ..., None], pixels, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(masked).save(buffer, "PNG", compress_level=9)
    g = size // patch_size
    mask = dict(version=MASK_VERSION, input_size=size, patch_size=patch_size, grid=[g, g],
                kept=np.packbits(keep).tobytes().hex(), original_size=[int(v) for v in original_size])
    return buffer.getvalue(), mask


def decode_patches(png: bytes, meta: dict) -> PatchRecord:
    """Returns the PatchRecord of a stored (PNG, mask dict) pair; raises ValueError when they do not agree."""
    if not isinstance(meta, dict):
        raise ValueError("the patch mask is not a JSON object")
    if meta.get("version") != MASK_VERSION:
        raise ValueError(f"unknown patch mask version {meta.get('version')!r}")
    size, p = int(meta["input_size"]), int(meta["patch_size"])
    g = size // p
    if g * p != size or list(meta["grid"]) != [g, g]:
        raise ValueError("patch mask fields are inconsistent")
    keep = _kept_bitmap(meta["kept"], g * g)
    with Image.open(io.BytesIO(png)) as im:
        image = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if image.shape != (size, size, 3):
        raise ValueError(f"patch image is {image.shape}, the mask says {size} x {size}")
    pixels = np.where(pixel_mask(keep[None], p)[0, ..., None], image, 0).astype(np.uint8)
    width, height = meta["original_size"]
    return PatchRecord(pixels, keep, p, (int(width), int(height)))


def _kept_bitmap(text: object, patches: int) -> np.ndarray:
    """Returns the bool keep mask of a hex bitmap; raises ValueError unless it holds `patches` bits, some set."""
    try:
        raw = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != -(-patches // 8):
        raise ValueError(f"the mask's kept bitmap must be {-(-patches // 8)} hex bytes for {patches} patches")
    keep = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:patches].astype(bool)
    if not keep.any():
        raise ValueError("the mask keeps no patch")
    return keep


def to_original_size(pixels: np.ndarray, original_size: tuple[int, int]) -> Image.Image:
    """Returns S x S x 3 pixels as a PIL image resized (bicubic) back to the original (width, height)."""
    image = Image.fromarray(pixels)
    return image if image.size == tuple(original_size) else image.resize(original_size, Image.Resampling.BICUBIC)


def pixel_mask(keep: np.ndarray, patch_size: int) -> np.ndarray:
    """Returns the bool N x S x S pixel mask of a bool N x L (g*g, row-major) patch mask."""
    g = math.isqrt(keep.shape[1])
    return np.repeat(np.repeat(keep.reshape(-1, g, g), patch_size, 1), patch_size, 2)


def mean_fill(pixels: np.ndarray, keep: np.ndarray, patch_size: int) -> np.ndarray:
    """Returns the baseline reconstruction of N x S x S x 3 pixels: dropped patches filled with the mean colour of
    each image's kept pixels (what a reader could do without an MAE)."""
    pixel_keep = pixel_mask(keep, patch_size)
    out = np.array(pixels, dtype=np.uint8, copy=True)
    for i in range(len(pixels)):
        colour = pixels[i][pixel_keep[i]].reshape(-1, 3).mean(0).round().astype(np.uint8)
        out[i][~pixel_keep[i]] = colour
    return out


def dropped_psnr(reconstructed: np.ndarray, target: np.ndarray, keep: np.ndarray, patch_size: int) -> float:
    """Returns the PSNR in dB (peak 255) of reconstructed vs target uint8 N x S x S x 3 over the dropped patches
    only (inf when nothing was dropped or they match exactly)."""
    pixel_drop = ~pixel_mask(keep, patch_size)
    if not pixel_drop.any():
        return math.inf
    err = (reconstructed.astype(np.float64) - target.astype(np.float64))[pixel_drop]
    mse = float((err**2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
