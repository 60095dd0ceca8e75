"""Exact nearest-neighbour search of a few queries over the whole pool, by tasks: each task reads one input file
(curate.stages.inputfiles) and returns its k best rows per query; the driver keeps the running k best. No process
holds the pool: a task holds one file and the queries, the driver the queries and their k best.

It serves searches whose queries are few next to the pool (score normalization's background: a seeded sample and
the samples at a copy threshold). Inner products are exact, so it finds what an exhaustive faiss search finds;
where the in-memory search uses an inverted file (past 100,000 vectors) this one can only find more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from curate.runners import Runner, quiet
from curate.stages.inputfiles import InputFile, input_firsts

QUERY_BLOCK = 1024  # queries scored against a file at a time: a block x rows float32 similarity matrix


class FileNeighbours:
    """The input rows of `files` (with `counts` input rows each), numbered by input position, searched by tasks of
    `runner`."""

    def __init__(self, files: list[InputFile], counts: list[int], runner: Runner):
        self.files, self.counts, self.runner = files, list(counts), quiet(runner)
        self.firsts = input_firsts(self.counts)

    def __len__(self) -> int:
        """Returns the number of input rows."""
        return int(sum(self.counts))

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """Returns the unit vectors at the input `positions` (any order), read by one task per file holding any and
        placed as each task completes (the driver holds the result and one file's rows)."""
        result = np.zeros((0, 0), np.float32)
        for block, where in self._gather(positions, _read_rows, "gather"):
            if result.shape != (len(positions), block.shape[1]):
                result = np.empty((len(positions), block.shape[1]), np.float32)
            result[where] = block
        return result

    def uids(self, positions: np.ndarray) -> pa.Array:
        """Returns the uids at the input `positions` (any order), read by one task per file holding any."""
        blocks = list(self._gather(positions, _read_uids, "gather uids"))
        if not blocks:
            return pa.array([], pa.string())
        uids = pa.concat_arrays([b for b, _ in blocks])
        return uids.take(pa.array(np.argsort(np.concatenate([o for _, o in blocks]), kind="stable")))

    def _gather(self, positions: np.ndarray, read, desc: str) -> Iterator[tuple[Any, np.ndarray]]:
        """Yields (read((file, rows)), where those rows go in `positions`) for each file holding any of them, as
        its task completes."""
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        owner = np.searchsorted(self.firsts, positions[order], side="right") - 1
        files = np.unique(owner)
        items = [(self.files[f], positions[order][owner == f] - self.firsts[f]) for f in files]
        for index, result in self.runner.completed(read, None, items, desc=desc):
            yield result, order[owner == files[index]]

    def nearest(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (sims, found), len(rows) x k: each input row's k nearest input rows by inner product, best first
        (found -1 and sim -inf past the pool's size)."""
        queries = self.vectors(rows)
        items = [(f, int(first)) for f, first, count in zip(self.files, self.firsts, self.counts, strict=True)
                 if count]
        best_sims = np.full((len(rows), k), -np.inf, np.float32)
        best_rows = np.full((len(rows), k), -1, np.int64)
        for sims, found in self.runner.map(_file_nearest, (queries, k), items, desc="background"):
            best_sims, best_rows = best_k(np.hstack([best_sims, sims]), np.hstack([best_rows, found]), k)
        return best_sims, best_rows


def _read_rows(_, item: tuple[InputFile, np.ndarray]) -> np.ndarray:
    file, rows = item
    return file.read(rows)[1]


def _read_uids(_, item: tuple[InputFile, np.ndarray]) -> pa.Array:
    file, rows = item
    return file.uids(rows)


def _file_nearest(shared: tuple[np.ndarray, int], item: tuple[InputFile, int]) -> tuple[np.ndarray, np.ndarray]:
    """Returns (sims, input positions) of each query's k nearest rows of one file (padded with -inf and -1)."""
    queries, k = shared
    file, first = item
    base = file.read()[1]
    sims, found = [], []
    for start in range(0, len(queries), QUERY_BLOCK):
        block = queries[start:start + QUERY_BLOCK] @ base.T
        rows = np.broadcast_to(np.arange(base.shape[0], dtype=np.int64) + first, block.shape)
        top_sims, top_rows = best_k(block, rows, k)
        sims.append(top_sims)
        found.append(top_rows)
    return np.vstack(sims), np.vstack(found)


def best_k(sims: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the k highest `sims` per row with their `rows`, best first (ties to the lower row), padded with
    -inf and -1 when a row has fewer."""
    if sims.shape[1] < k:
        pad = k - sims.shape[1]
        sims = np.hstack([sims, np.full((len(sims), pad), -np.inf, np.float32)])
        rows = np.hstack([rows, np.full((len(rows), pad), -1, np.int64)])
    elif sims.shape[1] > k:  # the k best first (in any order), then only those sorted
        chosen = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        sims, rows = np.take_along_axis(sims, chosen, axis=1), np.take_along_axis(rows, chosen, axis=1)
    order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -sims.astype(np.float64)), axis=1)
    return np.take_along_axis(sims, order, axis=1).astype(np.float32), np.take_along_axis(rows, order, axis=1)
