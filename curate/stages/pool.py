"""Whole-pool methods: selections decided over every embedded sample, and the in-memory kind of them.

SelectionMethod is what every whole-pool method shares: a frozen dataclass of its options (declared with
curate.options.option), its stage, columns and inputs. Its kinds differ in where they compute:
curate.concepts.clustering.ClusterMethod (SemDeDup, DBP, DQ) one task per bucket of the k-means partition,
curate.stages.threshold.ThresholdMethod (DFN, random) one task per embedding file, and PoolMethod here (neardup,
decontaminate) on the pool's vectors in memory in this process: `compute(pool) -> PoolResult`, one value per
embedded sample for each of its declared `columns`. This base does the rest, the same way for every method: it
checks the keep fraction, plans the step in the stage graph (refusing one that would make its own input stale),
runs the stages it needs first, selects its input with `where`, enforces the `<name>_` column prefix and computes;
only then does it record the stage (a method that refuses its input records nothing), write scores/<name>/ and
concepts/<name>.parquet, and rebuild the catalog.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from curate.errors import UsageError
from curate.graph import StageRun, entries
from curate.options import option, option_values
from curate.rundir import RunDir
from curate.runners import Runner, as_runner
from curate.stages.embeddings import (
    EMBEDDING_COLUMNS,
    RunEmbeddings,
    descriptor_stage_name,
    load_embeddings,
    selected_rows,
    write_clusters_table,
    write_scores,
)
from curate.stages.step import check_column_prefix, check_plan, predicate_stages, stage_step


def embedding_stage(run: RunDir) -> str:
    """Returns the stage whose embeddings the run holds: embed, or ingest for DataComp .npz embeddings."""
    return "embed" if "embed" in entries(run) else "ingest"


def embedding_stage_of(run: RunDir, kind: str) -> str:
    """Returns the stage that made the vectors of `kind`: the embeddings' (embedding_stage) for image and text,
    embed_<name> for a descriptor set."""
    return embedding_stage(run) if kind in EMBEDDING_COLUMNS else descriptor_stage_name(kind)


@dataclass
class Pool:
    """What a method computes on: the run, its embedded samples (uids and shard spans, in embeddings/ order), the
    input rows that `where` selects, and the runner for work a method spreads out."""

    run: RunDir
    index: RunEmbeddings
    rows: np.ndarray
    runner: Runner
    _vectors: dict[str, RunEmbeddings] = field(default_factory=dict)

    def embeddings(self, kind: str = "image") -> RunEmbeddings:
        """Returns every embedded sample's L2-normalized image or text embeddings, or descriptor set `kind`, in
        the index's rows (loaded once); raises UsageError when the vectors do not match the index."""
        if kind not in self._vectors:
            vectors = load_embeddings(self.run, kind, self.runner.progress)
            if not vectors.uids.equals(self.index.uids):
                raise UsageError(f"the {kind!r} vectors of {self.run.path} are not one per embedded sample in the same "
                                 f"order; rerun `curate embed RUN --model MODEL --as {kind}` to bring them up to date")
            self._vectors[kind] = vectors
        return self._vectors[kind]


@dataclass
class PoolResult:
    """A method's output: its columns (one value per embedded sample; only the input rows are written), its
    counts, optionally per-cluster figures keyed by cluster_id (they join the `clusters` view), and tables of its
    own, each written as concepts/<name>_<table>.parquet and shown as the view <name>_<table>."""

    columns: dict[str, Any]
    counts: dict
    clusters: pa.Table | None = None
    tables: dict[str, pa.Table] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SelectionMethod(ABC):
    """A method that selects over the run's whole embedded pool; subclasses are frozen dataclasses whose option
    fields are the method's options. PoolMethod computes on vectors in memory, curate.concepts.clustering's
    ClusterMethod on the run's partition by concept cluster."""

    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    uses_runner: ClassVar[bool] = False  # spreads work over --runner/--workers
    hint: ClassVar[str] = ""  # the command that reruns it

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_column_prefix(cls)

    def __post_init__(self):
        fraction = getattr(self, "keep_fraction", None)
        if fraction is not None and not 0 < fraction <= 1:
            raise UsageError(f"--keep-fraction must be in (0, 1], got {fraction}")
        self.validate()

    def validate(self) -> None:  # noqa: B027 - most methods' options need no check beyond their types
        """Raises UsageError for options that cannot go together; returns nothing."""

    def input_predicate(self, run: RunDir) -> str | None:
        """Returns the SQL predicate choosing the method's input (None: every embedded sample)."""
        return getattr(self, "where", None)

    def reads(self, run: RunDir) -> tuple[str, ...]:
        """Returns the stages the method reads besides those its predicate names (default: the embeddings)."""
        return (embedding_stage(run),)

    def upstream(self, run: RunDir) -> list[StageRun]:
        """Returns the shared stages to run before this one (e.g. k-means), in order."""
        return []

    def config(self) -> dict:
        """Returns the options recorded as the stage's config: the option fields that belong to this stage."""
        return {k: v for k, v in option_values(self).items() if k != "where"}

    def step(self, run: RunDir) -> StageRun:
        """Returns this run of the method as a step of the stage graph."""
        where = self.input_predicate(run)
        inputs = tuple(dict.fromkeys((*self.reads(run), *predicate_stages(run, where))))
        return StageRun(self.name, self.config(), inputs, where, self.columns, hint=self.hint)

    @abstractmethod
    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Runs the method over the run's whole embedded pool as a stage; returns its counts."""


FRACTION_OF = ("input", "pool")  # what --keep-fraction counts: the method's input, or every embedded sample


@dataclass(frozen=True, kw_only=True)
class FractionOf:
    """The option of a method whose input a predicate chooses: what its --keep-fraction F counts. Every method
    keeps int(N x F) samples (those tied at a score cut too); N is its input by default, or with --fraction-of
    pool every embedded sample (as DBP's paper budgets after earlier filters)."""

    fraction_of: str = option("input", "what --keep-fraction counts: input (the samples --where selects) or pool "
                              "(every embedded sample)", choices=FRACTION_OF)

    def kept_total(self, fraction: float, inputs: int, pool: int) -> int:
        """Returns int(N x fraction), N the input or the pool per --fraction-of; raises UsageError when that is
        more than the input holds."""
        total = int((pool if self.fraction_of == "pool" else inputs) * fraction)
        if total > inputs:
            raise UsageError(f"--keep-fraction {fraction} of the pool's {pool} samples keeps {total}, more than the "
                             f"{inputs} of the input: lower it, or count the input with --fraction-of input")
        return total


@dataclass(frozen=True, kw_only=True)
class PoolMethod(SelectionMethod):
    """A whole-pool method that computes on the pool's vectors in memory (see the module docstring)."""

    def run_upstream(self, pool: Pool) -> None:
        """Brings the upstream stages up to date; returns nothing."""

    @abstractmethod
    def compute(self, pool: Pool) -> PoolResult:
        """Returns the method's columns and counts for the pool."""

    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Runs the method over the run's whole embedded pool; returns its counts."""
        return run_pool_method(run, self, as_runner(runner, **runner_options))


def run_pool_method(run: RunDir, method: PoolMethod, runner: Runner) -> dict:
    """Runs `method` as one step of the stage graph (see the module docstring) under the run's writer lock;
    returns its counts."""
    with run.writing():
        return _run_pool_method(run, method, runner)


def _run_pool_method(run: RunDir, method: PoolMethod, runner: Runner) -> dict:
    step = method.step(run)
    check_plan(run, [*method.upstream(run), step])
    pool = Pool(run, load_embeddings(run, None), np.zeros(0, bool), runner)
    method.run_upstream(pool)
    step = method.step(run)  # upstream stages may have changed the columns the predicate names
    # The method computes before the stage is recorded: one that refuses its input leaves the run as it was.
    with stage_step(run, step, lambda: _computed(method, pool, step.where)) as (record, result):
        columns = {k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in result.columns.items()}
        write_scores(run, method.name, pool.index, columns, rows=None if step.where is None else pool.rows)
        if result.clusters is not None:
            write_clusters_table(run, method.name, result.clusters)
        for table, rows in result.tables.items():
            write_clusters_table(run, f"{method.name}_{table}", rows)
        record["counts"] = result.counts
    return result.counts


def _computed(method: PoolMethod, pool: Pool, where: str | None) -> PoolResult:
    """Returns the method's result over the rows `where` selects (all of its work that writes nothing); raises
    TypeError for columns other than those it declares, or a table of its own without columns."""
    pool.rows = selected_rows(pool.run, pool.index, where)
    result = method.compute(pool)
    name = type(method).__name__
    if set(result.columns) != set(method.columns):
        raise TypeError(f"{name} returned columns {sorted(result.columns)}, declared {sorted(method.columns)}")
    for table, rows in result.tables.items():
        if not rows.num_columns:  # Parquet cannot hold a table without columns: give an empty one its schema
            raise TypeError(f"{name} returned its {table} table without columns")
    return result
