"""A whole-pool method's input as files for tasks: each vector file of a kind (embeddings/ or a descriptor set),
with the uids a predicate selects in it, so that a task reads one file and its own selection, never the pool.

The selection is routed in one pass over the catalog, ordered by shard (DuckDB sorts out of core), into one uid
file per vector file; a file's input rows are its rows whose uid its selection lists, in the file's order. Input
positions number the input rows of all files in file order: what a task returns is placed by the first input
position of its file (`InputFiles.firsts`, from the counts a first pass returns).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.catalogs import connect
from curate.catalogs.selection import selected_query
from curate.rundir import RunDir
from curate.stages.embeddings import normalized, read_stored, vector_files


@dataclass(frozen=True)
class InputFile:
    """One vector file and its input: `selected` names a Parquet file of the uids chosen in it (None: every row)."""

    path: str
    column: str
    selected: str | None

    @property
    def stem(self) -> str:
        """Returns the file's shard id (its name without .parquet)."""
        return Path(self.path).stem

    def uids(self, rows: np.ndarray | None = None) -> pa.Array:
        """Returns the uids of the file's input rows, or of the input rows at the positions `rows` among them (the
        vectors unread)."""
        uids = pq.read_table(self.path, columns=["uid"])["uid"].combine_chunks()
        if self.selected is not None:
            uids = uids.filter(pc.is_in(uids, value_set=pq.read_table(self.selected)["uid"].combine_chunks()))
        return uids if rows is None else uids.take(pa.array(rows, pa.int64()))

    def stored(self, rows: np.ndarray | None = None) -> tuple[pa.Array, np.ndarray]:
        """Returns (uids, vectors as the file stores them) of the file's input rows, or of the input rows at the
        positions `rows` among them."""
        uids, [stored] = read_stored(self.path, [self.column])
        if self.selected is not None:
            chosen = pc.is_in(uids, value_set=pq.read_table(self.selected)["uid"].combine_chunks())
            uids, stored = uids.filter(chosen), stored[chosen.to_numpy(zero_copy_only=False)]
        if rows is not None:
            uids, stored = uids.take(pa.array(rows, pa.int64())), stored[rows]
        return uids, stored

    def read(self, rows: np.ndarray | None = None) -> tuple[pa.Array, np.ndarray]:
        """Returns (uids, L2-normalized float32 vectors) of the file's input rows, or of the input rows at the
        positions `rows` among them."""
        uids, stored = self.stored(rows)
        return uids, normalized(stored)


def input_files(run: RunDir, kind: str, where: str | None, folder: str) -> list[InputFile]:
    """Returns the vector files of `kind` with the input `where` selects in each (its uids routed to
    <folder>/<shard>.parquet under the run when there is a predicate); raises UsageError for a bad predicate or a
    kind the run lacks."""
    paths, column = vector_files(run, kind)
    if where is None:
        return [InputFile(str(p), column, None) for p in paths]
    target = run.path / folder
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    ids = {m["shard"]: m["shard_id"] for m in run.markers("ingest")}
    wanted = {p.stem for p in paths}
    con = connect(run)
    try:
        reader = selected_query(con, where, "uid, shard", "ORDER BY shard")
        _write_routed(run, folder, reader, ids, wanted)
    finally:
        con.close()
    return [InputFile(str(p), column, str(target / p.name)) for p in paths]


def _write_routed(run: RunDir, folder: str, reader: pa.RecordBatchReader, ids: dict, wanted: set) -> None:
    """Writes each wanted shard's selected uids to <folder>/<shard id>.parquet (an empty file for one with none),
    a shard's file as soon as the reader, ordered by shard, has passed it."""
    pending: dict[str, list[pa.Array]] = {}

    def flush(shard_id: str) -> None:
        uids = pending.pop(shard_id, [])
        run.write_table(f"{folder}/{shard_id}.parquet", pa.table(
            {"uid": pa.concat_arrays(uids) if uids else pa.array([], pa.string())}))

    for batch in reader:
        shards = batch.column(1)
        for shard in pc.unique(shards).to_pylist():
            if ids.get(shard) in wanted:
                pending.setdefault(ids[shard], []).append(batch.column(0).filter(pc.equal(shards, shard)))
        if batch.num_rows:
            for shard_id in [s for s in pending if s != ids.get(shards[-1].as_py())]:
                flush(shard_id)
    for shard_id in sorted(wanted - {p.stem for p in (run.path / folder).glob("*.parquet")}):
        flush(shard_id)


def input_firsts(counts: list[int]) -> np.ndarray:
    """Returns the first input position of each file, given its number of input rows."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts else np.zeros(0, np.int64)
