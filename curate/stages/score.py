"""Score stages: a stage scores each shard's samples into scores/<stage>/, on either runner.

A stage is a small object: `name`, `setup()` (load models once per worker) and
`process_batch(samples: pa.Table) -> pa.Table` returning uid plus the stage's `<name>_*` columns.
"""

import shutil
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from curate.io.inputs import ShardTask
from curate.io.readers import ShardOutput
from curate.rundir import DONE, RunDir
from curate.stages.common import record_stage, require_stage, shard_samples


class ScoreStage(Protocol):
    """Adds score and keep columns to a batch of samples (the samples view's columns)."""

    name: str

    def setup(self) -> None:
        """Prepares the worker (loads models); returns nothing."""

    def process_batch(self, samples: pa.Table) -> pa.Table:
        """Returns the scores of a shard's samples: uid, score columns and <name>_keep."""


@dataclass
class ScoreJob:
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
        kept = pc.sum(scores[f"{self.name}_keep"]).as_py() or 0
        return ShardOutput({f"scores/{self.name}": scores}, {"scored": scores.num_rows, "kept": kept})


def reset_if_changed(run: RunDir, stage: str, config: dict) -> None:
    """Deletes a stage's scores and markers when it last ran with another config, so it recomputes."""
    previous = run.manifest()["stages"].get(stage)
    if previous is not None and previous["config"] != config:
        shutil.rmtree(run.path / "scores" / stage, ignore_errors=True)
        shutil.rmtree(run.path / DONE / stage, ignore_errors=True)
        stages = {k: v for k, v in run.manifest()["stages"].items() if k != stage}
        run.update_manifest(stages=stages)


def run_score_stage(run: RunDir, stage: ScoreStage, config: dict, runner: str = "local", **runner_options) -> dict:
    """Scores every shard of an ingested run (resuming; recomputing if the config changed); returns counts."""
    from curate.catalogs import build_catalog
    from curate.runners import run_shard_job

    require_stage(run, "ingest", "run `curate ingest` first")
    reset_if_changed(run, stage.name, config)
    tasks = [ShardTask(m["shard_id"], m["shard"], m["kind"]) for m in run.markers("ingest")]
    ran = run_shard_job(ScoreJob(str(run.path), stage), tasks, run, runner, **runner_options)
    build_catalog(run)
    markers = run.markers(stage.name)
    counts = dict(scored=sum(m["scored"] for m in markers), kept=sum(m["kept"] for m in markers))
    record_stage(run, stage.name, config, counts=counts, shards_run=ran)
    return counts
