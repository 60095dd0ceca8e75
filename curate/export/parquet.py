"""The parquet export: part-00000.parquet, ... with the image a Hugging Face `Image` struct {bytes, path}."""

from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.export.base import ShardedWriter

TEXT_COLUMNS = ("uid", "key", "url", "caption")
SIZE_COLUMNS = ("width", "height")


def export_features():
    """Returns the `datasets.Features` of an exported row: the catalog's facts and the image."""
    from datasets import Features, Image, Value  # heavy: only the formats that need it import it

    columns = {c: Value("string") for c in TEXT_COLUMNS} | {c: Value("int32") for c in SIZE_COLUMNS}
    return Features(columns | {"sha256": Value("string"), "image": Image()})


def export_schema() -> pa.Schema:
    """Returns the Arrow schema of an exported part, its `huggingface` metadata making `image` an Image."""
    return export_features().arrow_schema


def export_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Returns catalog rows with image bytes as a table of `schema`; the image's path is `{uid}.{format}`."""
    path = pc.binary_join_element_wise(table["uid"], table["image_format"], ".")
    image = pa.StructArray.from_arrays(
        [table["image"].combine_chunks().cast(pa.binary()), path.combine_chunks()], names=["bytes", "path"]
    )
    columns = [image if name == "image" else table[name].combine_chunks() for name in schema.names]
    return pa.Table.from_arrays(columns, schema=schema)


class ParquetWriter(ShardedWriter):
    """Writes part-00000.parquet, ... that `datasets.load_dataset("parquet", ...)` decodes, image included."""

    format_name: ClassVar[str] = "parquet"

    def __init__(self, folder: Path, shard_size: int, progress: bool = True):
        super().__init__(folder, shard_size, progress)
        self.schema = export_schema()
        self._writer: pq.ParquetWriter | None = None

    def part_name(self, index: int) -> str:
        """Returns the part's name, its number zero-padded to five digits."""
        return f"part-{index:05d}.parquet"

    def open_part(self, path: Path) -> None:
        """Opens a new Parquet file of the export schema."""
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write_part(self, table: pa.Table) -> None:
        """Appends `table`'s samples to the open file as a row group."""
        self._writer.write_table(export_table(table, self.schema))

    def close_part(self) -> None:
        """Closes the open file."""
        self._writer.close()
        self._writer = None
