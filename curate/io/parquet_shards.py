"""Reading Parquet shards that carry image bytes and captions, with configurable column names."""

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io.columns import is_scalar
from curate.io.samples import RawSample, ReadOptions, caption_too_large
from curate.io.schema import SAMPLES_SCHEMA

IMAGE_COLUMNS = ("jpg", "image", "img", "png", "webp", "image_bytes")
CAPTION_COLUMNS = ("caption", "txt", "text")
KEY_COLUMNS = ("key", "__key__")


class SchemaMismatch(Exception):
    """The Parquet file lacks the columns this reader needs; str() says which and what it has."""


def check_unique_names(schema: pa.Schema) -> None:
    """Raises SchemaMismatch when the file names two columns alike: which one a name means would be a guess."""
    repeated = sorted({n for n in schema.names if schema.names.count(n) > 1})
    if repeated:
        raise SchemaMismatch(f"columns named more than once: {', '.join(map(repr, repeated))}")


def image_parquet_columns(schema: pa.Schema, options: ReadOptions) -> dict[str, str | None]:
    """Returns the columns to read for image, caption, key, uid and url; raises SchemaMismatch."""
    check_unique_names(schema)
    names = set(schema.names)
    image = _pick(options.image_column, IMAGE_COLUMNS, names, "image")
    caption = _pick(options.caption_column, CAPTION_COLUMNS, names, "caption")
    key = options.key_column or next((c for c in KEY_COLUMNS if c in names), None)
    if key is not None and key not in names:
        raise SchemaMismatch(f"no key column {key!r}; columns are {sorted(names)}")
    return dict(
        image=image, caption=caption, key=key,
        uid=options.uid_column if options.uid_column in names else None,
        url=options.url_column if options.url_column in names else None,
    )


def kept_columns(schema: pa.Schema, mapped: set[str], options: ReadOptions) -> list[str]:
    """Returns the file's columns that samples keep beside curate's: those --columns names that the file has, else
    every scalar column but the ones curate maps (`mapped`: image, caption, key...) and those named like curate's
    own columns (width, sha256...: curate's values stand, unless --rename gives the file's another name)."""
    if options.columns is not None:
        return [c for c in options.columns if c in schema.names]
    renamed = dict(options.rename or ())
    own = set(SAMPLES_SCHEMA.names) - set(renamed)
    return [f.name for f in schema if f.name not in mapped | own and is_scalar(f.type)
            and not f.name.startswith("__index_level_")]  # pandas' index, not data


def read_rows(parquet: pq.ParquetFile, rows: tuple[int, int] | None, columns: list[str] | None = None) -> pa.Table:
    """Returns rows [start, stop) of an open Parquet file (all of them when `rows` is None), reading only the row
    groups that hold them, and only `columns` when given."""
    start, stop = rows or (0, parquet.metadata.num_rows)
    groups, first = row_groups_of(parquet.metadata, start, stop)
    return parquet.read_row_groups(groups, columns=columns).slice(start - first, stop - start)


def _pick(given: str | None, candidates: tuple[str, ...], names: set[str], what: str) -> str:
    if given is not None:
        if given not in names:
            raise SchemaMismatch(f"no {what} column {given!r}; columns are {sorted(names)}")
        return given
    for name in candidates:
        if name in names:
            return name
    raise SchemaMismatch(f"no {what} column (looked for {', '.join(candidates)}); columns are {sorted(names)}")


def iter_image_parquet(url: str, columns: dict[str, str | None], max_caption_bytes: int, batch_rows: int = 256,
                       rows: tuple[int, int] | None = None):
    """Yields RawSamples of an image Parquet shard in row order (only rows [start, stop) when `rows` is given);
    image_offset is the row index in the file. A caption over max_caption_bytes is measured in Arrow and never
    made a Python string: its sample carries the problem.

    Batches are small: each one's cells are copied into Python objects at once."""
    with fsspec.open(url, "rb") as f:
        parquet = pq.ParquetFile(f)
        start, stop = rows or (0, parquet.metadata.num_rows)
        groups, row = row_groups_of(parquet.metadata, start, stop)
        batches = parquet.iter_batches(batch_size=batch_rows, columns=wanted_columns(columns), row_groups=groups)
        yield from image_samples(batches, row, columns, max_caption_bytes, (start, stop))


def wanted_columns(columns: dict[str, str | None]) -> list[str]:
    """Returns the file columns an image reader reads: those image_parquet_columns mapped, sorted."""
    return sorted({c for c in columns.values() if c is not None})


def image_samples(batches, row: int, columns: dict[str, str | None], max_caption_bytes: int,
                  rows: tuple[int, int]):
    """Yields the RawSamples of file rows [start, stop) from record batches of the `wanted_columns` whose first
    row is file row `row`, as iter_image_parquet describes them (an Arrow file's reader shares it)."""
    start, stop = rows
    for batch in batches:
        first, row = row, row + batch.num_rows
        if row <= start:
            continue
        if first >= stop:
            return
        batch, oversized = bound_captions(batch, columns["caption"], max_caption_bytes)
        data = batch.to_pydict()
        for i in range(max(start - first, 0), min(batch.num_rows, stop - first)):
            yield _raw_sample(data, columns, i, first + i, oversized.get(i))


def row_groups_of(metadata: pq.FileMetaData, start: int, stop: int) -> tuple[list[int], int]:
    """Returns the row groups of a Parquet file that hold any of rows [start, stop), and the file row the first of
    them begins at."""
    groups, first, offset = [], None, 0
    for index in range(metadata.num_row_groups):
        size = metadata.row_group(index).num_rows
        if offset < stop and offset + size > start:
            groups.append(index)
            first = offset if first is None else first
        offset += size
    return groups, first or 0


def bound_captions(batch: pa.RecordBatch | pa.Table, column: str, max_bytes: int):
    """Returns `batch` with the text cells of `column` over `max_bytes` (UTF-8 bytes, as Arrow stores them)
    nulled, and row -> the (reason, detail) of each such cell; a column of another type is left to the checks."""
    values = batch.column(column)
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return batch, {}
    sizes = pc.binary_length(values)
    over = pc.fill_null(pc.greater(sizes, max_bytes), False)
    rows = pc.indices_nonzero(over).to_pylist()
    if not rows:
        return batch, {}
    nulled = pc.if_else(over, pa.scalar(None, kind), values)
    batch = batch.set_column(batch.schema.get_field_index(column), column, nulled)
    return batch, {row: caption_too_large(sizes[row].as_py(), max_bytes) for row in rows}


def image_value_bytes(value) -> bytes | None:
    """Returns image bytes from a cell: raw bytes, or the `bytes` field of a Hugging Face Image struct; None for
    anything else."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return bytes(value) if isinstance(value, (bytes, bytearray)) else None


def _raw_sample(data: dict, columns: dict[str, str | None], i: int, row: int,
                problem: tuple[str, str] | None) -> RawSample:
    key = data[columns["key"]][i] if columns["key"] else None
    cell = data[columns["image"]][i]
    image = image_value_bytes(cell)
    wrong = cell is not None and image is None and not (isinstance(cell, dict) and cell.get("bytes") is None)
    if wrong and problem is None:
        problem = ("invalid image", f"the image column holds {type(cell).__name__}, not bytes")
    return RawSample(
        key=str(row) if key is None else str(key) if isinstance(key, int) else key,
        image=image,
        image_offset=row,
        caption=data[columns["caption"]][i],
        url=data[columns["url"]][i] if columns["url"] else None,
        uid=data[columns["uid"]][i] if columns["uid"] else None,
        problem=problem,
    )
