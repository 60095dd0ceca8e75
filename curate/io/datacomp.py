"""Reading DataComp pool metadata: the .parquet files with their .npz embeddings, and no images."""

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.io.columns import class_labels, source_table
from curate.io.inputs import ShardTask
from curate.io.npz import NpzError, npz_rows, npz_shapes
from curate.io.parquet_shards import SchemaMismatch, bound_captions, kept_columns, read_rows
from curate.io.samples import RawSample, ShardTables
from curate.io.schema import DATACOMP_SCORE_COLUMNS, embeddings_schema

DATACOMP_COLUMNS = ("uid", "text")
# The columns curate maps into samples and scores/datacomp: the others are the file's own, kept as columns.
DATACOMP_MAPPED = (*DATACOMP_COLUMNS, "url", "original_width", "original_height", "sha256", *DATACOMP_SCORE_COLUMNS)
EMBEDDING_MODELS = ("b32", "l14")


def is_datacomp_schema(schema: pa.Schema) -> bool:
    """Returns True when a Parquet schema looks like DataComp pool metadata (uid and text, no image)."""
    return all(c in schema.names for c in DATACOMP_COLUMNS)


def read_datacomp(task: ShardTask, tables: ShardTables) -> dict[str, pa.Table]:
    """Reads one DataComp metadata shard (or the task's piece of its rows) into `tables`; returns the extra outputs
    (embeddings, scores)."""
    url = task.url
    with fsspec.open(url, "rb") as f:
        parquet = pq.ParquetFile(f)
        rows = parquet.metadata.num_rows
        start, stop = task.rows or (0, rows)
        meta = read_rows(parquet, task.rows)
    if not is_datacomp_schema(meta.schema):
        raise SchemaMismatch(f"DataComp metadata needs columns uid and text; columns are {meta.schema.names}")
    kept = kept_columns(meta.schema, set(DATACOMP_MAPPED), tables.options)
    tables.add_source(*source_table(meta.select(kept), tables.options.plan, class_labels(meta.schema)))
    bounded, oversized = bound_captions(meta, "text", tables.options.max_caption_bytes)
    cols = bounded.to_pydict()
    for i in range(meta.num_rows):
        tables.add(_raw(cols, i, start + i, oversized.get(i)), json_expected=False)
    extra = {}
    accepted = pa.array([row["uid"] for row in tables.samples], pa.string())
    positions = np.array(tables.positions, dtype=np.int64)
    scores = [c for c in DATACOMP_SCORE_COLUMNS if c in cols]
    if scores:
        extra["scores/datacomp"] = meta.select(scores).take(positions).add_column(0, "uid", accepted)
    embeddings = _read_npz(url, rows, (start, stop), tables)
    if embeddings is not None:
        image, text = (_normalized(e[positions]) for e in embeddings)
        extra["embeddings"] = _embedding_table(accepted, image, text, tables.options.embedding_dtype)
    return extra


def _raw(cols: dict, i: int, row: int, problem: tuple[str, str] | None) -> RawSample:
    def get(name):
        return cols[name][i] if name in cols else None

    uid = get("uid")
    return RawSample(
        key=uid if isinstance(uid, str) else f"row {row}", uid=uid, caption=get("text"), url=get("url"),
        metadata_only=True, problem=problem, position=i,
        width=get("original_width"), height=get("original_height"), sha256=get("sha256"),
    )


def _read_npz(url: str, rows: int, piece: tuple[int, int], tables: ShardTables) -> tuple[np.ndarray, ...] | None:
    """Returns the image and text embeddings of rows [start, stop) of the metadata file's .npz, or None when it has
    none (no .npz) or they can't be read (a shard-level quarantine row says why)."""
    npz_url = url[: -len(".parquet")] + ".npz"
    fs, path = fsspec.core.url_to_fs(npz_url)
    if not fs.exists(path):
        return None
    model = tables.options.datacomp_embeddings
    names = (f"{model}_img", f"{model}_txt")
    try:
        with fs.open(path, "rb") as f:
            shapes = npz_shapes(f)
            missing = [name for name in names if name not in shapes]
            if missing:
                tables.quarantine_shard("npz lacks embeddings", f"{npz_url} has no {missing}; has {sorted(shapes)}")
                return None
            if any(shapes[name][0][:1] != (rows,) for name in names):
                counts = [shapes[name][0] for name in names]
                tables.quarantine_shard("npz row count mismatch", f"{npz_url}: shapes {counts}, parquet has {rows}")
                return None
            return tuple(npz_rows(f, name, *piece) for name in names)
    except NpzError as exc:
        tables.quarantine_shard("unreadable npz", f"{npz_url}: {exc}")
        return None


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _embedding_table(uids: pa.Array, image: np.ndarray, text: np.ndarray, dtype: str) -> pa.Table:
    dim = image.shape[1]
    schema = embeddings_schema(dim, dtype)
    value = schema.field("image_embedding").type.value_type

    def column(v):
        return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1).astype(value.to_pandas_dtype()), value), dim)

    return pa.Table.from_arrays([uids, column(image), column(text)], schema=schema)
