"""The parquet export: part-00000.parquet, ... with the image a Hugging Face `Image` struct {bytes, path}."""

from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.export.base import ShardedWriter
from curate.export.carried import CarriedColumns

TEXT_COLUMNS = ("uid", "key", "url", "caption")
SIZE_COLUMNS = ("width", "height")


def export_features(carried: CarriedColumns):
    """Returns the `datasets.Features` of an exported row: the catalog's facts, the image, and the carried columns
    (a ClassLabel where the column was one when ingested)."""
    # heavy: only the formats that need it import it
    from datasets import ClassLabel, Features, Image, Value
    from datasets.features.features import generate_from_arrow_type

    columns = {c: Value("string") for c in TEXT_COLUMNS} | {c: Value("int32") for c in SIZE_COLUMNS}
    columns |= {"sha256": Value("string"), "image": Image()}
    for name in carried.names:
        labels = carried.class_labels.get(name)
        columns[name] = ClassLabel(names=labels) if labels else generate_from_arrow_type(carried.types[name])
    return Features(columns)


def export_table(table: pa.Table, schema: pa.Schema, carried: CarriedColumns) -> pa.Table:
    """Returns catalog rows with image bytes as a table of `schema`; the image's path is `{uid}.{format}`, a
    ClassLabel column's names are their indices."""
    path = pc.binary_join_element_wise(table["uid"], table["image_format"], ".")
    image = pa.StructArray.from_arrays(
        [table["image"].combine_chunks().cast(pa.binary()), path.combine_chunks()], names=["bytes", "path"]
    )
    columns = []
    for name in schema.names:
        if name == "image":
            columns.append(image)
        elif name in carried.class_labels:
            index = pc.index_in(table[name], value_set=pa.array(carried.class_labels[name], pa.string()))
            columns.append(index.combine_chunks().cast(schema.field(name).type))
        else:
            columns.append(table[name].combine_chunks().cast(schema.field(name).type))
    return pa.Table.from_arrays(columns, schema=schema)


class ParquetWriter(ShardedWriter):
    """Writes part-00000.parquet, ... that `datasets.load_dataset("parquet", ...)` decodes, image included."""

    format_name: ClassVar[str] = "parquet"

    def __init__(self, folder: Path, shard_size: int, progress: bool = True):
        super().__init__(folder, shard_size, progress)
        self._writer: pq.ParquetWriter | None = None

    @property
    def schema(self) -> pa.Schema:
        """Returns the Arrow schema of a part, its `huggingface` metadata making `image` an Image (and ClassLabel
        columns ClassLabels)."""
        return export_features(self.carried).arrow_schema

    def part_name(self, index: int) -> str:
        """Returns the part's name, its number zero-padded to five digits."""
        return f"part-{index:05d}.parquet"

    def open_part(self, path: Path) -> None:
        """Opens a new Parquet file of the export schema."""
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write_part(self, table: pa.Table) -> None:
        """Appends `table`'s samples to the open file as a row group."""
        self._writer.write_table(export_table(table, self._writer.schema, self.carried))

    def close_part(self) -> None:
        """Closes the open file."""
        self._writer.close()
        self._writer = None
