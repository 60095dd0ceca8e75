"""A run's embeddings as one matrix for whole-pool methods, and their per-shard score files.

Rows come shard by shard in the order of the run's embeddings/ files, so results map back to shards without a
join. Memory: N x d float32 (1M x 512 is 2 GiB); the uids ride along as one Arrow string array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
        return len(self.vectors)


def load_embeddings(run: RunDir, kind: str = "image", progress: bool = True) -> RunEmbeddings:
    """Returns the run's image (or text) embeddings as RunEmbeddings; raises UsageError when it has none."""
    from curate.concepts.kmeans import normalized

    if kind not in EMBEDDING_COLUMNS:
        raise UsageError(f"unknown --embedding {kind!r}; choose one of {', '.join(EMBEDDING_COLUMNS)}")
    files = sorted((run.path / "embeddings").glob("*.parquet"))
    if not files:
        raise UsageError(f"{run.path} has no embeddings; run `curate embed` (or ingest DataComp .npz) first")
    uids, blocks, shards, start = [], [], [], 0
    for path in tqdm(files, desc="load embeddings", unit="shard", disable=not progress):
        table = pq.read_table(path, columns=["uid", EMBEDDING_COLUMNS[kind]])
        column = table[EMBEDDING_COLUMNS[kind]].combine_chunks()
        dim = column.type.list_size
        blocks.append(column.values.to_numpy(zero_copy_only=False).reshape(-1, dim))
        uids.append(table["uid"].combine_chunks())
        shards.append((path.stem, start, start + table.num_rows))
        start += table.num_rows
    vectors = normalized(np.concatenate(blocks)) if blocks else np.zeros((0, 0), np.float32)
    return RunEmbeddings(pa.concat_arrays(uids), vectors, shards)


def selected_rows(run: RunDir, embeddings: RunEmbeddings, where: str | None) -> np.ndarray:
    """Returns a boolean mask of the embedding rows whose samples the SQL predicate `where` selects."""
    from curate.catalogs import connect
    from curate.export.selection import selected_uids

    if where is None:
        return np.ones(len(embeddings), dtype=bool)
    con = connect(run)
    try:
        uids = selected_uids(con, where)
    finally:
        con.close()
    return pc.is_in(embeddings.uids, value_set=uids.combine_chunks()).to_numpy(zero_copy_only=False)


def write_scores(run: RunDir, stage: str, embeddings: RunEmbeddings, columns: dict[str, pa.Array],
                 rows: np.ndarray | None = None) -> None:
    """Writes scores/<stage>/<shard>.parquet: uid plus `columns` (one value per embedding row), restricted to
    the rows where the mask `rows` is true; every shard gets a file, empty when none of its rows are in."""
    for shard_id, start, end in embeddings.shards:
        table = pa.table({"uid": embeddings.uids[start:end], **{k: v[start:end] for k, v in columns.items()}})
        if rows is not None:
            table = table.filter(pa.array(rows[start:end]))
        run.write_bytes(f"scores/{stage}/{shard_id}.parquet", parquet_bytes(table))


def write_clusters_table(run: RunDir, name: str, table: pa.Table) -> None:
    """Writes concepts/<name>.parquet, per-cluster figures keyed by cluster_id (the `clusters` view joins them)."""
    run.write_bytes(f"concepts/{name}.parquet", parquet_bytes(table))
