"""Arrow schemas of the run directory's tables, shared by readers, writers and the catalog."""

import pyarrow as pa

SAMPLES_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("shard", pa.string()),
        ("key", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        # Where the image bytes live in the source shard, so export re-reads them without a copy:
        # byte offset and size of the tar member, or the row index in a Parquet shard.
        ("image_format", pa.string()),
        ("image_offset", pa.int64()),
        ("image_size", pa.int64()),
        ("json", pa.string()),
    ]
)

# DataComp metadata's score columns, which ingest keeps in scores/datacomp.
DATACOMP_SCORE_COLUMNS = ("clip_b32_similarity_score", "clip_l14_similarity_score", "face_bboxes")

QUARANTINE_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("key", pa.string()),  # null when the failure is the shard's, not one sample's
        ("uid", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# An ingest completion marker (_done/ingest/<shard_id>.json): the shard and its counts; the catalog's `shards` view.
SHARD_MARKER_SCHEMA = pa.schema(
    [("shard_id", pa.string()), ("shard", pa.string()), ("kind", pa.string()), ("read", pa.int64()),
     ("accepted", pa.int64()), ("quarantined", pa.int64()), ("shard_errors", pa.int64())]
)


EMBEDDING_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}


def embeddings_schema(dim: int, dtype: str = "float32") -> pa.Schema:
    """Returns the schema of an embeddings table with `dim`-wide L2-normalized vectors stored as `dtype` (float32,
    or float16: half the disk and reads, within 1e-3 of the float32 values)."""
    vector = pa.list_(EMBEDDING_DTYPES[dtype], dim)
    return pa.schema([("uid", pa.string()), ("image_embedding", vector), ("text_embedding", vector)])


def empty_table(schema: pa.Schema) -> pa.Table:
    """Returns a table with no rows and the given schema."""
    return schema.empty_table()
