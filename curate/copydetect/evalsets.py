"""Evaluation image sets to decontaminate against, in any held-out form: a Parquet file of image bytes (a jpg, png,
image, ... column, as curate.io reads image shards; held-out files as curate.evaluate reads them), a folder of
images (recursive, any of curate.models.heldout.IMAGE_SUFFIXES, e.g. ImageNet's class folders), WebDataset .tar
shards (a file, a folder of them, a glob or a brace pattern such as eval-{000..009}.tar), or a mix in one folder.

Every image has an id that says which one it is: a folder's image its path relative to the folder; a member of a
tar its WebDataset key, a Parquet row its key (or uid) column, else its row index; inside a folder or a set of
several files, prefixed with the file's name ("val.tar/000123"). Member names are only ever ids: nothing is
extracted to disk. An item that cannot be read (a tar sample without an image, a cell that holds no bytes, a
shard cut short) is yielded with no bytes, so the caller counts it instead of failing.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec

from curate.errors import UsageError
from curate.io.parquet_shards import IMAGE_COLUMNS, KEY_COLUMNS, image_value_bytes
from curate.io.tars import read_tar_samples
from curate.models.heldout import IMAGE_SUFFIXES

FORMS = "a Parquet file of images, a folder of images, or WebDataset .tar shards (a file, folder, glob or {a..b})"
PATTERN_CHARS = "*?[{"


@dataclass(frozen=True)
class EvalSource:
    """One file of an evaluation set: its kind (image, tar or parquet), where it is (a path or fsspec URL), and
    the prefix of its images' ids ("" for a set of one file)."""

    kind: str
    url: str
    name: str


def _kind(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(".tar"):
        return "tar"
    if lower.endswith(".parquet"):
        return "parquet"
    return "image" if lower.endswith(IMAGE_SUFFIXES) else None


def eval_sources(against: str) -> list[EvalSource]:
    """Returns the files of the evaluation set at `against`, in a stable order; raises UsageError when it does
    not exist or holds no image file, tar or Parquet file."""
    path = Path(against)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p.name)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        sources = [EvalSource(_kind(p.name), str(p), p.relative_to(path).as_posix()) for p in files]
    elif path.is_file():
        if _kind(path.name) is None:
            raise UsageError(f"--against {against} is not an image, .tar or .parquet file; give {FORMS}")
        sources = [EvalSource(_kind(path.name), str(path), "")]
    elif any(ch in against for ch in PATTERN_CHARS) or "://" in against:
        from curate.io.inputs import expand_inputs

        urls = [task.url for task in expand_inputs([against])]
        sources = [EvalSource(_kind(u), u, posixpath.basename(u) if len(urls) > 1 else "") for u in urls]
    else:
        raise UsageError(f"--against {against} does not exist; give {FORMS}")
    if not sources:
        raise UsageError(f"--against {against} holds no evaluation images; give {FORMS}")
    return sources


def _id(source: EvalSource, key: str) -> str:
    return f"{source.name}/{key}" if source.name else key


def iter_eval_images(sources: list[EvalSource]) -> Iterator[tuple[str, bytes | None]]:
    """Yields (id, image bytes) of every image of the set, file by file; bytes None for an item that cannot be
    read (it is still an evaluation image, to be counted as not decoded)."""
    for source in sources:
        if source.kind == "image":
            try:
                with fsspec.open(source.url, "rb") as f:
                    data = f.read()
            except OSError:
                data = None
            yield source.name or posixpath.basename(source.url), data
        elif source.kind == "tar":
            yield from _tar_images(source)
        else:
            yield from _parquet_images(source)


def _tar_images(source: EvalSource) -> Iterator[tuple[str, bytes | None]]:
    samples, error = read_tar_samples(source.url)
    for sample in samples:
        yield _id(source, sample.key), sample.image if sample.problem is None else None
    if error is not None:
        yield _id(source, "<end of shard: " + error + ">"), None


def _parquet_images(source: EvalSource) -> Iterator[tuple[str, bytes | None]]:
    import pyarrow.parquet as pq

    try:
        with fsspec.open(source.url, "rb") as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            image = next((c for c in IMAGE_COLUMNS if c in names), None)
            if image is None:
                raise UsageError(f"--against {source.url} has no image column (looked for "
                                 f"{', '.join(IMAGE_COLUMNS)}); its columns are {', '.join(names)}")
            key = next((c for c in (*KEY_COLUMNS, "uid") if c in names), None)
            row = 0
            for batch in parquet.iter_batches(batch_size=256, columns=[image] + ([key] if key else [])):
                keys = batch.column(key).to_pylist() if key else [None] * batch.num_rows
                for cell, value in zip(batch.column(image).to_pylist(), keys, strict=True):
                    yield _id(source, str(row) if value is None else str(value)), image_value_bytes(cell)
                    row += 1
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UsageError(f"--against {source.url} is not a readable Parquet file: {exc}") from None


def eval_fingerprint(sources: list[EvalSource]) -> str:
    """Returns a short hash of the set's content: each file's id prefix and bytes, in order, so a changed,
    added or removed evaluation image gives another fingerprint."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(f"{source.kind}\0{source.name}\0".encode())
        with fsspec.open(source.url, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]
