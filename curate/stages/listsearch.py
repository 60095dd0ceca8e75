"""Similarity search over an input no process holds: an inverted file written to disk under the run and searched
by tasks, for every pair above a threshold (near duplicates) and the nearest neighbours of chosen rows.

The lists are those of faiss's IndexIVFFlat: ivf_lists(N) unit centroids (spherical k-means on a seeded sample of
TRAIN_PER_LIST rows per list, at most TRAIN_ROWS); one list, and so an exact search, up to EXACT_LIMIT rows. Every
row is stored once, in the bucket of its home list (its nearest centroid); a bucket is a group of lists (a k-means
of their centroids) holding at most a task's budget of rows (curate.stages.buckets). A search then writes each
query row into the buckets of the other lists it probes, and a task per bucket compares, list by list, the rows
whose home the list is (and those probing it) with the rows whose home it is; every similarity is exact.

Which lists a row probes: for neighbours, its NPROBE nearest, as faiss does. For pairs at a threshold t, only the
lists that can hold one, among those NPROBE: a row x can have a pair above t in list L only when angle(x, c_L) <=
arccos(t) + r_L, r_L the largest angle between L's centroid and a row of L (the triangle inequality on the
sphere). Where the lists are tight, most rows probe no other list than their own; no pair is lost by the bound.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.copydetect.search import EXACT_LIMIT, NPROBE, ivf_lists, unique_pairs
from curate.errors import UsageError
from curate.rundir import RunDir
from curate.runners import Runner, quiet
from curate.stages.buckets import bucket_target
from curate.stages.embeddings import normalized, packed, packed_field, unpacked
from curate.stages.filesearch import FileNeighbours, best_k
from curate.stages.inputfiles import InputFile
from curate.stages.listtasks import home_file, nearest_bucket, pair_schema, pairs_bucket, query_file

TRAIN_PER_LIST = 64  # sample rows the lists are trained on, per list...
TRAIN_ROWS = 1 << 18  # ...and at most (512 MiB of 512-d float32 on the driver)
TRAIN_NITER = 10  # Lloyd iterations, as faiss trains an inverted file
PLAN_ROUNDS = 4  # regroupings of the lists until the estimated buckets fit the budget


@dataclass(frozen=True)
class Lists:
    """The inverted lists: unit centroids, the bucket holding each list, and how many lists a row probes."""

    centroids: np.ndarray
    bucket: np.ndarray
    nprobe: int

    @property
    def buckets(self) -> int:
        """Returns the number of buckets."""
        return int(self.bucket.max()) + 1 if len(self.bucket) else 0


class ListSearch:
    """The input rows of `files` (numbered by input position, as curate.stages.filesearch numbers them) in inverted
    lists under the run's folder `work`, searched by tasks of `runner`. Building it trains the lists and stores
    every row in its home list's bucket (or finds them stored by an interrupted run of the same stage version)."""

    def __init__(self, run: RunDir, files: list[InputFile], work: str, runner: Runner, seed: int = 0):
        self.run, self.work, self.runner = run, work, runner
        counts = quiet(runner).map(_count_rows, None, files, desc="count")
        self.files = FileNeighbours(files, counts, runner)
        self.lists = self._lists(seed)
        self.items = [(f, int(first)) for f, first in zip(files, self.files.firsts, strict=True)]
        lowest = np.ones(len(self.lists.centroids))  # each list's lowest similarity of a home row to its centroid
        for lists, low in runner.each(home_file, (str(run.path), work, self.lists), self.items, desc="neardup lists"):
            np.minimum.at(lowest, lists, low)
        self.radius = np.arccos(np.clip(lowest, -1, 1))

    def __len__(self) -> int:
        """Returns the number of input rows."""
        return len(self.files)

    def _lists(self, seed: int) -> Lists:
        """Returns the lists an interrupted run stored, else trains, plans and stores them."""
        path = self.run.path / self.work / "lists.parquet"
        if path.exists():
            table = pq.read_table(path)
            return Lists(unpacked(table, "centroid"), table["bucket"].to_numpy(), int(table.schema.metadata[b"nprobe"]))
        n = len(self.files)
        if n == 0:
            return Lists(np.ones((1, 1), np.float32), np.zeros(1, np.int32), 1)
        count = 1 if n <= EXACT_LIMIT else ivf_lists(n)
        size = min(n, max(count, min(TRAIN_ROWS, count * TRAIN_PER_LIST)))
        sample = self.files.vectors(np.sort(np.random.default_rng(seed).choice(n, size, replace=False)))
        centroids = _train(sample, count, seed) if count > 1 else normalized(np.ones((1, sample.shape[1]), np.float32))
        lists = Lists(centroids, _plan(sample, centroids, n, seed), min(NPROBE, count))
        self.run.write_table(f"{self.work}/lists.parquet", pa.table(
            [pa.array(lists.bucket.astype(np.int32)), packed(centroids)],
            schema=pa.schema([pa.field("bucket", pa.int32()), packed_field("centroid", np.float32, centroids.shape[1])],
                             metadata={"nprobe": str(lists.nprobe)})))
        return lists

    def _queries(self, folder: str, cutoff: np.ndarray, wanted: np.ndarray | None) -> None:
        """Writes the query rows (the `wanted` input positions; None: all) into the buckets of the lists they probe
        beyond their home: their nprobe nearest whose similarity is >= the list's `cutoff`."""
        shared = (str(self.run.path), self.work, self.lists, cutoff, wanted, folder)
        quiet(self.runner).map(query_file, shared, self.items, desc="neardup probes")

    def pairs(self, threshold: float, max_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (i, j, sims): every pair of input positions i < j the lists find with similarity >= threshold -
        TOLERANCE, each once, sorted; raises UsageError when there are more than `max_pairs`."""
        name = f"{np.float32(threshold).view(np.uint32):08x}"
        folder, found_in = f"{self.work}/probes-{name}", f"{self.work}/pairs-{name}"
        buckets = list(range(self.lists.buckets))
        if not all((self.run.path / found_in / f"{b:05d}.parquet").exists() for b in buckets):
            reach = np.minimum(np.pi, math.acos(np.clip(threshold, -1, 1)) + self.radius)
            self._queries(folder, np.cos(reach) - 1e-6, None)
        shared = (str(self.run.path), self.work, threshold, 2 * max_pairs, folder, found_in, len(self))
        found = self.runner.map(pairs_bucket, shared, buckets, desc="neardup pairs")
        shutil.rmtree(self.run.path / folder, ignore_errors=True)
        if sum(found) > 2 * max_pairs:
            raise UsageError(f"--threshold {threshold} makes over {max_pairs:,} similar pairs among {len(self):,} "
                             "vectors: that is not near-duplication; raise the threshold")
        tables = [pq.read_table(self.run.path / found_in / f"{b:05d}.parquet") for b in buckets]
        table = pa.concat_tables(tables) if tables else pair_schema().empty_table()
        return unique_pairs(len(self), table["i"].to_numpy(), table["j"].to_numpy(), table["sim"].to_numpy())

    def nearest(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (sims, found), len(rows) x k: each input row's k nearest input rows (itself included) in the
        nprobe lists nearest it, best first (-inf and -1 past those found)."""
        wanted, back = np.unique(np.asarray(rows, np.int64), return_inverse=True)
        folder = f"{self.work}/probes-{hashlib.sha1(wanted.tobytes()).hexdigest()[:16]}"
        self._queries(folder, np.full(len(self.lists.centroids), -np.inf), wanted)
        sims, found = self._nearest(wanted, k, folder)
        shutil.rmtree(self.run.path / folder, ignore_errors=True)
        return sims[back.reshape(-1)], found[back.reshape(-1)]

    def _nearest(self, wanted: np.ndarray | None, k: int, folder: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Returns the k nearest of the `wanted` rows (None: all) from a task per bucket, merged."""
        size = len(self) if wanted is None else len(wanted)
        best_sims, best_rows = np.full((size, k), -np.inf, np.float32), np.full((size, k), -1, np.int64)
        shared = (str(self.run.path), self.work, wanted, k, folder)
        for positions, sims, found in quiet(self.runner).each(nearest_bucket, shared,
                                                              list(range(self.lists.buckets)), desc="nearest"):
            at = positions if wanted is None else np.searchsorted(wanted, positions)
            best_sims[at], best_rows[at] = best_k(np.hstack([best_sims[at], sims]), np.hstack([best_rows[at], found]),
                                                  k)
        return best_sims, best_rows

    def edges(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (i, j, sims): the edges i < j between every input row and its k nearest other rows of its home
        list, each once: true pairs, though not every row's k nearest in the whole input."""
        n = len(self)
        if n < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        sims, found = self._nearest(None, min(n, k + 1), None)
        return unique_pairs(n, np.repeat(np.arange(n, dtype=np.int64), found.shape[1]), found.reshape(-1),
                            sims.reshape(-1))


def _train(sample: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Returns `count` unit centroids of a spherical k-means of the sample's rows."""
    import faiss

    kmeans = faiss.Kmeans(sample.shape[1], count, niter=TRAIN_NITER, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=TRAIN_PER_LIST)
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    return normalized(kmeans.centroids)


def _plan(sample: np.ndarray, centroids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Returns the bucket of each list: the lists grouped by a k-means of their centroids into as many buckets as
    keep each one's rows (estimated from the sample's homes) within curate.stages.buckets' target."""
    count = len(centroids)
    row_bytes = 4 * sample.shape[1] + 12
    target = bucket_target(n * row_bytes)
    groups = min(count, max(1, math.ceil(n * row_bytes / target)))
    homes = _nearest_centroid(sample, centroids)
    for _ in range(PLAN_ROUNDS):
        bucket = _group(centroids, groups, seed)
        largest = np.bincount(bucket[homes]).max() * n / len(sample) * row_bytes
        if largest <= target or groups == count:
            break
        groups = min(count, math.ceil(groups * largest / target))
    return bucket


def _nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Returns the index of each unit row's nearest centroid (faiss: no rows x centroids matrix)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index.search(np.ascontiguousarray(x, dtype=np.float32), 1)[1][:, 0]


def _group(centroids: np.ndarray, groups: int, seed: int) -> np.ndarray:
    """Returns a group 0..g-1 for each centroid: `groups` of a spherical k-means of them (empty ones dropped)."""
    import faiss

    count = len(centroids)
    if groups >= count:
        return np.arange(count, dtype=np.int32)
    if groups == 1:
        return np.zeros(count, np.int32)
    kmeans = faiss.Kmeans(centroids.shape[1], groups, niter=20, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=count)
    kmeans.train(np.ascontiguousarray(centroids, dtype=np.float32))
    label = _nearest_centroid(centroids, kmeans.centroids)
    return np.unique(label, return_inverse=True)[1].reshape(-1).astype(np.int32)


def _count_rows(_, file: InputFile) -> int:
    return len(file.uids()) if file.selected is not None else pq.ParquetFile(file.path).metadata.num_rows
