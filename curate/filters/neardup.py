"""Near-duplicate removal by copy detection: pairs of samples whose descriptors (`curate embed RUN --model DIR
--as copy`; or the CLIP image embeddings) have cosine similarity >= --threshold are linked, linked samples form a
duplicate group (connected components), and each group keeps one member by --keep: `first` (earliest in the
pool's order) or `highest:<column>` (e.g. highest:dfn_score; samples without a value last, ties to the earliest).

Columns in the samples view: neardup_keep, neardup_group (a group id, NULL for a sample with no near copy),
neardup_of (the uid its group kept, for removed samples) and neardup_max_sim (its highest similarity to another
member of its group). The view `neardup_groups` lists every group's members with their similarity to the kept one.
`--keep-fraction F` finds the threshold at which the groups number F x the input (each sample's 32 nearest
neighbours are the candidate links). The faiss search runs on the driver (curate.copydetect.search: exact up to
200,000 samples, IVF past it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.copydetect.groups import components, kept_rows, threshold_for_fraction
from curate.copydetect.search import knn_pairs, similar_pairs
from curate.errors import UsageError
from curate.graph import column_owners
from curate.options import option
from curate.rundir import RunDir
from curate.stages.pool import Pool, PoolMethod, PoolResult, embedding_stage_of

NEIGHBOURS = 32  # candidate links per sample for --keep-fraction


@dataclass(frozen=True, kw_only=True)
class NearDup(PoolMethod):
    """Near-duplicate groups over the run's descriptors, one member kept per group."""

    name = "neardup"
    columns = ("neardup_keep", "neardup_group", "neardup_of", "neardup_max_sim")
    uses_runner = True
    hint = "curate filter neardup RUN --threshold T"

    threshold: float | None = option(None, "link two samples whose cosine similarity is >= this", group="threshold")
    keep_fraction: float | None = option(None, "find the threshold that keeps this share of the input",
                                         group="threshold")
    descriptor: str = option("copy", "the vectors compared: a descriptor set (curate embed --as NAME) or image")
    keep: str = option("first", "which member of a group stays: first, or highest:<column> of the samples view")
    where: str | None = option(None, "SQL predicate choosing the input (default: every embedded sample)")

    def validate(self) -> None:
        """Raises UsageError for a threshold outside [-1, 1] or a malformed --keep rule."""
        if (self.threshold is None) == (self.keep_fraction is None):
            raise UsageError("give exactly one of --threshold or --keep-fraction")
        if self.threshold is not None and not -1 <= self.threshold <= 1:
            raise UsageError(f"--threshold must be a cosine similarity in [-1, 1], got {self.threshold}")
        if self.keep != "first" and not (self.keep.startswith("highest:") and len(self.keep) > len("highest:")):
            raise UsageError(f"--keep must be first or highest:<column>, got {self.keep!r}")

    def reads(self, run: RunDir) -> tuple[str, ...]:
        """Returns the descriptor set's stage, and the stage adding the --keep column when there is one."""
        owner = column_owners(run).get(self.keep.removeprefix("highest:")) if self.keep != "first" else None
        return tuple(s for s in (embedding_stage_of(run, self.descriptor), owner) if s is not None)

    def compute(self, pool: Pool) -> PoolResult:
        """Returns the groups' columns and table for the input rows, and the counts."""
        vectors = pool.embeddings(self.descriptor).vectors
        rows = np.flatnonzero(pool.rows)
        threshold, (i, j, sims) = self._links(vectors[rows])
        labels = components(len(rows), i, j)
        kept = kept_rows(labels, self._priority(pool, rows))
        sizes = np.bincount(labels, minlength=labels.max() + 1 if len(labels) else 0)
        max_sim = np.full(len(rows), np.nan, np.float32)
        np.fmax.at(max_sim, i, sims)
        np.fmax.at(max_sim, j, sims)
        return self._result(pool, rows, labels, kept, sizes, max_sim, vectors, threshold)

    def _links(self, vectors: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
        """Returns (threshold, the pairs at or above it)."""
        if self.threshold is not None:
            return self.threshold, similar_pairs(vectors, self.threshold)
        i, j, sims = knn_pairs(vectors, NEIGHBOURS)
        threshold = threshold_for_fraction(len(vectors), i, j, sims, self.keep_fraction)
        linked = sims >= threshold
        return threshold, (i[linked], j[linked], sims[linked])

    def _priority(self, pool: Pool, rows: np.ndarray) -> np.ndarray:
        """Returns each input row's priority to be kept: minus its position for `first`, else the column's
        value (NaN where NULL)."""
        if self.keep == "first":
            return -np.arange(len(rows), dtype=np.float64)
        from curate.catalogs import connect
        from curate.catalogs.views import require_columns

        column = require_columns(pool.run, [self.keep.removeprefix("highest:")])[0]
        con = connect(pool.run)
        try:
            quoted = '"' + column.replace('"', '""') + '"'
            values = dict(con.execute(f"SELECT uid, CAST({quoted} AS DOUBLE) FROM samples").fetchall())
        except Exception as exc:  # duckdb: the column is not numeric
            raise UsageError(f"--keep highest:{column} needs a numeric column: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()
        uids = pool.index.uids.take(pa.array(rows)).to_pylist()
        return np.array([np.nan if values.get(u) is None else values[u] for u in uids], dtype=np.float64)

    def _result(self, pool: Pool, rows: np.ndarray, labels: np.ndarray, kept: np.ndarray, sizes: np.ndarray,
                max_sim: np.ndarray, vectors: np.ndarray, threshold: float) -> PoolResult:
        """Returns the PoolResult: columns over the whole index (input rows filled), the groups table, counts."""
        n, in_group = len(pool.index), sizes[labels] > 1 if len(rows) else np.zeros(0, bool)
        is_kept = kept == np.arange(len(rows))
        keep, group = np.ones(n, bool), np.full(n, -1, np.int64)
        of, best = np.full(n, -1, np.int64), np.full(n, np.nan, np.float32)
        keep[rows], best[rows] = is_kept, max_sim
        group[rows[in_group]] = labels[in_group]
        of[rows[~is_kept]] = rows[kept[~is_kept]]
        uids = pool.index.uids
        of_uid = uids.take(pa.array(np.maximum(of, 0))).to_numpy(zero_copy_only=False)
        members = np.flatnonzero(in_group)
        similarity = np.einsum("ij,ij->i", vectors[rows[members]], vectors[rows[kept[members]]])
        groups = pa.table({"group_id": pa.array(labels[members]), "size": pa.array(sizes[labels[members]]),
                           "uid": uids.take(pa.array(rows[members])), "kept": pa.array(is_kept[members]),
                           "similarity": pa.array(similarity.astype(np.float32))}).sort_by(
            [("size", "descending"), ("group_id", "ascending"), ("kept", "descending")])
        return PoolResult(
            columns={"neardup_keep": pa.array(keep), "neardup_group": pa.array(group, mask=group < 0),
                     "neardup_of": pa.array(of_uid, pa.string(), mask=of < 0),
                     "neardup_max_sim": pa.array(best, mask=np.isnan(best))},
            counts=dict(scored=len(rows), kept=int(is_kept.sum()), dropped=int((~is_kept).sum()),
                        groups=int((sizes > 1).sum()), threshold=None if np.isinf(threshold) else threshold),
            tables={"groups": groups})
