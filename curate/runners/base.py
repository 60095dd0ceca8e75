"""The runner contract: shard jobs and model jobs that declare what they need, and runners that all take the
same options (`workers`, `progress`) and commit each shard's outputs atomically.

A job never imports Ray and never writes files: it returns tables, the runner encodes them next to the job
and the driver commits them with a completion marker, so the bytes are the same whichever runner ran it.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pyarrow as pa

from curate.errors import UsageError
from curate.io.inputs import ShardTask
from curate.io.readers import ShardOutput
from curate.rundir import RunDir, parquet_bytes

# name -> "module:class"; curate.runners.ray is the only module that imports ray.
RUNNERS = {"local": "curate.runners.local:LocalRunner", "ray": "curate.runners.ray:RayRunner"}
RUNNER_NAMES = tuple(RUNNERS)


@dataclass(frozen=True)
class Resources:
    """What one worker of a job needs: CPUs, GPUs (taken only where the cluster has them), rows per model batch."""

    cpus: float = 1
    gpus: float = 0
    batch_size: int | None = None


class ShardJob(ABC):
    """A unit of work per shard: `setup` once per worker (load models there), `process` once per shard."""

    name: str
    resources: ClassVar[Resources] = Resources()

    def setup(self) -> None:  # noqa: B027 - most jobs load nothing
        """Prepares the worker (loads models); returns nothing."""

    @abstractmethod
    def process(self, task: ShardTask) -> ShardOutput:
        """Returns the shard's output tables and counts."""


class ModelJob(ShardJob):
    """A shard job with a model part: `prepare` (CPU: read and decode a shard into rows), `run_batch` (the model,
    on batches that may mix shards) and `finish` (a shard's rows back into its output). Runners may place the
    parts on different workers; `process` runs them in turn in one."""

    @abstractmethod
    def expected_rows(self, task: ShardTask) -> int:
        """Returns how many rows `prepare` will give for the shard."""

    @abstractmethod
    def prepare(self, task: ShardTask) -> pa.Table:
        """Returns the shard's model inputs, one row per sample, with shard_id and row columns."""

    @abstractmethod
    def run_batch(self, batch: pa.Table) -> pa.Table:
        """Returns the model's outputs for a batch of prepared rows, with their shard_id and row columns."""

    @abstractmethod
    def finish(self, task: ShardTask, parts: list[pa.Table]) -> ShardOutput:
        """Returns the shard's output from all of its run_batch rows (tables in any order; none for no rows)."""

    def process(self, task: ShardTask) -> ShardOutput:
        """Prepares, runs in batches of resources.batch_size and finishes one shard in this process."""
        prepared = self.prepare(task)
        size = self.resources.batch_size or max(1, prepared.num_rows)
        parts = [self.run_batch(prepared.slice(i, size)) for i in range(0, prepared.num_rows, size)]
        return self.finish(task, parts)


def encode_output(job: str, task: ShardTask, output: ShardOutput) -> dict[str, bytes]:
    """Returns the shard's files, relative path -> bytes, with the completion marker last."""
    files = {f"{folder}/{task.shard_id}.parquet": parquet_bytes(t) for folder, t in output.tables.items()}
    marker = dict(shard_id=task.shard_id, shard=task.url, kind=task.kind, **output.counts)
    if task.rows is not None:
        marker["rows"] = list(task.rows)
    files[f"_done/{job}/{task.shard_id}.json"] = json.dumps(marker, sort_keys=True).encode()
    return files


def shard_files(job: ShardJob, task: ShardTask) -> dict[str, bytes]:
    """Returns the files of one shard processed by a set-up job: encode_output of job.process(task)."""
    return encode_output(job.name, task, job.process(task))


@dataclass(frozen=True)
class Runner(ABC):
    """Where jobs run. `workers`: how many run at once (None: the runner's default, in its docstring);
    `progress`: show progress bars."""

    workers: int | None = None
    progress: bool = True
    name: ClassVar[str]

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")

    @abstractmethod
    def run_shards(self, job: ShardJob, tasks: list[ShardTask], run: RunDir) -> None:
        """Runs `job` on every task and commits each shard's files through `run`; returns nothing."""

    @abstractmethod
    def completed(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence,
                  desc: str = "tasks") -> Iterator[tuple[int, Any]]:
        """Yields (i, fn(shared, items[i])) for every item as its task completes, in any order; `shared` (e.g. an
        embedding matrix) is sent to each worker once."""

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, desc: str = "tasks") -> list:
        """Returns [fn(shared, item) for item in items], in order (see `completed`)."""
        results = dict(self.completed(fn, shared, items, desc))
        return [results[i] for i in range(len(items))]

    def each(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, desc: str = "tasks") -> Iterator[Any]:
        """Yields fn(shared, item) for every item as its task completes, in any order: a caller that folds them (a
        sum of per-file figures) holds one at a time, never all of them."""
        for _, result in self.completed(fn, shared, items, desc):
            yield result


def quiet(runner: Runner) -> Runner:
    """Returns the runner without progress bars: for a stage's short passes beside the one its bar shows."""
    return replace(runner, progress=False)


def make_runner(name: str = "local", workers: int | None = None, progress: bool = True) -> Runner:
    """Returns the registered runner `name` with the given options; raises UsageError for an unknown name."""
    if name not in RUNNERS:
        raise UsageError(f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}")
    module, cls = RUNNERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(workers=workers, progress=progress)


def as_runner(runner: str | Runner = "local", **options) -> Runner:
    """Returns `runner` itself, or the registered runner of that name made with `options` (workers, progress)."""
    if isinstance(runner, Runner):
        if options:
            raise TypeError(f"pass options to the runner, not beside it: {sorted(options)}")
        return runner
    return make_runner(runner, **options)


def run_shard_job(job: ShardJob, tasks: list[ShardTask], run: RunDir, runner: Runner) -> int:
    """Runs `job` on every shard without a completion marker and commits each; returns how many ran."""
    run.remove_temporaries()
    pending = [t for t in tasks if not run.is_done(job.name, t.shard_id)]
    if pending:
        runner.run_shards(job, pending, run)
    return len(pending)
