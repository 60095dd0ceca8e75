"""Held-out evaluation sets: a Parquet file (jpg bytes, label, optional caption) or a folder of class
subfolders of images (ImageNet's layout), decoded once to the model's input size.

Images that cannot be decoded are skipped and counted, so one bad file does not end an evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.errors import UsageError
from curate.models.encode import image_to_pixels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class HeldOut:
    """A decoded held-out set: N x S x S x 3 uint8 pixels, class indices into `classnames`, optional captions."""

    pixels: np.ndarray
    labels: np.ndarray
    classnames: list[str]
    captions: list[str] | None
    skipped: int = 0

    def __len__(self) -> int:
        """Returns the number of decoded images."""
        return len(self.labels)


def load_heldout(path: str | Path, image_size: int) -> HeldOut:
    """Returns the held-out set at `path` (Parquet file or class folder), images resized and center-cropped.

    Raises UsageError when the path is missing, is neither form, lacks the needed columns, or holds no
    image that decodes.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--heldout {path} does not exist; give a Parquet file (jpg, label) or a class folder")
    if path.is_dir():
        images, labels, captions = _folder_items(path)
    elif path.suffix == ".parquet":
        images, labels, captions = _parquet_items(path)
    else:
        raise UsageError(f"--heldout {path} is neither a .parquet file nor a folder of class subfolders")
    return _decode(path, images, labels, captions, image_size)


def _parquet_items(path: Path) -> tuple[list, list[str], list[str] | None]:
    """Returns the (image bytes, label text, captions or None) columns of a held-out Parquet file."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        missing = [c for c in ("jpg", "label") if c not in names]
        if missing:
            raise UsageError(f"--heldout {path} lacks column(s) {', '.join(missing)}; it needs jpg and label")
        table = pq.read_table(path, columns=["jpg", "label"] + (["caption"] if "caption" in names else []))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UsageError(f"--heldout {path} is not a readable Parquet file: {exc}") from None
    labels = ["" if v is None else str(v) for v in table["label"].to_pylist()]
    captions = table["caption"].to_pylist() if "caption" in table.column_names else None
    if captions is not None and any(c is None for c in captions):
        captions = None  # retrieval needs a caption for every image
    return table["jpg"].to_pylist(), labels, captions


def _folder_items(path: Path) -> tuple[list, list[str], None]:
    """Returns (image paths, class names, None) of a folder of class subfolders, both sorted."""
    images, labels = [], []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                images.append(file)
                labels.append(folder.name.replace("_", " "))
    if not images:
        raise UsageError(f"--heldout {path} has no class subfolders holding images ({', '.join(IMAGE_SUFFIXES)})")
    return images, labels, None


def _decode(path: Path, images: Iterable, labels: list[str], captions: list[str] | None,
            image_size: int) -> HeldOut:
    """Returns the HeldOut of the items that decode; the others are counted in `skipped`."""
    pixels, kept = [], []
    for index, image in enumerate(images):
        try:
            data = image.read_bytes() if isinstance(image, Path) else image
            pixels.append(image_to_pixels(data, image_size))
            kept.append(index)
        except Exception:  # PIL raises many types for a corrupt file; each means "skip this image"
            continue
    if not kept:
        raise UsageError(f"--heldout {path}: none of its {len(labels)} images could be decoded")
    classnames = sorted(set(labels))
    index_of = {name: i for i, name in enumerate(classnames)}
    return HeldOut(
        pixels=np.stack(pixels), labels=np.array([index_of[labels[i]] for i in kept], dtype=np.int64),
        classnames=classnames, captions=None if captions is None else [captions[i] for i in kept],
        skipped=len(labels) - len(kept),
    )
