"""Dataset quantization, DQ (Zhou et al., ICCV 2023): GraphCut bins within each group of the input, then the same share
of every bin drawn at random (curate.concepts.quantization has the algorithm).

The reference bins each class of a labelled set; an unlabelled web pool is binned within its k-means concept
clusters (`--per cluster`, the default: cost grows with the sum of squared cluster sizes, not N^2), within the
values of a label column (`--per label --label-column C`, as the reference does per class), or over the whole input
(`--per none`, for small inputs). A cluster too small for --bins bins that each keep a sample gets fewer (k-means
makes many small clusters on a web pool; the reference's classes never are). `--where` chooses the input, as DBP's
does; the kept total is int(N * keep_fraction), N its input (every embedded sample with --fraction-of pool).
Columns in the samples view: dq_bin (the bin a sample fell in, in generation order within its group), dq_rank (its
pick order within the bin) and dq_keep. The dq_bins view has per bin its group, size, kept count, and the mean
similarity of its members to the bin's own centroid and to the input's.

Per cluster it runs on the partition: the catalog counts the input per cluster, so the bins' sizes and the number
each keeps are settled on the driver before anything is written (the reference's exact total, no trial), then one
task per bucket cuts its clusters' bins and draws from them. Per label and over the whole input, the input is one
bucket made in memory (a label group or the whole input is binned in one process anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.catalogs import connect
from curate.catalogs.selection import selected_query, selected_uids
from curate.catalogs.views import quoted, require_columns
from curate.concepts.clustering import EMBEDDED, ClusterMethod, bucket_input, route_selection
from curate.concepts.members import segments
from curate.concepts.partition import Partition
from curate.concepts.quantization import SIMILARITIES, bin_sizes, graphcut_bins, group_bin_count, keep_counts
from curate.errors import UsageError
from curate.graph import StageRun, column_owners
from curate.options import option, positive_int
from curate.rundir import RunDir
from curate.runners import Runner
from curate.stages.buckets import BUCKET_BYTES_VARIABLE, bucket_bytes
from curate.stages.embeddings import (
    load_embeddings,
    normalized,
    packed,
    packed_field,
    pool_files,
    unpacked,
    vector_files,
)
from curate.stages.pool import FractionOf, embedding_stage

GROUPINGS = ("cluster", "label", "none")
BINS_SCHEMA = pa.schema([("group", pa.int64()), ("bin", pa.int64()), ("size", pa.int64()), ("kept", pa.int64()),
                         ("to_bin_centroid", pa.float64()), ("to_input_centroid", pa.float64())])
WORK = "partitions/dq"


@dataclass(frozen=True)
class BinPlan:
    """What DQ settles before writing: the groups with input (ascending ids), their bins, each bin's size and how
    many it keeps (bins in group order), and each group's first bin among all."""

    groups: np.ndarray
    bins: np.ndarray
    sizes: np.ndarray
    keep: np.ndarray

    @property
    def first_bin(self) -> dict[int, int]:
        """Returns group id -> the index of its first bin among all bins."""
        return dict(zip(self.groups.tolist(), (np.cumsum(self.bins) - self.bins).tolist(), strict=True))


@dataclass(frozen=True, kw_only=True)
class DQ(FractionOf, ClusterMethod):
    """DQ over the embedded samples `where` selects, binned within concept clusters, label groups or the input."""

    name = "dq"
    columns = ("dq_bin", "dq_rank", "dq_keep")
    hint = "curate filter dq RUN --keep-fraction F --bins K"

    keep_fraction: float = option(help="keep int(N * this) samples, N its input (or the pool: --fraction-of)")
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

    def partition(self, run: RunDir, runner: Runner) -> Partition | None:
        """Returns the k-means partition when binning within clusters, else None (DQ makes its own bucket)."""
        return super().partition(run, runner) if self.per == "cluster" else None

    def plan(self, run: RunDir, partition: Partition | None, where: str | None, runner: Runner) -> BinPlan:
        """Returns the BinPlan from the input's group sizes. A k-means cluster too small for --bins bins that each
        keep a sample gets fewer: floor(size * fraction), at least one (--bins is their ceiling). Label groups and
        the whole input are the user's choice: one smaller than --bins, or a bin keeping none, raises UsageError."""
        if self.per == "cluster":
            groups, sizes = _cluster_sizes(run, where)
        else:
            groups, sizes = np.unique(self.input_groups(run, where)[1], return_counts=True)
        pool = sum(pq.ParquetFile(path).metadata.num_rows for path in pool_files(run))
        total = self.kept_total(self.keep_fraction, int(sizes.sum()), pool)
        share = self.keep_fraction * (pool / max(1, int(sizes.sum())) if self.fraction_of == "pool" else 1)
        if self.per == "cluster":
            bins = np.array([group_bin_count(int(n), self.bins, share) for n in sizes], np.int64)
        else:
            self.check_one_task(run, int(sizes.sum()))
            small = np.flatnonzero(sizes < self.bins)
            if len(small):
                raise UsageError(f"group {groups[small[0]]} of --per {self.per} holds {sizes[small[0]]} samples, "
                                 f"fewer than --bins {self.bins} ({len(small)} groups do): pass fewer --bins or --per "
                                 "cluster")
            bins = np.full(len(groups), self.bins, np.int64)
        per_bin = np.array([s for n, k in zip(sizes, bins, strict=True) for s in bin_sizes(int(n), int(k))], np.int64)
        keep = keep_counts(per_bin, total, allow_empty=self.per == "cluster")
        return BinPlan(groups.astype(np.int64), bins, per_bin, keep)

    def check_one_task(self, run: RunDir, rows: int) -> None:
        """Raises UsageError when `rows` input vectors (--per label or none bins them in one task, in float32) are
        more than one task may hold (curate.stages.buckets)."""
        paths, column = vector_files(run, self.embedding)
        held = rows * pq.read_schema(paths[0]).field(column).type.list_size * 4
        if held > bucket_bytes():
            raise UsageError(f"--per {self.per} bins the whole input in one task: {rows:,} samples are "
                             f"{held / 2**20:,.1f} MiB of vectors, more than one task may hold "
                             f"({bucket_bytes() / 2**20:,.1f} MiB, {BUCKET_BYTES_VARIABLE}); bin within concept "
                             f"clusters with --per cluster, or raise {BUCKET_BYTES_VARIABLE}")

    def input_groups(self, run: RunDir, where: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Returns (embedding rows, group) of the input for --per label or none: a label group is the index of its
        value among the sorted distinct values (samples without one form a group of their own)."""
        index = load_embeddings(run, None, progress=False).uids
        con = connect(run)
        try:
            rows = np.flatnonzero(pc.is_in(index, value_set=selected_uids(con, where).combine_chunks()))
            if self.per == "none":
                return rows, np.zeros(len(rows), np.int64)
            [column] = require_columns(run, [self.label_column])  # checked against the view's columns, and quoted
            table = con.sql(f"SELECT uid, CAST({quoted(column)} AS VARCHAR) AS label FROM samples").to_arrow_table()
        finally:
            con.close()
        labels = dict(zip(table["uid"].to_pylist(), table["label"].to_pylist(), strict=True))
        values = [labels.get(uid) for uid in index.take(pa.array(rows)).to_pylist()]
        order = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}))}
        return rows, np.array([order.get(v, len(order)) for v in values], dtype=np.int64)

    def buckets(self, run: RunDir, partition: Partition | None) -> list[tuple[str, str | None]]:
        """Returns (bucket file, file of its input uids or None: all rows) to bin: the partition's buckets with the
        input routed to them, or one bucket of the label groups or the whole input."""
        where = self.input_predicate(run)
        if partition is not None:
            selected = route_selection(run, where, partition, f"{WORK}/input")
            return [(str(b), str(s)) for b, s in zip(partition.bucket_files(run), selected, strict=True)]
        rows, groups = self.input_groups(run, where)
        embeddings = load_embeddings(run, self.embedding, progress=False)
        order = np.argsort(groups, kind="stable")
        vectors = embeddings.vectors[rows[order]]
        schema = pa.schema([pa.field("uid", pa.string()), pa.field("cluster_id", pa.int64()),
                            packed_field("vector", vectors.dtype, vectors.shape[1])])
        table = pa.table([embeddings.uids.take(pa.array(rows[order])), groups[order], packed(vectors)], schema=schema)
        return [(str(run.write_table(f"{WORK}/groups.parquet", table)), None)]

    def write(self, run: RunDir, partition: Partition | None, plan: BinPlan, runner: Runner) -> tuple[dict, dict]:
        """Bins every bucket's groups and draws from each bin; returns the counts and the bins table."""
        shared = (str(run.path), self.similarity, self.seed, plan)
        results = runner.map(_bin_bucket, shared, self.buckets(run, partition), desc="dq")
        records = [r for bucket, _ in results for r in bucket]
        sums = [s for _, bucket in results for s in bucket]
        centre = np.sum(sums, axis=0) / max(1, int(plan.sizes.sum())) if sums else None
        for record, total in zip(records, sums, strict=True):
            record["to_input_centroid"] = _centroid_similarity(total, record["size"], centre)
        kept, total = int(plan.keep.sum()), int(plan.sizes.sum())
        counts = dict(input=total, kept=kept, dropped=total - kept, groups=len(plan.groups), bins=len(plan.sizes),
                      groups_with_fewer_bins=int((plan.bins < self.bins).sum()),
                      bins_keeping_none=int((plan.keep == 0).sum()))
        return counts, {"bins": pa.Table.from_pylist(records, schema=BINS_SCHEMA)}


def _cluster_sizes(run: RunDir, where: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (cluster ids with input, ascending; their input sizes), counted by the catalog."""
    con = connect(run)
    try:
        batches = list(selected_query(con, where, "cluster_id, count(*) AS n", f"AND {EMBEDDED} GROUP BY 1 ORDER BY 1"))
    finally:
        con.close()
    table = pa.Table.from_batches(batches, schema=pa.schema({"cluster_id": pa.int32(), "n": pa.int64()}))
    return table.column(0).to_numpy().astype(np.int64), table.column(1).to_numpy()


def _centroid_similarity(total: np.ndarray, n: int, centre: np.ndarray | None) -> float:
    """Returns the mean cosine of n vectors (summing to `total`) to `centre` (NaN for none)."""
    norm = np.linalg.norm(centre) if centre is not None else 0.0
    return float(total @ centre / n / norm) if norm > 0 and n else float("nan")


def _bin_bucket(shared: tuple, item: tuple) -> tuple[list[dict], list[np.ndarray]]:
    """Bins each group of a bucket's input, draws each bin's share and writes scores/dq/<bucket>.parquet; returns
    per bin its dq_bins record (without to_input_centroid) and the sum of its vectors."""
    run_path, similarity, seed, plan = shared
    bucket, selected = item
    table = bucket_input(bucket, selected, ["uid", "cluster_id", "vector"])
    vectors = normalized(unpacked(table))
    group = table["cluster_id"].to_numpy().astype(np.int64)
    bin_of, rank, keep = (np.full(len(table), -1, np.int32), np.full(len(table), -1, np.int32),
                          np.zeros(len(table), bool))
    records, sums, first_bin = [], [], plan.first_bin
    for start, end in segments(group):
        first = first_bin[int(group[start])]
        count = int(plan.bins[np.searchsorted(plan.groups, group[start])])
        for k, picks in enumerate(graphcut_bins(vectors[start:end], count, similarity)):
            members = start + picks
            drawn = np.random.default_rng([seed, first + k]).choice(members, int(plan.keep[first + k]), replace=False)
            bin_of[members], rank[members], keep[drawn] = k, np.arange(len(members)), True
            x = vectors[members].astype(np.float64)
            records.append(dict(group=int(group[start]), bin=k, size=len(members), kept=len(drawn),
                                to_bin_centroid=_centroid_similarity(x.sum(0), len(x), x.mean(0))))
            sums.append(x.sum(0))
    RunDir(run_path).write_table(f"scores/dq/{bucket.rsplit('/', 1)[-1]}", pa.table({
        "uid": table["uid"], "dq_bin": bin_of, "dq_rank": rank, "dq_keep": keep}))
    return records, sums
