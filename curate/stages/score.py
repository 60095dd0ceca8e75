"""Score stages: a stage that scores each shard's samples on its own, into scores/<name>/, on any runner.

A stage is a small dataclass of its options: `setup()` (load models once per worker) and
`process_batch(samples: pa.Table) -> pa.Table` returning uid plus the stage's declared `<name>_*` columns.
It never imports Ray and is tested by calling process_batch directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from curate.graph import StageRun
from curate.io.inputs import ShardTask
from curate.io.readers import ShardOutput
from curate.options import option_values
from curate.rundir import RunDir
from curate.runners import Runner, ShardJob, as_runner, run_shard_job
from curate.stages.samples import shard_samples
from curate.stages.step import check_column_prefix, stage_step


@dataclass(kw_only=True)
class ScoreStage(ABC):
    """Adds score and keep columns to each shard's samples; subclasses' option fields are the stage's options."""

    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]
    uses_runner: ClassVar[bool] = True
    hint: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_column_prefix(cls)

    def setup(self) -> None:  # noqa: B027 - a stage without a model loads nothing
        """Prepares the worker (loads models); returns nothing."""

    @abstractmethod
    def process_batch(self, samples: pa.Table) -> pa.Table:
        """Returns the scores of a shard's samples: uid and the declared columns, <name>_keep among them."""

    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Scores every shard of the run; returns the scored and kept counts."""
        return run_score_stage(run, self, as_runner(runner, **runner_options))


@dataclass
class ScoreJob(ShardJob):
    """The shard job that runs one score stage over one shard's accepted samples."""

    run_path: str
    stage: ScoreStage

    @property
    def name(self) -> str:
        """The stage's name, which names its scores folder and completion markers."""
        return self.stage.name

    def setup(self) -> None:
        """Sets up the stage once per worker."""
        self.stage.setup()

    def process(self, task: ShardTask) -> ShardOutput:
        """Returns the stage's scores for the shard and how many samples it kept."""
        scores = self.stage.process_batch(shard_samples(RunDir(self.run_path), task.shard_id))
        if scores.column_names != ["uid", *self.stage.columns]:
            raise TypeError(f"{self.name} returned {scores.column_names}, declared uid + {list(self.stage.columns)}")
        kept = pc.sum(scores[f"{self.name}_keep"]).as_py() or 0
        return ShardOutput({f"scores/{self.name}": scores}, {"scored": scores.num_rows, "kept": kept})


def run_score_stage(run: RunDir, stage: ScoreStage, runner: Runner) -> dict:
    """Scores every shard of an ingested run (resuming; recomputing if the options changed); returns counts."""
    step = StageRun(stage.name, option_values(stage), ("ingest",), columns=stage.columns, hint=stage.hint)
    with stage_step(run, step) as (record, _):
        tasks = [ShardTask(m["shard_id"], m["shard"], m["kind"]) for m in run.markers("ingest")]
        ran = run_shard_job(ScoreJob(str(run.path), stage), tasks, run, runner)
        markers = run.markers(stage.name)
        record["counts"] = dict(scored=sum(m["scored"] for m in markers), kept=sum(m["kept"] for m in markers))
        record["shards_run"] = ran
    return record["counts"]
