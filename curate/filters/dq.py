"""Dataset quantization, DQ (Zhou et al., ICCV 2023): GraphCut bins within each group of the input, then the same share
of every bin drawn at random (curate.concepts.quantization has the algorithm).

The reference bins each class of a labelled set; an unlabelled web pool is binned within its k-means concept
clusters (`--per cluster`, the default: cost grows with the sum of squared cluster sizes, not N^2), within the
values of a label column (`--per label --label-column C`, as the reference does per class), or over the whole input
(`--per none`, for small inputs). A cluster too small for --bins bins that each keep a sample gets fewer (k-means
makes many small clusters on a web pool; the reference's classes never are). `--where` chooses the input, as DBP's
does; the kept total is int(N_input * keep_fraction). Columns in the samples view: dq_bin (the bin a sample fell in,
in generation order within its group), dq_rank (its pick order within the bin) and dq_keep. The dq_bins view has per
bin its group, size, kept count, and the mean similarity of its members to the bin's own centroid and to the
input's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.catalogs import connect
from curate.catalogs.views import require_columns
from curate.concepts.clustering import PoolClusters
from curate.concepts.quantization import SIMILARITIES, graphcut_bins, group_bin_count, keep_counts, sample_bins
from curate.errors import UsageError
from curate.graph import StageRun, column_owners
from curate.options import option, positive_int
from curate.rundir import RunDir
from curate.stages.pool import Pool, PoolMethod, PoolResult, embedding_stage

GROUPINGS = ("cluster", "label", "none")
BINS_SCHEMA = pa.schema([("group", pa.int64()), ("bin", pa.int64()), ("size", pa.int64()), ("kept", pa.int64()),
                         ("to_bin_centroid", pa.float64()), ("to_input_centroid", pa.float64())])


def group_bins(vectors: np.ndarray, item: tuple[np.ndarray, int, str]) -> list[np.ndarray]:
    """Returns the GraphCut bins of one group (row indices into `vectors`, in pick order): a runner task."""
    rows, bins, similarity = item
    return [rows[b] for b in graphcut_bins(vectors[rows], bins, similarity)]


def _centroid_similarity(x: np.ndarray, centre: np.ndarray) -> float:
    norm = np.linalg.norm(centre)
    return float((x @ centre).mean() / norm) if norm > 0 and len(x) else float("nan")


@dataclass(frozen=True, kw_only=True)
class DQ(PoolClusters, PoolMethod):
    """DQ over the embedded samples `where` selects, binned within concept clusters or over the whole input."""

    name = "dq"
    columns = ("dq_bin", "dq_rank", "dq_keep")
    uses_runner = True
    hint = "curate filter dq RUN --keep-fraction F --bins K"

    keep_fraction: float = option(help="keep int(N * this) samples, N = the samples DQ is given")
    bins: int = option(10, "GraphCut bins per group (K)", type=positive_int)
    per: str = option("cluster", "group to bin within: cluster (k-means concepts), label (--label-column) or none "
                      "(the whole input)", choices=GROUPINGS)
    label_column: str | None = option(None, "with --per label: the samples column whose values are the groups")
    similarity: str = option("cosine", "GraphCut's similarity: cosine, or dot as the reference's embedding path",
                             choices=SIMILARITIES)
    where: str | None = option(None, "SQL predicate choosing DQ's input (default: every embedded sample)")
    seed: int = option(0, "seed of the bin sampling")

    def validate(self) -> None:
        """Raises UsageError unless --label-column goes with --per label, and only with it."""
        if (self.per == "label") != (self.label_column is not None):
            raise UsageError("--per label needs --label-column COLUMN, and --label-column needs --per label")

    def reads(self, run: RunDir) -> tuple[str, ...]:
        """Returns the embeddings' stage, the k-means stage when binning within clusters, and the stage that adds
        the label column when binning per label."""
        if self.per == "cluster":
            return super().reads(run)
        owner = column_owners(run).get(self.label_column) if self.per == "label" else None
        return (embedding_stage(run), *([owner] if owner else []))

    def upstream(self, run: RunDir) -> list[StageRun]:
        """Returns the k-means step when binning within clusters."""
        return super().upstream(run) if self.per == "cluster" else []

    def run_upstream(self, pool: Pool) -> None:
        """Brings the k-means stage up to date when binning within clusters."""
        if self.per == "cluster":
            super().run_upstream(pool)

    def groups(self, pool: Pool) -> list[tuple[int, np.ndarray, int]]:
        """Returns (group id, input row indices, bins) per non-empty group.

        A k-means cluster too small for --bins bins that each keep a sample gets fewer: floor(size * fraction),
        at least one (clusters are the method's own partition; --bins is their ceiling). Label groups and the
        whole input are the user's choice: one smaller than --bins raises UsageError.
        """
        rows = np.flatnonzero(pool.rows)
        if self.per == "cluster":
            labels = self.clustering(pool).assignment[rows]
        elif self.per == "label":
            labels = self.label_groups(pool)[rows]
        else:
            labels = np.zeros(len(rows), int)
        groups = [(int(g), rows[labels == g]) for g in np.unique(labels)]
        if self.per == "cluster":
            return [(g, members, group_bin_count(len(members), self.bins, self.keep_fraction)) for g, members in groups]
        small = [(g, len(members)) for g, members in groups if len(members) < self.bins]
        if small:
            raise UsageError(f"group {small[0][0]} of --per {self.per} holds {small[0][1]} samples, fewer than "
                             f"--bins {self.bins} ({len(small)} groups do): pass fewer --bins or --per cluster")
        return [(g, members, self.bins) for g, members in groups]

    def label_groups(self, pool: Pool) -> np.ndarray:
        """Returns each embedded sample's group: the index of its label-column value among the sorted distinct
        values (samples without a value form one group of their own). Raises UsageError for an unknown column."""
        [column] = require_columns(pool.run, [self.label_column])
        con = connect(pool.run)
        try:  # the name is checked against the view's columns, and quoted
            sql = f'SELECT uid, CAST("{column}" AS VARCHAR) AS label FROM samples'
            table = con.sql(sql).to_arrow_table()
        finally:
            con.close()
        labels = dict(zip(table["uid"].to_pylist(), table["label"].to_pylist(), strict=True))
        values = [labels.get(uid) for uid in pool.index.uids.to_pylist()]
        order = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}))}
        return np.array([order.get(v, len(order)) for v in values], dtype=np.int64)

    def compute(self, pool: Pool) -> PoolResult:
        """Returns dq_bin, dq_rank and dq_keep for the input rows, and the dq_bins table."""
        vectors = pool.embeddings(self.embedding).vectors
        groups = self.groups(pool)
        per_group = pool.runner.map(group_bins, vectors, [(rows, k, self.similarity) for _, rows, k in groups],
                                    desc="dq bins")
        bins = [b for group in per_group for b in group]
        counts_per_bin = keep_counts(np.array([len(b) for b in bins]), self.keep_fraction,
                                     allow_empty=self.per == "cluster")
        kept = sample_bins(bins, counts_per_bin, self.seed)
        n = len(pool.index)
        bin_of, rank = np.full(n, -1, np.int32), np.full(n, -1, np.int32)
        for group in per_group:
            for k, members in enumerate(group):
                bin_of[members], rank[members] = k, np.arange(len(members), dtype=np.int32)
        keep = np.zeros(n, dtype=bool)
        keep[kept] = True
        table = self.bins_table(vectors, pool.rows, groups, per_group, keep)
        counts = dict(input=int(pool.rows.sum()), kept=int(keep.sum()), dropped=int(pool.rows.sum() - keep.sum()),
                      groups=len(groups), bins=len(bins),
                      groups_with_fewer_bins=sum(k < self.bins for *_, k in groups),
                      bins_keeping_none=int((counts_per_bin == 0).sum()))
        return PoolResult({"dq_bin": bin_of, "dq_rank": rank, "dq_keep": keep}, counts, tables={"bins": table})

    def bins_table(self, vectors: np.ndarray, rows: np.ndarray, groups, per_group, keep: np.ndarray) -> pa.Table:
        """Returns per bin: group, bin, size, kept, and mean similarity to its own centroid and to the input's (no
        rows, the same columns, for an empty input)."""
        pool_centre = vectors[rows].mean(axis=0) if rows.any() else None
        records = []
        for (group, *_), bins in zip(groups, per_group, strict=True):
            for k, members in enumerate(bins):
                x = vectors[members]
                records.append(dict(group=group, bin=k, size=len(members), kept=int(keep[members].sum()),
                                    to_bin_centroid=_centroid_similarity(x, x.mean(axis=0)),
                                    to_input_centroid=_centroid_similarity(x, pool_centre)))
        return pa.Table.from_pylist(records, schema=BINS_SCHEMA)
