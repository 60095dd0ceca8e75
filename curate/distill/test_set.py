"""The held-out images distill-eval tests on: a held-out set as `curate evaluate` takes it (a Parquet file of jpg and
label, or a folder of class folders), or any labelled input `curate ingest` reads (WebDataset shards whose class is
the `.cls` member, Hugging Face Parquet files or `save_to_disk` folders with a label column, globs of them).

The second kind is ingested into a temporary run (removed afterwards) and read through the product's own path, so
its bad samples are quarantined and counted as ingest counts them; its labels are the label column's values as text
(a Hugging Face ClassLabel's class names, a `.cls` integer as its digits), matched by name to the set's classes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curate.errors import UsageError
from curate.io.schema import SAMPLES_SCHEMA
from curate.models.heldout import IMAGE_SUFFIXES, HeldOut, load_heldout
from curate.rundir import RunDir

LABEL_COLUMNS = ("cls", "label")  # tried in order when no label column is named


def load_test_set(path: str, image_size: int, label_column: str | None = None) -> HeldOut:
    """Returns the held-out set at `path` decoded to image_size (see the module docstring); `skipped` counts the
    images left out (quarantined by ingest, unlabelled, or not decoding). Raises UsageError (one line) for a path
    that is neither kind, a label column the input lacks, or an input with no labelled image."""
    if _heldout_layout(Path(path)):
        if label_column not in (None, "label"):
            raise UsageError(f"--test {path} is a held-out set labelled by its `label` column or class folders; "
                             "--test-label-column applies to shards")
        return load_heldout(path, image_size)
    return _ingested(path, image_size, label_column)


def _heldout_layout(path: Path) -> bool:
    """Returns whether `path` is a held-out Parquet file (jpg and label columns, not a Hugging Face file, whose
    ClassLabel names only ingest reads) or a folder of class folders of images."""
    if path.is_file() and path.suffix == ".parquet":
        try:
            schema = pq.read_schema(path)
            return {"jpg", "label"} <= set(schema.names) and b"huggingface" not in (schema.metadata or {})
        except (OSError, ValueError):
            return True  # load_heldout says why it cannot be read
    if path.is_dir() and not (path / "state.json").exists():
        return any(file.suffix.lower() in IMAGE_SUFFIXES for folder in path.iterdir() if folder.is_dir()
                   for file in folder.iterdir())
    return False


def _ingested(path: str, image_size: int, label_column: str | None) -> HeldOut:
    from curate.catalogs.views import sample_columns
    from curate.distill.source import labelled_selection
    from curate.stages.ingest import ingest

    with tempfile.TemporaryDirectory(prefix="curate-test-set-") as folder:
        run = RunDir(Path(folder) / "run")
        try:
            counts = ingest([path], run, progress=False)
        except UsageError as exc:
            raise UsageError(f"--test {path}: {exc}") from None
        columns = sample_columns(run)
        column = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
        if column is None or column not in columns:
            wanted = " or ".join(LABEL_COLUMNS) if column is None else repr(column)
            own = [c for c in columns if c not in SAMPLES_SCHEMA.names]
            raise UsageError(f"--test {path} has no label column {wanted}; name one with --test-label-column (its "
                             f"own columns: {', '.join(own) or 'none'})")
        try:
            data = labelled_selection(run, None, column, image_size)
        except UsageError as exc:
            raise UsageError(f"--test {path}: {exc}") from None
    left_out = counts.get("quarantined", 0) + data.unlabelled + sum(data.skipped.values())
    return HeldOut(pixels=data.to_pixels(data.images), labels=data.labels.numpy().astype(np.int64),
                   classnames=data.classnames, captions=None, skipped=left_out)

