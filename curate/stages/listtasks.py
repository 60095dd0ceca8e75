"""The tasks of curate.stages.listsearch: per input file, store its rows in their home lists' buckets and write
its query rows into the buckets of the lists they probe; per bucket, compare each list's query rows with its home
rows, for the pairs above a threshold or each query's nearest rows. Every file a task writes is written once, so
a rerun skips what an interrupted one finished.

Under the search's folder:
  homes/<shard>.parquet             each input row's home list and similarity to its centroid (the file's marker)
  base/<bucket>/<shard>.parquet     position, home, vector (as stored): the rows whose home list is in the bucket
  <probes>/<bucket>/<shard>.parquet position, list, vector: a search's query rows, once per list they probe there
  <pairs>/<bucket>.parquet          i, j, sim: the bucket's pairs at a threshold
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.copydetect.search import TOLERANCE, unique_pairs
from curate.rundir import RunDir
from curate.stages.embeddings import normalized, packed, packed_field, unpacked
from curate.stages.filesearch import best_k
from curate.stages.inputfiles import InputFile

BLOCK = 1 << 22  # similarities computed at a time (16 MiB of float32): centroids per row chunk, or a list's block


def _rows_per_block(width: int) -> int:
    return max(1, BLOCK // max(width, 1))


def _similarities(x: np.ndarray, centroids: np.ndarray):
    """Yields (first row, the rows' similarities to every centroid) for blocks of the unit rows `x`."""
    step = _rows_per_block(len(centroids))
    for start in range(0, len(x), step):
        yield start, x[start:start + step] @ centroids.T


def _vector_schema(second: str, dtype: np.dtype, dim: int) -> pa.Schema:
    return pa.schema([pa.field("position", pa.int64()), pa.field(second, pa.int32()),
                      packed_field("vector", dtype, dim)])


def _write_by_bucket(run: RunDir, folder: str, stem: str, positions: np.ndarray, lists: np.ndarray,
                     stored: np.ndarray, bucket_of: np.ndarray, second: str) -> None:
    """Writes the rows (input position, list, stored vector) into <folder>/<bucket>/<stem>.parquet by their
    list's bucket."""
    schema = _vector_schema(second, stored.dtype, stored.shape[1])
    buckets = bucket_of[lists]
    for b in np.unique(buckets):
        at = np.flatnonzero(buckets == b)
        run.write_table(f"{folder}/{b:05d}/{stem}.parquet", pa.table(
            [pa.array(positions[at], pa.int64()), pa.array(lists[at], pa.int32()), packed(stored[at])], schema=schema))


def home_file(shared: tuple, item: tuple[InputFile, int]) -> tuple[np.ndarray, np.ndarray]:
    """Stores one file's input rows in their home lists' buckets (once); returns the lists its rows belong to and,
    for each, the lowest similarity of one of them to the list's centroid."""
    run_path, work, lists = shared
    file, first = item
    run = RunDir(run_path)
    marker = f"{work}/homes/{file.stem}.parquet"
    if not (run.path / marker).exists():
        _, stored = file.stored()
        home, similarity = np.zeros(len(stored), np.int32), np.zeros(len(stored), np.float32)
        for start, sims in _similarities(normalized(stored), lists.centroids):
            home[start:start + len(sims)] = np.argmax(sims, axis=1)
            similarity[start:start + len(sims)] = sims[np.arange(len(sims)), home[start:start + len(sims)]]
        _write_by_bucket(run, f"{work}/base", file.stem, first + np.arange(len(stored)), home, stored, lists.bucket,
                         "home")
        run.write_table(marker, pa.table({"home": home, "similarity": similarity}))
    table = pq.read_table(run.path / marker)
    home, similarity = table["home"].to_numpy(), table["similarity"].to_numpy()
    order = np.lexsort((similarity, home))
    touched, lowest = np.unique(home[order], return_index=True)
    return touched, similarity[order][lowest]


def _probed(sims: np.ndarray, home: np.ndarray, cutoff: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (row, list) of each row's `count` most similar lists other than its home whose similarity is >= the
    list's cutoff."""
    sims[np.arange(len(sims)), home] = -np.inf
    sims[sims < cutoff] = -np.inf
    if np.isfinite(sims).sum(axis=1).max(initial=0) > count:  # more candidates than probes: the nearest
        top = np.argpartition(-sims, count - 1, axis=1)[:, :count]
        row, column = np.nonzero(np.isfinite(np.take_along_axis(sims, top, axis=1)))
        return row, top[row, column]
    return np.nonzero(np.isfinite(sims))


def query_file(shared: tuple, item: tuple[InputFile, int]) -> None:
    """Writes one file's query rows (the wanted input positions, None: all) into the buckets of the lists they
    probe other than their home (once: a marked file is skipped)."""
    run_path, work, lists, cutoff, wanted, folder = shared
    file, first = item
    run = RunDir(run_path)
    marker = f"{folder}/done/{file.stem}.json"
    if (run.path / marker).exists():
        return
    home = pq.read_table(run.path / work / "homes" / f"{file.stem}.parquet")["home"].to_numpy()
    rows = np.arange(len(home)) if wanted is None else wanted[(wanted >= first) & (wanted < first + len(home))] - first
    if lists.nprobe > 1 and len(rows):
        _, stored = file.stored(rows)
        at, probed = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for start, sims in _similarities(normalized(stored), lists.centroids):
            r, c = _probed(sims, home[rows[start:start + len(sims)]], cutoff, lists.nprobe - 1)
            at.append(start + r)
            probed.append(c)
        at, probed = np.concatenate(at), np.concatenate(probed)
        _write_by_bucket(run, folder, file.stem, first + rows[at], probed, stored[at], lists.bucket, "list")
    run.write_json(marker, dict(rows=len(rows)))


@dataclass
class _Rows:
    """Rows of a bucket: input positions, the list of each (home or probed), unit float32 vectors."""

    positions: np.ndarray
    lists: np.ndarray
    vectors: np.ndarray

    @staticmethod
    def read(paths: list, second: str) -> _Rows:
        """Returns the rows of the part files `paths` (stored in any dtype)."""
        tables = [pq.read_table(p) for p in paths]
        if not tables:
            return _Rows(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 1), np.float32))
        return _Rows(np.concatenate([t["position"].to_numpy() for t in tables]),
                     np.concatenate([t[second].to_numpy() for t in tables]),
                     np.concatenate([normalized(unpacked(t)) for t in tables]))

    def take(self, rows: np.ndarray) -> _Rows:
        """Returns the rows at `rows`."""
        return _Rows(self.positions[rows], self.lists[rows], self.vectors[rows])


def _parts(run_path: str, folder: str | None, bucket: int) -> list:
    if folder is None:
        return []
    return sorted((RunDir(run_path).path / folder / f"{bucket:05d}").glob("*.parquet"))


def _query_sets(run_path: str, work: str, folder: str | None, bucket: int):
    """Returns the bucket's base rows, and yields its query sets: the base rows (each in its home list), then each
    file's probing rows."""
    base = _Rows.read(_parts(run_path, f"{work}/base", bucket), "home")
    by_home = np.argsort(base.lists, kind="stable")

    def sets():
        yield base
        for path in _parts(run_path, folder, bucket):
            yield _Rows.read([path], "list")

    return base, by_home, sets()


def _segments(queries: _Rows, base: _Rows, by_home: np.ndarray):
    """Yields (query rows, base rows) per list: the queries probing it and the base rows whose home it is, the
    queries in blocks of at most BLOCK similarities."""
    order = np.argsort(queries.lists, kind="stable")
    probed, starts = np.unique(queries.lists[order], return_index=True)
    ends = np.append(starts[1:], len(order))[:len(starts)]
    homes = base.lists[by_home]
    for lst, a, b in zip(probed, starts, ends, strict=True):
        home = by_home[np.searchsorted(homes, lst):np.searchsorted(homes, lst, side="right")]
        step = _rows_per_block(len(home))
        for start in range(a, b, step) if len(home) else ():
            yield order[start:min(b, start + step)], home


def pair_schema() -> pa.Schema:
    """Returns the schema of a bucket's pairs file: i, j (input positions, i < j), sim."""
    return pa.schema([pa.field("i", pa.int64()), pa.field("j", pa.int64()), pa.field("sim", pa.float32())])


def pairs_bucket(shared: tuple, bucket: int) -> int:
    """Writes one bucket's pairs (i < j, each once) with similarity >= threshold - TOLERANCE (once); returns their
    number, or a number over `limit` without writing when there are more than that."""
    run_path, work, threshold, limit, folder, found_in, n = shared
    run = RunDir(run_path)
    relative = f"{found_in}/{bucket:05d}.parquet"
    if (run.path / relative).exists():
        return pq.ParquetFile(run.path / relative).metadata.num_rows
    base, by_home, query_sets = _query_sets(run_path, work, folder, bucket)
    cut, total = np.float32(threshold - TOLERANCE), 0
    found = [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))]
    for queries in query_sets:
        for block, home in _segments(queries, base, by_home):
            sims = queries.vectors[block] @ base.vectors[home].T
            r, c = np.nonzero(sims >= cut)
            found.append((queries.positions[block[r]], base.positions[home[c]], sims[r, c]))
            total += len(r)
            if total > limit:
                return total
    i, j, s = unique_pairs(n, *(np.concatenate(c) for c in zip(*found, strict=True)))
    run.write_table(relative, pa.table([pa.array(i), pa.array(j), pa.array(s)], schema=pair_schema()))
    return len(i)


def nearest_bucket(shared: tuple, bucket: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (input positions, sims, found) of the bucket's query rows that are wanted (None: all): each one's k
    nearest among the base rows of the lists it probes here, best first."""
    run_path, work, wanted, k, folder = shared
    base, by_home, query_sets = _query_sets(run_path, work, folder, bucket)
    chosen = np.ones(len(base.positions), bool) if wanted is None else np.isin(base.positions, wanted)
    probing = [pq.read_table(p, columns=["position"])["position"].to_numpy() for p in _parts(run_path, folder, bucket)]
    positions = np.unique(np.concatenate([base.positions[chosen], *probing]))
    best_sims = np.full((len(positions), k), -np.inf, np.float32)
    best_rows = np.full((len(positions), k), -1, np.int64)
    for number, queries in enumerate(query_sets):
        queries = queries.take(np.flatnonzero(chosen)) if number == 0 else queries
        for block, home in _segments(queries, base, by_home):
            sims = queries.vectors[block] @ base.vectors[home].T
            top_sims, top_rows = best_k(sims, np.broadcast_to(base.positions[home], sims.shape), k)
            at = np.searchsorted(positions, queries.positions[block])
            best_sims[at], best_rows[at] = best_k(np.hstack([best_sims[at], top_sims]),
                                                  np.hstack([best_rows[at], top_rows]), k)
    return positions, best_sims, best_rows
