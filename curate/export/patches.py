"""Patch-drop webdataset exports (the pixel half of Dataset Quantization) and their MAE reconstruction.

`curate export RUN --format webdataset --patch-drop F --mae MODEL` resizes each selected image whole to the MAE's
square input, ranks its patches by the run's CLIP (curate.models.saliency.clip_saliency), and writes per sample
{uid}.patches.png (the kept patches, lossless) instead of the image, beside the usual {uid}.txt and {uid}.json,
whose "patch_mask" field holds the mask (curate.pixels.codec; in the json rather than a member of its own, since
every tar member costs a 512-byte header and padding, more than a small image's saved bytes). Readers rebuild images
with `read_patch_sample` or `iter_patch_export`; `--reconstruct` writes a plain webdataset of the rebuilt images
(PNG at the original size), from a run directly or from a patch-drop export folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa

from curate.errors import UsageError
from curate.export.wds import WebDatasetWriter, sample_json, sample_members
from curate.pixels.codec import PatchRecord, decode_patches, encode_patches, select_patches, to_original_size

if TYPE_CHECKING:
    from PIL import Image

    from curate.models.mae import MaskedAutoencoderViT
    from curate.rundir import RunDir

PATCHES, MASK = "patches.png", "patch_mask"  # the member {uid}.patches.png; the mask's field in {uid}.json


@dataclass(frozen=True)
class PatchDrop:
    """What --patch-drop F --mae MODEL [--reconstruct] ask for: drop fraction, MAE, and whether to rebuild."""

    fraction: float
    mae: str
    reconstruct: bool = False
    device: str = "auto"


def patch_drop_options(fmt: str, fraction: float | None, mae: str | None, reconstruct: bool = False,
                       device: str = "auto") -> PatchDrop | None:
    """Returns the PatchDrop the export options ask for (None for a plain export); raises UsageError for a bad
    combination or value."""
    if fraction is None:
        if reconstruct:
            raise UsageError("--reconstruct of a run needs --patch-drop F (or give a patch-drop export folder)")
        if mae is not None:
            raise UsageError("--mae applies only with --patch-drop or --reconstruct")
        return None
    if not 0 <= fraction < 1:
        raise UsageError(f"--patch-drop must be a fraction in [0, 1), got {fraction}")
    if mae is None:
        raise UsageError("--patch-drop needs --mae MODEL (an MAE checkpoint or a `curate train-mae` folder)")
    if fmt != "webdataset":
        raise UsageError(f"--patch-drop writes webdataset tars only, not --format {fmt}")
    return PatchDrop(fraction, mae, reconstruct, device)


@dataclass
class PatchDropper:
    """Loads the MAE (and, when patches are dropped, the run's CLIP) once, then chooses each batch's patches."""

    run: RunDir
    options: PatchDrop
    stats: dict = field(default_factory=lambda: dict(source_image_bytes=0, kept_patches=0, total_patches=0))

    def __post_init__(self):
        from curate.graph import require_current
        from curate.models.loading import ModelSpec, load_model, pick_device
        from curate.models.mae_io import load_mae

        device = pick_device(self.options.device)
        self.mae = load_mae(self.options.mae, device)
        self.clip = None
        if self.options.fraction > 0:
            spec = require_current(self.run, "embed")["config"]["model"]  # the run's own embedding model
            self.clip = load_model(ModelSpec(**spec), device)

    def drop(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """Returns (uint8 N x S x S x 3 pixels at the MAE's input, bool N x L keep masks, original sizes)."""
        from curate.models.encode import square_pixels
        from curate.models.saliency import clip_saliency

        config = self.mae.config
        images = table.column("image").to_pylist()
        decoded = [square_pixels(data, config.img_size) for data in images]
        pixels = np.stack([d[0] for d in decoded])
        if self.clip is None:
            scores = np.zeros((len(pixels), config.num_patches))
        else:
            scores = clip_saliency(self.clip, pixels, table.column("caption").to_pylist(), config.patch_size)
        keep = select_patches(scores, self.options.fraction)
        self.stats["source_image_bytes"] += sum(len(b) for b in images)
        self.stats["kept_patches"] += int(keep.sum())
        self.stats["total_patches"] += keep.size
        return pixels, keep, [d[1] for d in decoded]

    def summary(self) -> dict:
        """Returns the patch-drop settings and the counts so far."""
        c = self.mae.config
        return dict(fraction=self.options.fraction, mae=str(Path(self.options.mae).resolve()),
                    input_size=c.img_size, patch_size=c.patch_size,
                    saliency=None if self.clip is None else "clip image-caption gradient x input") | self.stats


class PatchDropWriter(WebDatasetWriter):
    """Writes {uid}.patches.png instead of the image, plus the usual txt, and json with the mask in it."""

    batch_rows: ClassVar[int] = 256

    def __init__(self, folder: Path, shard_size: int, progress: bool = True, dropper: PatchDropper | None = None):
        super().__init__(folder, shard_size, progress)
        self.dropper = dropper
        self.written = dict(patch_bytes=0, mask_bytes=0)

    def members_of(self, table: pa.Table) -> list[list[tuple[str, bytes]]]:
        """Returns each sample's patches, mask, caption and json members."""
        if table.num_rows == 0:
            return []
        pixels, keep, sizes = self.dropper.drop(table)
        p = self.dropper.mae.config.patch_size
        found = []
        for i, row in enumerate(table.to_pylist()):
            png, mask = encode_patches(pixels[i], keep[i], p, sizes[i])
            self.written["patch_bytes"] += len(png)
            self.written["mask_bytes"] += len(json.dumps(mask, separators=(",", ":")))
            uid, source = row["uid"], row["sha256"]
            found.append([(f"{uid}.{PATCHES}", png), (f"{uid}.txt", row["caption"].encode()),
                          (f"{uid}.json", sample_json(row | {"sha256": None}, {"source_sha256": source, MASK: mask}))])
        return found

    def summary(self) -> dict:
        """Returns {"patch_drop": settings, source image bytes, patch and mask bytes written, their ratio}."""
        stats = self.dropper.summary() | self.written
        stats["written_bytes"] = self.written["patch_bytes"] + self.written["mask_bytes"]
        stats["bytes_ratio"] = round(stats["written_bytes"] / max(1, stats["source_image_bytes"]), 4)
        return {"patch_drop": stats}


class ReconstructWriter(WebDatasetWriter):
    """Writes a plain webdataset whose images are the MAE's reconstructions (PNG at the original size)."""

    batch_rows: ClassVar[int] = 256

    def __init__(self, folder: Path, shard_size: int, progress: bool = True, dropper: PatchDropper | None = None):
        super().__init__(folder, shard_size, progress)
        self.dropper = dropper
        self.image_bytes = 0

    def members_of(self, table: pa.Table) -> list[list[tuple[str, bytes]]]:
        """Returns each sample's reconstructed image, caption and json members."""
        from curate.models.mae import reconstruct

        if table.num_rows == 0:
            return []
        pixels, keep, sizes = self.dropper.drop(table)
        rebuilt = reconstruct(self.dropper.mae, pixels, keep)
        found = []
        for i, row in enumerate(table.to_pylist()):
            png = _png(to_original_size(rebuilt[i], sizes[i]))
            self.image_bytes += len(png)
            new = row | {"image": png, "image_format": "png", "sha256": hashlib.sha256(png).hexdigest()}
            found.append(sample_members(new, {"source_sha256": row["sha256"], "reconstructed": True}))
        return found

    def summary(self) -> dict:
        """Returns {"patch_drop": settings and counts, with the reconstructed image bytes written}."""
        return {"patch_drop": self.dropper.summary() | dict(reconstructed=True, image_bytes=self.image_bytes)}


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def tar_samples(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yields (key, {extension: bytes}) of a webdataset tar's samples, members grouped by the name's first dot
    as webdataset does; members outside the tar's top level are refused, never extracted."""
    key, members = None, {}
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            if "/" in info.name or "." not in info.name:
                raise ValueError(f"{path}: unexpected member {info.name!r}")
            name, ext = info.name.split(".", 1)
            if name != key and key is not None:
                yield key, members
                members = {}
            key = name
            members[ext] = tar.extractfile(info).read()
    if key is not None:
        yield key, members


def read_patch_sample(members: dict[str, bytes], mae: MaskedAutoencoderViT, full_size: bool = True) -> Image.Image:
    """Returns the image rebuilt from one patch-drop sample's members ({"patches.png": ..., "json": ...}, as
    webdataset yields them): kept patches exactly, the rest from `mae` (see curate.models.mae.load_mae); at
    the original size, or at the MAE's input size with full_size=False."""
    from PIL import Image as PILImage

    from curate.models.mae import reconstruct

    record = stored_patches(members)
    _check_input(record.input_size, record.patch_size, mae)
    pixels = reconstruct(mae, record.pixels[None], record.keep[None])[0]
    return to_original_size(pixels, record.original_size) if full_size else PILImage.fromarray(pixels)


def stored_patches(members: dict[str, bytes]) -> PatchRecord:
    """Returns the PatchRecord of one patch-drop sample's members (the PNG, and the mask in its json)."""
    meta = json.loads(members["json"])
    if not isinstance(meta, dict) or MASK not in meta:
        raise ValueError(f"the sample's json has no {MASK!r}: not a patch-drop export")
    return decode_patches(members[PATCHES], meta[MASK])


def _check_input(size: int, patch: int, mae: MaskedAutoencoderViT) -> None:
    if (size, patch) != (mae.config.img_size, mae.config.patch_size):
        raise UsageError(f"the patches were cut at {size} px in {patch} px patches, the MAE takes "
                         f"{mae.config.img_size} px in {mae.config.patch_size} px patches; use the export's MAE")


@dataclass
class RebuiltSample:
    """One reconstructed sample of a patch-drop export: key, image (original size), caption and its json."""

    key: str
    image: Image.Image
    caption: str
    meta: dict


def iter_patch_export(folder: str | Path, mae: MaskedAutoencoderViT, batch_size: int = 64) -> Iterator[RebuiltSample]:
    """Yields every sample of a patch-drop export folder (its tars in name order) rebuilt by `mae`."""
    from curate.models.mae import reconstruct

    batch: list[tuple] = []
    for tar in sorted(Path(folder).glob("*.tar")):
        for key, members in tar_samples(tar):
            batch.append((key, stored_patches(members), members))
            if len(batch) == batch_size:
                yield from _rebuild(batch, mae, reconstruct)
                batch = []
    yield from _rebuild(batch, mae, reconstruct)


def _rebuild(batch: list[tuple], mae: MaskedAutoencoderViT, reconstruct) -> Iterator[RebuiltSample]:
    if not batch:
        return
    for _, record, _ in batch:
        _check_input(record.input_size, record.patch_size, mae)
    pixels = reconstruct(mae, np.stack([r.pixels for _, r, _ in batch]), np.stack([r.keep for _, r, _ in batch]))
    for (key, record, members), rebuilt in zip(batch, pixels, strict=True):
        image = to_original_size(rebuilt, record.original_size)
        yield RebuiltSample(key, image, members["txt"].decode("utf-8"), json.loads(members["json"]))


def rebuilt_rows(samples: Iterator[RebuiltSample], rows: int) -> Iterator[pa.Table]:
    """Yields tables of `rows` catalog-shaped rows (uid, image png, caption, json, ...) of rebuilt samples, for
    WebDatasetWriter to write as a plain webdataset."""
    batch = []
    for sample in samples:
        if not re.fullmatch(WebDatasetWriter.uid_pattern, sample.key):
            raise UsageError(f"patch-drop sample key {sample.key!r} is not a valid uid: {WebDatasetWriter.uid_rule}")
        png = _png(sample.image)
        meta = sample.meta | {"reconstructed": True}
        batch.append(dict(uid=sample.key, image=png, image_format="png", sha256=hashlib.sha256(png).hexdigest(),
                          caption=sample.caption, json=json.dumps(meta), key=meta.get("key"), url=meta.get("url"),
                          width=sample.image.width, height=sample.image.height))
        if len(batch) == rows:
            yield pa.Table.from_pylist(batch)
            batch = []
    if batch:
        yield pa.Table.from_pylist(batch)
