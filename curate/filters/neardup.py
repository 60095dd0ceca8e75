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

The search never holds the input in one process (curate.stages.listsearch): inverted lists trained on a seeded
sample, written to disk by a task per descriptor file and searched by a task per bucket of lists; exact up to
100,000 samples, past that faiss's inverted-file parameters (4 sqrt(N) lists, 32 probed). The driver holds the
pairs found and the groups' decisions; a task per file writes its columns. Its work (partitions/neardup_search/)
is kept until the stage completes, so a killed run resumes it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.copydetect.groups import Groups, duplicate_groups, keep_rank, parse_keep, threshold_for_count
from curate.copydetect.scorenorm import SCORE_NORMS, background_excess, normalized
from curate.copydetect.search import MAX_PAIRS, TOLERANCE
from curate.errors import UsageError
from curate.graph import column_owners, entries
from curate.options import option
from curate.rundir import RunDir
from curate.runners import Runner, as_runner, quiet
from curate.stages.embeddings import EMBEDDING_COLUMNS, pool_files, write_clusters_table
from curate.stages.inputfiles import InputFile, input_files
from curate.stages.listsearch import ListSearch
from curate.stages.pool import FractionOf, SelectionMethod, embedding_stage_of
from curate.stages.step import stage_step, step_version

NEIGHBOURS = 16  # candidate links per sample that bound the --keep-fraction threshold
WORK = "partitions/neardup_search"  # the search's files; not the stage's outputs, which a new version deletes first
KEPT_ROWS = 65536  # kept members' vectors gathered at a time


def descriptor_stage(run: RunDir, name: str) -> str:
    """Returns the stage that made the vectors `name` (a descriptor set, or the image/text embeddings); raises
    UsageError saying how to make a descriptor set the run has never had."""
    stage = embedding_stage_of(run, name)
    if name not in EMBEDDING_COLUMNS and stage not in entries(run):
        raise UsageError(f"{run.path} has no {name!r} descriptor set; make it with "
                         f"`curate embed RUN --model DIR --as {name}` (DIR: a curate train-copy-detector folder or an "
                         "SSCD model file)")
    return stage


@dataclass
class Found:
    """The groups found: the search (its files and input positions), the threshold that linked them (None: none),
    the input positions of the samples in a group (sorted), their Groups and each one's highest similarity."""

    search: ListSearch
    threshold: float | None
    members: np.ndarray
    groups: Groups
    max_sim: np.ndarray


def _fresh_work(run: RunDir, version: str) -> None:
    """Empties WORK unless it holds the search of this stage version (a killed run's), and marks it as this one's."""
    marker = run.path / WORK / "version.json"
    if not marker.exists() or marker.read_text().strip() != f'"{version}"':
        shutil.rmtree(run.path / WORK, ignore_errors=True)
        run.write_bytes(f"{WORK}/version.json", f'"{version}"\n'.encode())


@dataclass(frozen=True, kw_only=True)
class NearDup(FractionOf, SelectionMethod):
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

    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Finds the input's near-duplicate groups (all of the search before the stage is recorded, so a refused
        threshold leaves the run as it was), then writes every file's columns and the groups table; returns the
        counts."""
        runner = as_runner(runner, **runner_options)
        with run.writing():
            step = self.step(run)
            with stage_step(run, step, lambda: self._found(run, step_version(run, step), step.where, runner)) as (
                    record, found):
                record["counts"] = _write(run, found, runner)
            shutil.rmtree(run.path / WORK, ignore_errors=True)
        return record["counts"]

    def _found(self, run: RunDir, version: str, where: str | None, runner: Runner) -> Found:
        """Returns the groups of the input `where` selects, searched under WORK (resumed when it holds this
        version's search, else started afresh); a refusal removes WORK."""
        _fresh_work(run, version)
        try:
            search = ListSearch(run, input_files(run, self.descriptor, where, f"{WORK}/input"), WORK, runner)
            pool = sum(pq.ParquetFile(p).metadata.num_rows for p in pool_files(run)) if self.keep_fraction else 0
            threshold, (i, j, sims) = self._links(search, pool)
        except UsageError:
            shutil.rmtree(run.path / WORK, ignore_errors=True)
            raise
        members = np.unique(np.concatenate([i, j]))
        rows_i, rows_j = np.searchsorted(members, i), np.searchsorted(members, j)
        groups = duplicate_groups(len(members), rows_i, rows_j, keep_rank(run, search.files.uids(members), self.keep))
        max_sim = np.full(len(members), -np.inf, np.float32)
        np.maximum.at(max_sim, rows_i, sims)
        np.maximum.at(max_sim, rows_j, sims)
        return Found(search, threshold, members, groups, max_sim)

    def _links(self, search: ListSearch, pool: int) -> tuple[float | None, tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]]:
        """Returns (the threshold, the input positions i < j linked at it) of the input `search` holds, from a
        pool of `pool` samples; the threshold is None when nothing is linked."""
        if self.threshold is not None:
            pairs = search.pairs(self.threshold, MAX_PAIRS)
            return self.threshold, pairs if self.score_norm == "none" else normalized_links(search, pairs,
                                                                                            self.threshold)
        n = len(search)
        target = max(1, self.kept_total(self.keep_fraction, n, pool))  # a group keeps one: never none
        if target >= n:
            return None, (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        ki, kj, ks = search.edges(NEIGHBOURS)
        try:
            bound = threshold_for_count(n, ki, kj, ks, target)
        except ValueError:
            raise UsageError(f"--keep-fraction {self.keep_fraction} keeps {target} of {n} samples, more merging than "
                             f"their {NEIGHBOURS} nearest neighbours link; raise it or pass --threshold") from None
        try:
            i, j, sims = search.pairs(bound, MAX_PAIRS)
        except UsageError:
            raise UsageError(f"--keep-fraction {self.keep_fraction} needs a threshold of about {bound:.3f}, which "
                             "links too many pairs to be near-duplication; raise the fraction") from None
        near = ks >= bound - TOLERANCE  # the neighbour links too, should the inverted file miss one
        i, j, sims = np.concatenate([i, ki[near]]), np.concatenate([j, kj[near]]), np.concatenate([sims, ks[near]])
        threshold = threshold_for_count(n, i, j, sims, target)
        linked = sims >= threshold - TOLERANCE
        return threshold, (i[linked], j[linked], sims[linked])


def normalized_links(pool, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float,
                     runner=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns the pairs (i, j, raw similarity) of the rows of `pool` (unit vectors, or a neighbour search over
    them) whose normalized similarity (less the mean of their members' background excess,
    curate.copydetect.scorenorm) is still >= threshold: what --score-norm pool links."""
    i, j, sims = pairs
    members = np.unique(np.concatenate([i, j]))
    excess = np.zeros(len(pool))
    excess[members] = background_excess(pool, members, threshold, runner)
    linked = normalized(sims, (excess[i] + excess[j]) / 2) >= np.float32(threshold - TOLERANCE)
    return i[linked], j[linked], sims[linked]


def _write(run: RunDir, found: Found, runner: Runner) -> dict:
    """Writes scores/neardup/ by a task per file and the groups table; returns the counts."""
    files, groups, members = found.search.files, found.groups, found.members
    kept = np.flatnonzero(groups.keep)  # one member per group; groups are numbered in their members' order
    kept = members[kept[np.argsort(groups.group[kept], kind="stable")]]
    _gather_kept(files, kept, run.path / WORK / "kept.npy")
    owner = np.searchsorted(files.firsts, members, side="right") - 1
    items = []
    for f, (file, first) in enumerate(zip(files.files, files.firsts, strict=True)):
        at = owner == f
        items.append((file, members[at] - first, groups.group[at], groups.keep[at], found.max_sim[at]))
    shared = (str(run.path), str(run.path / WORK / "kept.npy"), files.uids(kept))
    parts = quiet(runner).map(_write_file, shared, items, desc="neardup keep")
    table = pa.concat_tables(parts) if parts else _group_schema().empty_table()
    table = table.append_column("size", pa.array(groups.sizes[table["group_id"].to_numpy()].astype(np.int64)))
    write_clusters_table(run, "neardup_groups", table.select(["group_id", "size", "uid", "kept", "similarity"]).sort_by(
        [("size", "descending"), ("group_id", "ascending"), ("kept", "descending")]))
    n, dropped = len(files), int((~groups.keep).sum())
    return dict(scored=n, kept=n - dropped, dropped=dropped, groups=len(groups.sizes),
                largest_group=int(groups.sizes.max()) if len(groups.sizes) else 0, threshold=found.threshold)


def _gather_kept(files, positions: np.ndarray, path) -> None:
    """Writes the unit vectors at the input `positions` to the .npy file `path`, KEPT_ROWS at a time."""
    if not len(positions):
        np.save(path, np.zeros((0, 1), np.float32))
        return
    out = None
    for start in range(0, len(positions), KEPT_ROWS):
        block = files.vectors(positions[start:start + KEPT_ROWS])
        if out is None:
            out = np.lib.format.open_memmap(path, "w+", np.float32, (len(positions), block.shape[1]))
        out[start:start + len(block)] = block
    out.flush()


def _group_schema() -> pa.Schema:
    return pa.schema([pa.field("group_id", pa.int64()), pa.field("uid", pa.string()), pa.field("kept", pa.bool_()),
                      pa.field("similarity", pa.float32())])


def _write_file(shared: tuple, item: tuple[InputFile, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> pa.Table:
    """Writes one file's scores/neardup/<shard>.parquet for its input rows; returns its rows of the groups table,
    each member's similarity to the member its group kept."""
    run_path, kept_path, kept_uids = shared
    file, local, group, kept, max_sim = item
    uids, vectors = file.read()
    n = len(uids)
    keep, column_group, column_of = np.ones(n, bool), np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    column_sim = np.full(n, np.nan, np.float32)
    keep[local], column_group[local], column_sim[local] = kept, group, np.where(np.isinf(max_sim), np.nan, max_sim)
    column_of[local[~kept]] = group[~kept]
    similarity = np.ones(len(local), np.float32)
    if len(local):
        kept_vectors = np.load(kept_path, mmap_mode="r")
        similarity = np.einsum("ij,ij->i", vectors[local], kept_vectors[group]).astype(np.float32)
        similarity[kept] = 1.0
    RunDir(run_path).write_table(f"scores/neardup/{file.stem}.parquet", pa.table({
        "uid": uids, "neardup_keep": pa.array(keep),
        "neardup_group": pa.array(column_group, pa.int64(), mask=column_group < 0),
        "neardup_of": kept_uids.take(pa.array(column_of, pa.int64(), mask=column_of < 0)),
        "neardup_max_sim": pa.array(column_sim, mask=np.isnan(column_sim))}))
    return pa.table([pa.array(group, pa.int64()), uids.take(pa.array(local, pa.int64())), pa.array(kept),
                     pa.array(similarity)], schema=_group_schema())
