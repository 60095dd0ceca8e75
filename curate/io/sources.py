"""Re-reading selected images from the shards they were ingested from, checked against the catalog's sha256.

The catalog keeps no image copy: a tar sample's image is the byte range (image_offset, image_size) of its tar,
a Parquet sample's the cell at row image_offset of the shard's image column. Rows arrive ordered by shard and
offset, so one shard is open at a time and each of its Parquet row groups is read once.
"""

import bisect
import hashlib

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import UsageError
from curate.io.inputs import ARROW_SUFFIX
from curate.io.parquet_shards import SchemaMismatch, image_parquet_columns, image_value_bytes
from curate.io.readers import read_arrow_table
from curate.io.samples import ReadOptions

LOCATION_COLUMNS = ["uid", "key", "shard", "image_offset", "image_size", "sha256"]
CHANGED = "source shard changed since ingest"


class SourceChangedError(UsageError):
    """A source shard no longer holds the image bytes recorded at ingest (or cannot be read at all); `reason` says
    which, in a few words naming the shard, the same for every sample of it."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        return type(self), (str(self), self.reason)  # pickled whole, as Ray sends a worker's error


def _unreadable(url: str, exc: Exception) -> SourceChangedError:
    """Returns the error for a source shard that cannot be opened or read: missing, or unreadable."""
    missing = isinstance(exc, FileNotFoundError)
    reason = f"source shard {'missing' if missing else 'unreadable'}: {url}"
    return SourceChangedError(f"cannot re-read {url}: {type(exc).__name__}: {exc}", reason)


class TarSource:
    """One open source tar; an image is read as a byte range of it."""

    def __init__(self, url: str, options: ReadOptions):
        self._file = fsspec.open(url, "rb").open()

    def read(self, offset: int, size: int) -> bytes:
        """Returns `size` bytes from byte `offset` (fewer when the file got shorter)."""
        self._file.seek(offset)
        return self._file.read(size)

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


class ParquetImageSource:
    """One open Parquet image shard; an image is a row's image cell, read one row group at a time."""

    def __init__(self, url: str, options: ReadOptions):
        self._file = fsspec.open(url, "rb").open()
        self._parquet = pq.ParquetFile(self._file)
        try:
            self._column = _image_column(url, self._parquet.schema_arrow, options)
        except SourceChangedError:
            self._file.close()
            raise
        meta = self._parquet.metadata
        self._starts = [0]
        for i in range(meta.num_row_groups):
            self._starts.append(self._starts[-1] + meta.row_group(i).num_rows)
        self._group: int | None = None
        self._cells: pa.ChunkedArray | None = None

    def read(self, row: int, size: int) -> bytes:
        """Returns the image bytes of row `row` (empty when the shard has no such row or no image there)."""
        group = bisect.bisect_right(self._starts, row) - 1
        if not 0 <= group < len(self._starts) - 1:
            return b""
        if group != self._group:
            self._cells = self._parquet.read_row_group(group, columns=[self._column]).column(0)
            self._group = group
        return image_value_bytes(self._cells[row - self._starts[group]].as_py()) or b""

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


class ArrowImageSource:
    """One Arrow data file of a Hugging Face dataset folder; its image column is read once, whole (as ingest
    read the file)."""

    def __init__(self, url: str, options: ReadOptions):
        table = read_arrow_table(url)
        self._cells = table[_image_column(url, table.schema, options)]

    def read(self, row: int, size: int) -> bytes:
        """Returns the image bytes of row `row` (empty when the file has no such row or no image there)."""
        if not 0 <= row < len(self._cells):
            return b""
        return image_value_bytes(self._cells[row].as_py()) or b""

    def close(self) -> None:
        """Lets the image column go."""
        self._cells = pa.chunked_array([], pa.binary())


def _image_column(url: str, schema: pa.Schema, options: ReadOptions) -> str:
    """Returns the image column of a source shard's schema; raises SourceChangedError when it has none now."""
    try:
        return image_parquet_columns(schema, options)["image"]
    except SchemaMismatch as exc:
        raise SourceChangedError(f"{url} lost the image column it had at ingest: {exc}", f"{CHANGED}: {url}") from None


# How a shard's images are re-read, by the suffix of its URL.
SOURCES: dict[str, type[TarSource] | type[ParquetImageSource] | type[ArrowImageSource]] = {
    ".tar": TarSource,
    ".parquet": ParquetImageSource,
    ARROW_SUFFIX: ArrowImageSource,
}


class SourceImages:
    """Adds the selected samples' image bytes to their catalog rows, one source shard open at a time."""

    def __init__(self, options: ReadOptions):
        self._options = options
        self._url: str | None = None
        self._source: TarSource | ParquetImageSource | None = None
        self._failed: SourceChangedError | None = None  # why self._url cannot be opened

    def attach(self, table: pa.Table) -> pa.Table:
        """Returns `table` plus an `image` column of verified bytes; raises SourceChangedError."""
        images = [self._image(row) for row in table.select(LOCATION_COLUMNS).to_pylist()]
        return table.append_column("image", pa.array(images, pa.large_binary()))

    def attach_available(self, table: pa.Table) -> tuple[pa.Table, list[tuple[str, str]]]:
        """Returns the rows of `table` whose image re-reads and verifies, plus an `image` column of those bytes,
        and (uid, reason) of each row left out because its shard is missing, unreadable or changed since ingest
        (a sample whose bytes differ is never returned)."""
        keep, images, lost = [], [], []
        for i, row in enumerate(table.select(LOCATION_COLUMNS).to_pylist()):
            try:
                images.append(self._image(row))
                keep.append(i)
            except SourceChangedError as exc:
                lost.append((row["uid"], exc.reason))
        kept = table.take(pa.array(keep, pa.int64())) if lost else table
        return kept.append_column("image", pa.array(images, pa.large_binary())), lost

    def close(self) -> None:
        """Closes the open source shard, if any."""
        if self._source is not None:
            self._source.close()
        self._url, self._source, self._failed = None, None, None

    def _image(self, row: dict) -> bytes:
        if row["image_offset"] is None:
            raise UsageError(f"sample {row['uid']} has no image bytes in the run (DataComp metadata-only)")
        try:
            data = self._open(row["shard"]).read(row["image_offset"], row["image_size"])
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise _unreadable(row["shard"], exc) from None
        if len(data) != row["image_size"] or hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise SourceChangedError(
                f"the image of sample {row['uid']} (key {row['key']!r}) in {row['shard']} no longer matches "
                "the sha256 recorded at ingest: the shard changed since it was ingested; re-ingest it into a "
                "new run", f"{CHANGED}: {row['shard']}"
            )
        return data

    def _open(self, url: str) -> TarSource | ParquetImageSource:
        """Returns the open source shard `url`; a shard that failed to open raises its error again, so each shard
        is tried once however many of its samples are selected."""
        if url != self._url:
            self.close()
            self._url = url
            try:
                self._source = self._connect(url)
            except SourceChangedError as exc:
                self._failed = exc
        if self._failed is not None:  # a new error each time: re-raising one would grow its traceback
            raise SourceChangedError(str(self._failed), self._failed.reason)
        return self._source

    def _connect(self, url: str) -> TarSource | ParquetImageSource:
        kind = next((cls for suffix, cls in SOURCES.items() if url.endswith(suffix)), None)
        if kind is None:
            raise SourceChangedError(f"cannot re-read images from {url}: not a .tar, .parquet or .arrow shard",
                                     f"source shard unreadable: {url}")
        try:
            return kind(url, self._options)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise _unreadable(url, exc) from None
