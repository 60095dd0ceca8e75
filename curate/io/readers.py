"""The shard readers, one per input kind, behind one registry: each turns a shard into its output tables."""

from collections.abc import Callable
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from curate.io.columns import class_labels, source_table
from curate.io.datacomp import DATACOMP_MAPPED, is_datacomp_schema, read_datacomp
from curate.io.inputs import ARROW_SUFFIX, ShardTask
from curate.io.parquet_shards import (
    SchemaMismatch,
    check_unique_names,
    image_parquet_columns,
    image_samples,
    iter_image_parquet,
    kept_columns,
    read_rows,
    wanted_columns,
)
from curate.io.samples import ReadOptions, ShardTables
from curate.io.tars import read_tar_samples


@dataclass
class ShardOutput:
    """What processing one shard produced: tables keyed by run subfolder, and its counts."""

    tables: dict[str, pa.Table]
    counts: dict[str, int]


def read_webdataset(task: ShardTask, tables: ShardTables) -> dict[str, pa.Table]:
    """Reads a WebDataset tar into `tables`; a truncated or unreadable tar adds a shard-level quarantine row."""
    options = tables.options
    raws, error = read_tar_samples(task.url, options.max_member_bytes, options.max_caption_bytes)
    json_expected = any(raw.json_text is not None for raw in raws)
    for raw in raws:
        tables.add(raw, json_expected)
    if error is not None:
        tables.quarantine_shard("unreadable tar", f"stopped after {len(raws)} samples: {error}")
    return {}


def read_parquet(task: ShardTask, tables: ShardTables) -> dict[str, pa.Table]:
    """Reads a Parquet shard: image bytes and captions, or DataComp metadata when that is its schema."""
    schema = shard_schema(task.url)
    try:
        columns = parquet_columns(schema, tables.options)
        if columns is None:
            return read_datacomp(task, tables)
    except SchemaMismatch as exc:
        with fsspec.open(task.url, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        _quarantine_rows(tables, range(*(task.rows or (0, rows))), str(exc))
        return {}
    kept = kept_columns(schema, set(columns.values()), tables.options)
    if kept:
        with fsspec.open(task.url, "rb") as f:
            piece = read_rows(pq.ParquetFile(f), task.rows, kept)
        tables.add_source(*source_table(piece, tables.options.plan, class_labels(schema)))
    start = task.rows[0] if task.rows else 0
    for raw in iter_image_parquet(task.url, columns, tables.options.max_caption_bytes, rows=task.rows):
        raw.position = raw.image_offset - start
        tables.add(raw, json_expected=False)
    return {}


def read_arrow(task: ShardTask, tables: ShardTables) -> dict[str, pa.Table]:
    """Reads an Arrow data file of a Hugging Face dataset folder (`save_to_disk`) as an image shard: the whole file
    is one task, read at once (datasets writes them at most 500 MB by default)."""
    table = read_arrow_table(task.url)
    try:
        columns = image_parquet_columns(table.schema, tables.options)
    except SchemaMismatch as exc:
        _quarantine_rows(tables, range(table.num_rows), str(exc))
        return {}
    kept = kept_columns(table.schema, set(columns.values()), tables.options)
    if kept:
        tables.add_source(*source_table(table.select(kept), tables.options.plan, class_labels(table.schema)))
    batches = table.select(wanted_columns(columns)).to_batches(max_chunksize=256)
    for raw in image_samples(batches, 0, columns, tables.options.max_caption_bytes, (0, table.num_rows)):
        raw.position = raw.image_offset
        tables.add(raw, json_expected=False)
    return {}


def read_arrow_table(url: str) -> pa.Table:
    """Returns an Arrow IPC stream file (what `datasets` writes) whole."""
    with fsspec.open(url, "rb") as f:
        return pa.ipc.open_stream(f).read_all()


def shard_schema(url: str) -> pa.Schema:
    """Returns the schema of a Parquet file (from its footer) or an Arrow stream file (from its start)."""
    with fsspec.open(url, "rb") as f:
        return pa.ipc.open_stream(f).schema if url.endswith(ARROW_SUFFIX) else pq.read_schema(f)


def mapped_columns(schema: pa.Schema, options: ReadOptions) -> set[str] | None:
    """Returns the columns of a Parquet file of this schema that curate maps into its own (a DataComp metadata
    file's or an image shard's), or None when its reader would quarantine the file."""
    try:
        columns = parquet_columns(schema, options)
    except SchemaMismatch:
        return None
    return set(DATACOMP_MAPPED) if columns is None else {c for c in columns.values() if c is not None}


def parquet_columns(schema: pa.Schema, options: ReadOptions) -> dict[str, str | None] | None:
    """Returns the columns an image shard of this schema is read from (image_parquet_columns), or None for DataComp
    metadata without images; raises SchemaMismatch for neither, or for columns named alike (either kind)."""
    try:
        return image_parquet_columns(schema, options)  # checks the names too
    except SchemaMismatch:
        if not is_datacomp_schema(schema):
            raise
    check_unique_names(schema)
    return None


def _quarantine_rows(tables: ShardTables, rows: range, reason: str) -> None:
    """A Parquet or Arrow file of the wrong schema: every row it holds (or the task's piece of them) is read and
    quarantined, so counts still add up."""
    for row in rows:
        tables.quarantine_sample(str(row), None, "wrong parquet schema", reason)


READERS: dict[str, Callable[[ShardTask, ShardTables], dict[str, pa.Table]]] = {
    "webdataset": read_webdataset,
    "parquet": read_parquet,
    "datacomp": read_datacomp,
    "arrow": read_arrow,
}


def read_shard(task: ShardTask, options: ReadOptions) -> ShardOutput:
    """Returns a shard's samples, quarantine and any extra tables; never raises for bad data in the shard."""
    tables = ShardTables(task, options)
    try:
        extra = READERS[task.kind](task, tables)
    except Exception as exc:  # an unreadable shard is quarantined, not fatal to the run
        tables.quarantine_shard("unreadable shard", f"{type(exc).__name__}: {exc}"[:500])
        extra = {}
    return ShardOutput(tables.tables() | extra, tables.counts())
