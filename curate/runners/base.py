"""The shard-job contract, and how a shard's outputs become files of the run directory."""

import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from curate.errors import UsageError
from curate.io.inputs import ShardTask
from curate.io.readers import ShardOutput
from curate.rundir import RunDir, parquet_bytes

# name -> "module:function"; the Ray runner's module is the only one that imports ray.
RUNNERS = {"local": "curate.runners.local:run_local", "ray": "curate.runners.ray:run_ray"}
RUNNER_NAMES = tuple(RUNNERS)
# Whole-pool methods split their work into independent tasks over one shared array (e.g. groups of clusters).
TASK_RUNNERS = {"local": "curate.runners.local:map_local", "ray": "curate.runners.ray:map_ray"}


class ShardJob(Protocol):
    """A unit of work per shard. `setup` runs once per worker (load models there); `process` once per shard."""

    name: str

    def setup(self) -> None:
        """Prepares the worker (loads models); returns nothing."""

    def process(self, task: ShardTask) -> ShardOutput:
        """Returns the shard's output files and counts."""


def encode_output(job: str, task: ShardTask, output: ShardOutput) -> dict[str, bytes]:
    """Returns the shard's files, relative path -> bytes, with the completion marker last.

    Workers encode, the driver only writes: the bytes are the same whichever runner produced them.
    """
    files = {f"{folder}/{task.shard_id}.parquet": parquet_bytes(t) for folder, t in output.tables.items()}
    marker = dict(shard_id=task.shard_id, shard=task.url, kind=task.kind, **output.counts)
    files[f"_done/{job}/{task.shard_id}.json"] = json.dumps(marker, sort_keys=True).encode()
    return files


def run_shard_job(job: ShardJob, tasks: list[ShardTask], run: RunDir, runner: str = "local", **options) -> int:
    """Runs `job` on every shard without a completion marker and commits each; returns how many ran."""
    if runner not in RUNNERS:
        raise UsageError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    run.remove_temporaries()
    pending = [t for t in tasks if not run.is_done(job.name, t.shard_id)]
    if pending:
        module, function = RUNNERS[runner].split(":")
        getattr(importlib.import_module(module), function)(job, pending, run, **options)
    return len(pending)


def map_tasks(fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, runner: str = "local",
              progress: bool = True, desc: str = "tasks", **options) -> list:
    """Returns [fn(shared, item) for item in items], in order, computed in this process or as Ray tasks.

    On Ray `shared` (e.g. an embedding matrix) goes to the object store once and every task reads it from there.
    """
    if runner not in TASK_RUNNERS:
        raise UsageError(f"unknown runner {runner!r}; choose one of {', '.join(TASK_RUNNERS)}")
    module, function = TASK_RUNNERS[runner].split(":")
    return getattr(importlib.import_module(module), function)(fn, shared, items, progress=progress, desc=desc,
                                                              **options)
