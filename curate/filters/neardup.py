"""Near-duplicate removal by copy detection: pairs of samples whose descriptors (`curate embed RUN --model DIR
--as copy`; or the CLIP image embeddings, --descriptor image) have cosine similarity >= --threshold are linked,
linked samples form a duplicate group (connected components, so A~B and B~C make one group), and each group keeps
one member by --keep: `first` (earliest in the pool's order) or `highest:<column>` (e.g. highest:dfn_score; NULL
last, ties to the earliest). Identical images are one group at any threshold <= 1 (a 1e-6 float slack).

Columns in the samples view: neardup_keep, neardup_group (the group's id, numbered in pool order of the groups'
first members; NULL for a sample with no near copy), neardup_of (the uid its group kept, for removed samples) and
neardup_max_sim (its highest similarity to another member of its group; NULL for no near copy). The view
`neardup_groups` lists every group's members (group_id, size, uid, kept, similarity to the kept member), largest
groups first, the kept member first within each.

With --threshold, pair similarities are normalized as SSCD does, one-sided (curate.copydetect.scorenorm; the
default, --score-norm pool): a pair's similarity less the mean of its two members' excess background (how far a
member's mean similarity to its 3 nearest pool samples that are not its copies lies above the pool's median).
Two renderings in a dense part of the pool need a higher similarity to be linked; identical images always are.
neardup_max_sim stays the raw similarity. --score-norm none links on the raw similarity, as --keep-fraction does.

`--keep-fraction F` keeps int(F x N) samples (at least one), N its input or with --fraction-of pool every embedded
sample: each sample's NEIGHBOURS nearest neighbours bound the threshold
from below (the groups of those links alone are never fewer than the full search's), a range search at that bound
finds every pair above it, and the threshold leaving that many groups is read off those pairs (Kruskal's order).
Pairs tied at the deciding similarity all link, so ties keep a little less than the fraction; F = 1 links nothing.

The faiss search (curate.copydetect.search: exact up to 100,000 samples, IVF past it) is built on the driver and
its query chunks are spread over --runner's workers; the groups and keep decisions are computed on the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.copydetect.groups import Groups, duplicate_groups, keep_rank, parse_keep, threshold_for_count
from curate.copydetect.scorenorm import SCORE_NORMS, background_excess, normalized
from curate.copydetect.search import TOLERANCE, knn_edges, similar_pairs
from curate.errors import UsageError
from curate.graph import column_owners, entries
from curate.options import option
from curate.rundir import RunDir
from curate.stages.embeddings import EMBEDDING_COLUMNS
from curate.stages.pool import FractionOf, Pool, PoolMethod, PoolResult, embedding_stage_of

NEIGHBOURS = 16  # candidate links per sample that bound the --keep-fraction threshold


def descriptor_stage(run: RunDir, name: str) -> str:
    """Returns the stage that made the vectors `name` (a descriptor set, or the image/text embeddings); raises
    UsageError saying how to make a descriptor set the run has never had."""
    stage = embedding_stage_of(run, name)
    if name not in EMBEDDING_COLUMNS and stage not in entries(run):
        raise UsageError(f"{run.path} has no {name!r} descriptor set; make it with "
                         f"`curate embed RUN --model DIR --as {name}` (DIR: a curate train-copy-detector folder or an "
                         "SSCD model file)")
    return stage


@dataclass(frozen=True, kw_only=True)
class NearDup(FractionOf, PoolMethod):
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
    score_norm: str | None = option(None, "pool: SSCD's score normalization (one-sided), the pool's own samples "
                                    "as background (the default with --threshold); none: the raw similarity (the "
                                    "only choice with --keep-fraction)", choices=SCORE_NORMS)
    where: str | None = option(None, "SQL predicate choosing the input (default: every embedded sample)")

    def validate(self) -> None:
        """Raises UsageError unless exactly one of threshold and keep_fraction is given, the threshold is in
        [-1, 1], --keep is a known rule and score normalization comes with a threshold."""
        if (self.threshold is None) == (self.keep_fraction is None):
            raise UsageError("give exactly one of --threshold or --keep-fraction")
        if self.keep_fraction is not None and self.score_norm == "pool":
            raise UsageError("--score-norm pool needs --threshold; --keep-fraction links on the raw similarity")
        if self.threshold is not None and not -1 <= self.threshold <= 1:
            raise UsageError(f"--threshold must be a cosine similarity in [-1, 1], got {self.threshold}")
        parse_keep(self.keep)

    def reads(self, run: RunDir) -> tuple[str, ...]:
        """Returns the descriptor set's stage, and the stage adding the --keep column when there is one; raises
        UsageError for a --keep column that samples lacks."""
        _, column = parse_keep(self.keep)
        owner = None
        if column is not None:
            from curate.catalogs.views import require_columns

            require_columns(run, [column])
            owner = column_owners(run).get(column)
            if owner == self.name:
                raise UsageError(f"--keep highest:{column} names a column neardup itself writes; choose another")
        return tuple(s for s in (descriptor_stage(run, self.descriptor), owner) if s is not None)

    def compute(self, pool: Pool) -> PoolResult:
        """Returns the groups' columns and table for the input rows, and the counts."""
        vectors = pool.embeddings(self.descriptor).vectors
        rows = np.flatnonzero(pool.rows)
        x = vectors if len(rows) == len(vectors) else vectors[rows]
        threshold, (i, j, sims) = self._links(x, pool.runner, len(pool.index))
        groups = duplicate_groups(len(rows), i, j, keep_rank(pool.run, pool.index.uids.take(pa.array(rows)),
                                                             self.keep))
        max_sim = np.full(len(rows), -np.inf, np.float32)
        np.maximum.at(max_sim, i, sims)
        np.maximum.at(max_sim, j, sims)
        result = _result(pool, rows, groups, np.where(np.isinf(max_sim), np.nan, max_sim), x)
        result.counts["threshold"] = threshold
        return result

    def _links(self, x: np.ndarray, runner, pool: int) -> tuple[float | None, tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]]:
        """Returns (the threshold, the pairs i < j linked at it) of the input `x` from a pool of `pool` samples;
        the threshold is None when nothing is linked."""
        if self.threshold is not None:
            pairs = similar_pairs(x, self.threshold, runner)
            return self.threshold, pairs if self.score_norm == "none" else normalized_links(x, pairs, self.threshold,
                                                                                            runner)
        n = len(x)
        target = max(1, self.kept_total(self.keep_fraction, n, pool))  # a group keeps one: never none
        if target >= n:
            return None, (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        ki, kj, ks = knn_edges(x, NEIGHBOURS, runner)
        try:
            bound = threshold_for_count(n, ki, kj, ks, target)
        except ValueError:
            raise UsageError(f"--keep-fraction {self.keep_fraction} keeps {target} of {n} samples, more merging than "
                             f"their {NEIGHBOURS} nearest neighbours link; raise it or pass --threshold") from None
        try:
            i, j, sims = similar_pairs(x, bound, runner)
        except UsageError:
            raise UsageError(f"--keep-fraction {self.keep_fraction} needs a threshold of about {bound:.3f}, which "
                             "links too many pairs to be near-duplication; raise the fraction") from None
        near = ks >= bound - TOLERANCE  # the neighbour links too, should the inverted file miss one
        i, j, sims = np.concatenate([i, ki[near]]), np.concatenate([j, kj[near]]), np.concatenate([sims, ks[near]])
        threshold = threshold_for_count(n, i, j, sims, target)
        linked = sims >= threshold - TOLERANCE
        return threshold, (i[linked], j[linked], sims[linked])


def normalized_links(x: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float,
                     runner=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns the pairs (i, j, raw similarity) of the rows of `x` whose normalized similarity (less the mean of
    their members' background excess, curate.copydetect.scorenorm) is still >= threshold: what --score-norm pool
    links."""
    i, j, sims = pairs
    members = np.unique(np.concatenate([i, j]))
    excess = np.zeros(len(x))
    excess[members] = background_excess(x, members, threshold, runner)
    linked = normalized(sims, (excess[i] + excess[j]) / 2) >= np.float32(threshold - TOLERANCE)
    return i[linked], j[linked], sims[linked]


def _result(pool: Pool, rows: np.ndarray, groups: Groups, max_sim: np.ndarray, x: np.ndarray) -> PoolResult:
    """Returns the PoolResult: columns over the whole index (the input rows filled), the groups table, counts."""
    n, keep = len(pool.index), groups.keep
    column_keep, column_group = np.ones(n, bool), np.full(n, -1, np.int64)
    column_of, column_sim = np.full(n, -1, np.int64), np.full(n, np.nan, np.float32)
    column_keep[rows], column_group[rows], column_sim[rows] = keep, groups.group, max_sim
    column_of[rows[~keep]] = rows[groups.kept[~keep]]
    uids = pool.index.uids
    of_uid = uids.take(pa.array(np.maximum(column_of, 0))).to_numpy(zero_copy_only=False)
    members = np.flatnonzero(groups.group >= 0)  # in pool order
    similarity = np.einsum("ij,ij->i", x[members], x[groups.kept[members]]).astype(np.float32)
    similarity[keep[members]] = 1.0
    table = pa.table({
        "group_id": pa.array(groups.group[members]),
        "size": pa.array(groups.sizes[groups.group[members]].astype(np.int64)),
        "uid": uids.take(pa.array(rows[members])),
        "kept": pa.array(keep[members]),
        "similarity": pa.array(similarity),
    }).sort_by([("size", "descending"), ("group_id", "ascending"), ("kept", "descending")])
    dropped = int((~keep).sum())
    return PoolResult(
        columns={"neardup_keep": pa.array(column_keep), "neardup_group": pa.array(column_group, mask=column_group < 0),
                 "neardup_of": pa.array(of_uid, pa.string(), mask=column_of < 0),
                 "neardup_max_sim": pa.array(column_sim, mask=np.isnan(column_sim))},
        counts=dict(scored=len(rows), kept=len(rows) - dropped, dropped=dropped, groups=len(groups.sizes),
                    largest_group=int(groups.sizes.max()) if len(groups.sizes) else 0),
        tables={"groups": table})
