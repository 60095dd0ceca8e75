"""A run's embeddings as one matrix for whole-pool methods, the samples a predicate selects among them, and the
per-shard score files those methods write.

Rows come shard by shard in the order of the run's embeddings/ files, so results map back to shards without a
join. Memory: N x d float32 (1M x 512 is 2 GiB); the uids ride along as one Arrow string array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from curate.errors import UsageError
from curate.rundir import RunDir, parquet_bytes

EMBEDDING_COLUMNS = {"image": "image_embedding", "text": "text_embedding"}


@dataclass
class RunEmbeddings:
    """Every embedded sample of a run: uids, L2-normalized float32 vectors, and which rows each shard holds."""

    uids: pa.Array
    vectors: np.ndarray
    shards: list[tuple[str, int, int]]  # (shard_id, first row, end row)

    def __len__(self) -> int:
        """Returns the number of samples."""
        return len(self.uids)


def normalized(x: np.ndarray) -> np.ndarray:
    """Returns x as C-contiguous float32 rows of unit L2 norm (zero rows stay zero); x itself when it already is.
    Each row is decided on its own (a row already within 1e-5 of unit norm is left as it is), so a row comes out
    the same whichever rows it is read with."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))  # no N x d temporary, unlike np.linalg.norm
    off = (np.abs(norms - 1) >= 1e-5) & (norms > 0)
    if not off.any():
        return x  # no copy of a large matrix that is already normalized
    x = x.copy()  # never the caller's array
    x[off] /= norms[off, None]
    return x


def raw_vectors(column: pa.Array) -> np.ndarray:
    """Returns a fixed-size-list column of vectors as an N x d array in its stored type (float16 or float32)."""
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)


def packed_field(name: str, dtype: np.dtype, dim: int) -> pa.Field:
    """Returns the field of a packed vector column: one fixed-size binary value per row, the row's `dim` numbers of
    `dtype` (named in the field's metadata). Parquet reads and writes it without the repetition levels of a list
    column: about a tenth of the memory and time for a partition bucket."""
    dtype = np.dtype(dtype)
    return pa.field(name, pa.binary(dim * dtype.itemsize), nullable=False, metadata={b"dtype": dtype.str.encode()})


def packed(vectors: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Returns the rows of an N x d array as a packed column (its bytes, not copied when already contiguous)."""
    vectors = np.ascontiguousarray(vectors)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(vectors.shape[1] * vectors.itemsize), len(vectors),
                                                [None, pa.py_buffer(vectors)])


def unpacked(table: pa.Table, name: str = "vector") -> np.ndarray:
    """Returns the packed column `name` of `table` as an N x d array in its stored dtype (float16 or float32)."""
    dtype = np.dtype(table.schema.field(name).metadata[b"dtype"].decode())
    column = table[name].combine_chunks()
    width = column.type.byte_width
    if not len(column):
        return np.zeros((0, width // dtype.itemsize), dtype)
    data = np.frombuffer(column.buffers()[1], np.uint8)[column.offset * width:(column.offset + len(column)) * width]
    return data.view(dtype).reshape(len(column), width // dtype.itemsize)


def embedding_files(run: RunDir) -> list:
    """Returns the run's embeddings/*.parquet paths in shard order; raises UsageError when it has none."""
    files = sorted((run.path / "embeddings").glob("*.parquet"))
    if not files:
        raise UsageError(f"{run.path} has no embeddings; run `curate embed` (or ingest DataComp .npz) first")
    return files


DESCRIPTORS = "descriptors"  # RUN/descriptors/<name>/<shard>.parquet: uid, descriptor (curate.stages.describe)
DESCRIPTOR_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
DESCRIPTOR_STAGE = "embed_"  # the stage that writes descriptor set NAME is embed_NAME


def descriptor_stage_name(name: str) -> str:
    """Returns the name of the stage that writes descriptor set `name`: embed_<name>."""
    return DESCRIPTOR_STAGE + name


def descriptor_sets(run: RunDir) -> list[str]:
    """Returns the names of the run's descriptor sets (folders under descriptors/ holding Parquet files)."""
    folder = run.path / DESCRIPTORS
    return sorted(p.name for p in folder.iterdir() if any(p.glob("*.parquet"))) if folder.is_dir() else []


def vector_files(run: RunDir, kind: str) -> tuple[list, str]:
    """Returns the Parquet files and column holding the vectors of `kind`; raises UsageError naming the kinds."""
    if kind in EMBEDDING_COLUMNS:
        return embedding_files(run), EMBEDDING_COLUMNS[kind]
    files = sorted((run.path / DESCRIPTORS / kind).glob("*.parquet")) if DESCRIPTOR_NAME.fullmatch(kind) else []
    if not files:
        known = ", ".join([*EMBEDDING_COLUMNS, *descriptor_sets(run)])
        raise UsageError(f"{run.path} has no {kind!r} vectors; choose one of {known}, or make a descriptor set with "
                         f"`curate embed RUN --model DIR --as {kind if DESCRIPTOR_NAME.fullmatch(kind) else 'NAME'}`")
    return files, "descriptor"


def pool_files(run: RunDir) -> list:
    """Returns the files listing the run's embedded pool: embeddings/, or the first descriptor set's for a run with
    none; raises UsageError when it has neither."""
    sets = descriptor_sets(run)
    has_embeddings = any((run.path / "embeddings").glob("*.parquet"))
    return embedding_files(run) if has_embeddings or not sets else vector_files(run, sets[0])[0]


def load_embeddings(run: RunDir, kind: str | None = "image", progress: bool = True) -> RunEmbeddings:
    """Returns the run's image or text embeddings, or the descriptor set `kind`, as RunEmbeddings; kind None reads
    only the uids (vectors of width 0): of embeddings/, or of the first descriptor set for a run with none. Raises
    UsageError when the run has no such vectors."""
    if kind is None:
        files = pool_files(run)
        tables = [pq.read_table(path, columns=["uid"]) for path in files]
        bounds = np.cumsum([0] + [t.num_rows for t in tables])
        shards = [(p.stem, int(a), int(b)) for p, a, b in zip(files, bounds[:-1], bounds[1:], strict=True)]
        uids = pa.concat_arrays([t["uid"].combine_chunks() for t in tables])
        return RunEmbeddings(uids, np.zeros((len(uids), 0), np.float32), shards)
    files, name = vector_files(run, kind)
    uids, blocks, shards, start = [], [], [], 0
    for path in tqdm(files, desc=f"load {kind} vectors", unit="shard", disable=not progress):
        file_uids, vectors = read_vectors(path, name)
        blocks.append(vectors)
        uids.append(file_uids)
        shards.append((path.stem, start, start + len(file_uids)))
        start += len(file_uids)
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, 0), np.float32)
    return RunEmbeddings(pa.concat_arrays(uids), vectors, shards)


READ_ROWS = 32768  # rows of a vector file decoded at a time: Parquet decodes a list column at ~10x its values


def read_stored(path, columns: list[str], rows: np.ndarray | None = None) -> tuple[pa.Array, list[np.ndarray]]:
    """Returns a vector file's uids and, per column, its vectors as stored (N x d, float16 or float32), only the
    sorted row positions `rows` when given. Decoded READ_ROWS rows at a time, so the file is held as its values."""
    parquet = pq.ParquetFile(path)
    fields = [parquet.schema_arrow.field(c).type for c in columns]
    uids = [pa.array([], pa.string())]
    stored = [[np.zeros((0, f.list_size), f.value_type.to_pandas_dtype())] for f in fields]
    start = 0
    for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=["uid", *columns]):
        chosen = None if rows is None else rows[(rows >= start) & (rows < start + batch.num_rows)] - start
        start += batch.num_rows
        if chosen is not None:
            batch = batch.take(pa.array(chosen, pa.int64()))
        uids.append(batch.column(0))
        for values, vectors in zip(stored, batch.columns[1:], strict=True):
            values.append(raw_vectors(vectors).copy())  # its own buffer: the batch is let go
    return pa.concat_arrays(uids), [np.concatenate(v) for v in stored]


def read_vectors(path, column: str, rows: np.ndarray | None = None) -> tuple[pa.Array, np.ndarray]:
    """Returns (uids, L2-normalized float32 vectors) of one embedding or descriptor file (float16 or float32
    stored), only the sorted row positions `rows` when given."""
    uids, [vectors] = read_stored(path, [column], rows)
    return uids, normalized(vectors)


def write_clusters_table(run: RunDir, name: str, table: pa.Table) -> None:
    """Writes concepts/<name>.parquet, per-cluster figures keyed by cluster_id (the `clusters` view joins them)."""
    run.write_bytes(f"concepts/{name}.parquet", parquet_bytes(table))
