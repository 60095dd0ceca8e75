"""Image-text pairs for CLIP training: a run's selected samples decoded once into memory, and their augmentation.

Memory: the images are kept as one uint8 tensor of N x 3 x S x S bytes, S = ceil(image_size * 8 / 7) (the
classic 256-for-224 margin, so RandomResizedCrop has room): 37 px for the tiny 32 px model, about 4.1 KB an
image, so 300,000 trusted images take 1.2 GB; a 224 px model stores 256 px, 197 KB an image (100,000 images:
19.7 GB). That suits trusted sets of up to a few hundred thousand small images, the size DFN training
uses at small scale; `load_pairs` refuses a selection whose pixels would not fit in its memory limit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from curate.errors import UsageError
from curate.models.encode import image_to_pixels, square_pixels
from curate.rundir import RunDir

if TYPE_CHECKING:
    import torch

DECODE_MARGIN = 8 / 7
BATCH_ROWS = 1024


@dataclass
class PairDataset:
    """Trusted image-text pairs in memory: uids and captions, and uint8 N x 3 x S x S pixels (S >= model input).

    Indexing gives (pixels, caption) like a torch map-style Dataset, so torch samplers apply to it.
    """

    uids: list[str]
    captions: list[str]
    pixels: torch.Tensor

    def __len__(self) -> int:
        """Returns the number of pairs."""
        return len(self.uids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        """Returns (uint8 3 x S x S pixels, caption) of pair `index`."""
        return self.pixels[index], self.captions[index]

    @property
    def nbytes(self) -> int:
        """Returns the bytes the pixels take."""
        return self.pixels.numel()


def stored_size(image_size: int) -> int:
    """Returns the side the images are decoded to for a model input of `image_size`: ceil(8/7 of it)."""
    return math.ceil(image_size * DECODE_MARGIN)


def default_memory_limit() -> int:
    """Returns half of the machine's physical memory in bytes (8 GiB when it can't be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def load_pairs(
    run: RunDir, where: str | None, image_size: int, memory_limit: int | None = None, progress: bool = True,
    square: bool = False,
) -> PairDataset:
    """Returns the pairs of `SELECT ... FROM samples WHERE (where)` of an ingested run, images decoded once.

    `where` is the user's SQL predicate on the samples view (None: every sample); rows come in the shards'
    order. Images are center-cropped to stored_size(image_size), or with `square` resized whole to image_size
    (encode.square_pixels, what a patch-drop export feeds its MAE). Raises UsageError for a bad predicate, an
    empty selection, metadata-only samples (no image bytes), or pixels over
    `memory_limit` bytes (default: half of physical memory).
    """
    from curate.catalogs import connect
    from curate.catalogs.selection import iter_selected, select
    from curate.graph import require_current
    from curate.io.samples import ReadOptions
    from curate.io.sources import SourceImages

    entry = require_current(run, "ingest")
    size = image_size if square else stored_size(image_size)
    decode = (lambda data: square_pixels(data, size)[0]) if square else (lambda data: image_to_pixels(data, size))
    sources = SourceImages(ReadOptions(**entry["config"]["options"]))
    con = connect(run)
    try:
        selection = select(con, where)
        _check_selection(selection, size, memory_limit or default_memory_limit())
        return _decode_selection(iter_selected(con, selection, BATCH_ROWS), selection.samples, sources, size,
                                 decode, progress)
    finally:
        con.close()
        sources.close()


def _decode_selection(tables, count: int, sources, size: int, decode: Callable[[bytes], np.ndarray],
                      progress: bool) -> PairDataset:
    """Returns the PairDataset of `count` catalog rows arriving as tables, each image decoded to size x size by
    `decode`."""
    import torch

    pixels = torch.empty((count, 3, size, size), dtype=torch.uint8)
    uids: list[str] = []
    captions: list[str] = []
    with (
        ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool,
        tqdm(total=count, desc="decode pairs", unit="sample", disable=not progress) as bar,
    ):
        for table in tables:
            images = sources.attach(table).column("image").to_pylist()
            decoded = np.stack(list(pool.map(decode, images)))
            start = len(uids)
            pixels[start:start + len(images)] = torch.from_numpy(decoded).permute(0, 3, 1, 2)
            uids += table["uid"].to_pylist()
            captions += table["caption"].to_pylist()
            bar.update(len(images))
    return PairDataset(uids, captions, pixels)


def _check_selection(selection, size: int, memory_limit: int) -> None:
    """Raises UsageError when the selection is empty, has no image bytes, or its pixels exceed the limit."""
    where = selection.where
    if selection.samples == 0:
        matching = "" if where is None else f" matching {where!r}"
        raise UsageError(f"no samples to train on: the run has none{matching}")
    if selection.metadata_only_uid is not None:
        raise UsageError(
            f"sample {selection.metadata_only_uid} has no image bytes (DataComp metadata only); "
            "train on shards with images"
        )
    needed = selection.samples * 3 * size * size
    if needed > memory_limit:
        raise UsageError(
            f"{selection.samples} images at {size}x{size} need {needed / 2**30:.1f} GiB in memory, over the "
            f"limit of {memory_limit / 2**30:.1f} GiB; select fewer trusted samples"
        )


def random_resized_crop(
    pixels: torch.Tensor, size: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Returns float B x 3 x size x size crops in [0, 1] of uint8 B x 3 x S x S pixels, one random box each.

    As torchvision's RandomResizedCrop: box area a uniform fraction `scale` of the image, aspect ratio
    log-uniform in `ratio`, position uniform; boxes too large for the image are clamped to it (instead of
    torchvision's rejection sampling). Resampled bilinearly; no flips or colour changes, which could make a
    caption false. Every random draw comes from `generator`.
    """
    import torch
    import torch.nn.functional as F

    batch = pixels.shape[0]  # images are square (load_pairs center-crops them)
    area = torch.empty(batch).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(batch).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    box_w = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the image's width and height
    box_h = torch.sqrt(area / aspect).clamp(max=1.0)
    left = torch.rand(batch, generator=generator) * (1 - box_w)
    top = torch.rand(batch, generator=generator) * (1 - box_h)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = box_w, box_h
    theta[:, 0, 2] = 2 * left + box_w - 1  # box centre in [-1, 1] coordinates
    theta[:, 1, 2] = 2 * top + box_h - 1
    grid = F.affine_grid(theta.to(pixels.device), [batch, 3, size, size], align_corners=False)
    images = pixels.float().div_(255)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Returns (images - mean) / std per channel of float B x 3 x H x W images in [0, 1]."""
    import torch

    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t
