"""Whole-pool methods: selections decided over every embedded sample.

SelectionMethod is what every whole-pool method shares: a frozen dataclass of its options (declared with
curate.options.option), its stage, columns and inputs, and `apply(run, runner) -> counts`. Its kinds differ in
where they compute: curate.concepts.clustering.ClusterMethod (SemDeDup, DBP, DQ) one task per bucket of the
k-means partition (DQ --per label or none: its input in one bucket), curate.stages.threshold.ThresholdMethod (DFN,
random) one task per embedding file, neardup a task per bucket of its inverted lists (curate.stages.listsearch)
and decontaminate a task per descriptor file. Each runs as one step of the stage graph
(curate.stages.step.stage_step).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from curate.errors import UsageError
from curate.graph import StageRun, entries
from curate.options import option, option_values
from curate.rundir import RunDir
from curate.runners import Runner
from curate.stages.embeddings import EMBEDDING_COLUMNS, descriptor_stage_name
from curate.stages.step import check_column_prefix, predicate_stages


def embedding_stage(run: RunDir) -> str:
    """Returns the stage whose embeddings the run holds: embed, or ingest for DataComp .npz embeddings."""
    return "embed" if "embed" in entries(run) else "ingest"


def embedding_stage_of(run: RunDir, kind: str) -> str:
    """Returns the stage that made the vectors of `kind`: the embeddings' (embedding_stage) for image and text,
    embed_<name> for a descriptor set."""
    return embedding_stage(run) if kind in EMBEDDING_COLUMNS else descriptor_stage_name(kind)


@dataclass(frozen=True, kw_only=True)
class SelectionMethod(ABC):
    """A method that selects over the run's whole embedded pool; subclasses are frozen dataclasses whose option
    fields are the method's options and whose `apply` runs it as a stage (see the module docstring for the kinds)."""

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
