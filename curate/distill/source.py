"""The labelled real images a distillation learns from: a run's samples selected by a SQL predicate, labelled by a
samples column or by zero-shot classification of their image embeddings (curate.distill.zeroshot), decoded at a
fixed size and normalized per channel."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from curate.errors import UsageError
from curate.rundir import RunDir

if TYPE_CHECKING:
    import torch

BATCH_ROWS = 1024
MAX_CLASSES = 10_000  # ImageNet-21k's order of magnitude; more is an id or a caption, not a class
INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
ONE_LABEL_SOURCE = "give either label_column (--label-column COLUMN) or zeroshot_classes (--labels zeroshot:FILE)"


@dataclass
class LabelledImages:
    """Real images for distillation: float N x 3 x S x S images normalized per channel ((x - mean) / std, x in
    [0, 1]), int64 class indices into `classnames` (the distinct label values: class_order), the samples' uids, and how
    many selected samples were left out: `unlabelled` (a null label; for zero-shot labels, no image embedding)
    and `skipped` (reason -> count: no image bytes, or an image that did not decode), with the uids of the samples
    whose image did not decode (`undecodable`: the set records them, so none vanishes unnamed)."""

    images: torch.Tensor
    labels: torch.Tensor
    classnames: list[str]
    uids: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    selected: int = 0
    unlabelled: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    undecodable: list[str] = field(default_factory=list)

    def class_counts(self) -> dict[str, int]:
        """Returns class name -> how many images it has, in class order."""
        counts = np.bincount(self.labels.numpy(), minlength=len(self.classnames))
        return {name: int(n) for name, n in zip(self.classnames, counts, strict=True)}

    def to_pixels(self, images: torch.Tensor) -> np.ndarray:
        """Returns normalized float B x 3 x S x S images as uint8 B x S x S x 3 RGB (clipped to [0, 255])."""
        import torch

        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        pixels = (images.detach().cpu().float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def labelled_selection(run: RunDir, where: str | None, label_column: str | None, image_size: int,
                       progress: bool = False, zeroshot_classes: Sequence[str] | None = None) -> LabelledImages:
    """Returns the LabelledImages of `SELECT ... FROM samples WHERE (where)` (None: every sample), each image
    resized on its short side and center-cropped to image_size x image_size, in the shards' order. The label is
    the samples column `label_column` (cast to text), or, with `zeroshot_classes` (and label_column None), the
    name of the class the run's embedding model scores the sample's image embedding highest for. Samples with a
    null label (or no image embedding), without image bytes or whose image does not decode are left out and
    counted. Raises UsageError for an unknown column, a bad predicate, a run without current embeddings for
    zero-shot labels, or a selection with no labelled image."""
    from curate.catalogs import connect
    from curate.catalogs.selection import Writable, iter_selected, select
    from curate.graph import require_current
    from curate.io.samples import ReadOptions
    from curate.io.sources import SourceImages

    entry = require_current(run, "ingest")
    label_of = _label_reader(run, label_column, zeroshot_classes)
    con = connect(run)
    sources = SourceImages(ReadOptions(**entry["config"]["options"]))
    try:
        selection = select(con, where, Writable(needs_images=True))
        matching = "" if where is None else f" matching {where!r}"
        if selection.samples + sum(selection.skipped.values()) == 0:
            raise UsageError(f"no samples to distill: the run has none{matching}")
        labels = label_of(con, selection.predicate)
        _check_class_count(labels, label_column)
        pixels, names, uids, undecodable = _decode(iter_selected(con, selection, BATCH_ROWS), labels, sources,
                                                   image_size, progress)
    finally:
        con.close()
        sources.close()
    skipped = dict(selection.skipped) | ({"image did not decode": len(undecodable)} if undecodable else {})
    unlabelled = sum(1 for value in labels.values() if value is None)
    if not names:
        missing = label_column if zeroshot_classes is None else "image embedding"
        raise UsageError(f"no labelled images to distill{matching}: {unlabelled} selected samples have no "
                         f"{missing}, {sum(skipped.values())} have no usable image")
    declared = entry.get("class_labels", {}).get(label_column, []) if label_column is not None else []
    data = _normalized(pixels, names, uids, selection.samples + sum(selection.skipped.values()), unlabelled,
                       skipped, class_order(set(names), declared))
    data.undecodable = undecodable
    return data


def _check_class_count(labels: dict[str, str | None], column: str | None) -> None:
    """Raises UsageError before any image is decoded when the labels hold more classes than a set can have (a
    column of ids or captions named as the label, most likely)."""
    classes = len({value for value in labels.values() if value is not None})
    if classes > MAX_CLASSES:
        raise UsageError(f"--label-column {column} has {classes:,} distinct values among the selected samples, more "
                         f"than the {MAX_CLASSES:,} classes a distilled set can hold: is it a class column? narrow "
                         "the selection with --where, or label another column")


def _label_reader(run: RunDir, label_column: str | None,
                  zeroshot_classes: Sequence[str] | None) -> Callable[..., dict[str, str | None]]:
    """Returns (catalog connection, checked predicate) -> uid -> label of the selected samples, once the labels'
    source is known to be good: the column exists, or the classes are valid and the run has current embeddings
    (the zero-shot classifier is built here, before any image is read)."""
    from curate.catalogs.views import require_columns

    if (label_column is None) == (zeroshot_classes is None):
        raise UsageError(ONE_LABEL_SOURCE)
    if zeroshot_classes is None:
        require_columns(run, [label_column])
        return lambda con, predicate: _labels(con, predicate, label_column)
    from curate.distill.zeroshot import check_classes, classifier, embedding_model, zeroshot_labels

    check_classes(zeroshot_classes)
    classes = list(zeroshot_classes)
    weights = classifier(embedding_model(run), classes)
    return lambda con, predicate: zeroshot_labels(con, predicate, classes, weights)


def _labels(con, predicate: str, column: str) -> dict[str, str | None]:
    """Returns uid -> the label column's value as text (None when null) of the selected samples."""
    from curate.catalogs.views import quoted

    sql = f"SELECT uid, CAST({quoted(column)} AS VARCHAR) FROM samples WHERE (\n{predicate}\n)"
    return dict(con.sql(sql).fetchall())


def _decode(tables, labels: dict[str, str | None], sources, size: int,
            progress: bool) -> tuple[list[np.ndarray], list[str], list[str], int]:
    """Returns (uint8 S x S x 3 pixels, label, uid) of each labelled sample whose image decodes, and the uids of
    those whose image did not."""
    from tqdm import tqdm

    from curate.models.encode import image_to_pixels

    decode: Callable[[bytes], np.ndarray | None] = lambda data: _try(image_to_pixels, data, size)  # noqa: E731
    pixels: list[np.ndarray] = []
    names: list[str] = []
    uids: list[str] = []
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, \
            tqdm(desc="decode", unit="sample", disable=not progress) as bar:
        for table in tables:
            table = table.filter(np.array([labels.get(u) is not None for u in table["uid"].to_pylist()]))
            if not table.num_rows:
                continue
            images = sources.attach(table).column("image").to_pylist()
            for uid, array in zip(table["uid"].to_pylist(), pool.map(decode, images), strict=True):
                if array is None:
                    failed.append(uid)
                    continue
                pixels.append(array)
                names.append(labels[uid])
                uids.append(uid)
            bar.update(len(images))
    return pixels, names, uids, failed


def _try(decode: Callable[[bytes, int], np.ndarray], data: bytes | None, size: int) -> np.ndarray | None:
    if data is None:
        return None
    try:
        return decode(data, size)
    except Exception:  # any decoder failure: the sample is counted as skipped, never the run's end
        return None


def class_order(present: set[str], declared: Sequence[str]) -> list[str]:
    """Returns the classes in index order: those a Hugging Face ClassLabel `declared`, in its order, then the
    others, integers (a `.cls`) by value before other names in text order."""
    first = [name for name in dict.fromkeys(declared) if name in present]
    rest = present - set(first)
    return first + sorted(rest, key=lambda n: (0, int(n), "") if INTEGER.fullmatch(n) else (1, 0, n))


def _normalized(pixels: list[np.ndarray], names: list[str], uids: list[str], selected: int, unlabelled: int,
                skipped: dict[str, int], classnames: list[str]) -> LabelledImages:
    """Returns the LabelledImages of decoded pixels, normalized by their own per-channel mean and std, their labels
    indices into `classnames`."""
    import torch

    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div_(255)
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp(min=1e-3)
    images = (images - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    index = {name: i for i, name in enumerate(classnames)}
    labels = torch.tensor([index[n] for n in names], dtype=torch.int64)
    return LabelledImages(images.contiguous(), labels, classnames, uids, tuple(mean.tolist()), tuple(std.tolist()),
                          selected, unlabelled, skipped)
