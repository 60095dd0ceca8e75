"""The Ray runner, the one module that imports ray: shards as a Ray Dataset, the driver commits what comes back.

A shard job runs on an actor pool, one shard per call. A model job runs as a pipeline:

    shards -> map_batches(prepare, CPU tasks) -> map_batches(run_batch, actor pool, a GPU each if any) -> driver

Workers return encoded files (shard jobs) or rows (model jobs) to the driver, which alone writes them: ingest and
embed need the run folder visible to the driver only. The whole-pool stages' map tasks read the run's embedding
files and write their buckets' files themselves (each write-once and atomic, so a retried task is harmless): on a
cluster of several nodes their run folder must be on storage every node mounts at the same path.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import ModelJob, Runner, ShardJob, encode_output
from curate.runners.corelogs import core_logs_off

# Set (to anything but 0) to see Ray's own logs on the console: its INFO lines, Ray Data's execution plans and
# progress, and the warnings of a local Ray's start. They go to Ray's session log files either way.
VERBOSE = "CURATE_RAY_VERBOSE"
DECODE_CALLS = 1000  # shards one decode worker process handles before Ray starts a fresh one


TASK_RETRIES = 3  # a map task whose worker process dies runs again, this many times at most
PLACEMENTS: dict[str, dict[str, int]] = {}  # a map's desc -> tasks per Ray node id, of its latest run here


def _placed(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> tuple[str, Any]:
    """Returns (the id of the node this task ran on, fn(shared, item))."""
    import ray

    return ray.get_runtime_context().get_node_id(), fn(shared, item)


def verbose() -> bool:
    """Returns whether Ray's own console logging is asked for (CURATE_RAY_VERBOSE)."""
    return os.environ.get(VERBOSE, "0") not in ("", "0")


def init_ray() -> None:
    """Connects to the cluster named by RAY_ADDRESS, or starts a local Ray; does nothing if connected. Ray's console
    logging stays at errors (a cluster's warnings too) unless CURATE_RAY_VERBOSE is set; Ray Data's own progress is
    off, since the runner shows one bar per stage."""
    import ray

    if ray.is_initialized():
        return
    cluster = bool(os.environ.get("RAY_ADDRESS"))
    level = logging.INFO if verbose() else logging.WARNING if cluster else logging.ERROR
    logging.getLogger("ray").setLevel(level)  # ray.init's own start-up messages come before logging_level applies
    if cluster:
        ray.init(logging_level=level)
    else:
        # A local Ray's processes (workers, the GCS) log to the session's files; their lines reach this console only
        # when verbose. Errors in tasks still come back as exceptions.
        ray.init(include_dashboard=False, logging_level=level, configure_logging=True, log_to_driver=verbose())
    ray.data.DataContext.get_current().enable_progress_bars = False
    if not verbose():
        _console_errors_only(logging.getLogger("ray.data"))


def _console_errors_only(logger: logging.Logger) -> None:
    """Raises the logger's console handlers to errors; its file handlers (Ray Data's session log) keep everything."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.ERROR)


def _cluster(resource: str) -> int:
    import ray

    return int(ray.cluster_resources().get(resource, 0))


def shard_items(tasks: list[ShardTask]):
    """Returns a Ray Dataset with one row (shard_id, url, kind) and one block per shard."""
    import ray

    items = [dict(shard_id=t.shard_id, url=t.url, kind=t.kind) for t in tasks]
    return ray.data.from_items(items, override_num_blocks=len(items))


def task_of(row: dict) -> ShardTask:
    """Returns the ShardTask of a row made by shard_items."""
    return ShardTask(row["shard_id"], row["url"], row["kind"])


class _ShardJobActor:
    """Holds one set-up copy of the job per Ray actor and returns each shard's encoded files as one row."""

    def __init__(self, job: ShardJob):
        self.job = job
        job.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths, blobs = [], []
        for row in batch.to_pylist():
            task = task_of(row)
            files = encode_output(self.job.name, task, self.job.process(task))
            paths.append(list(files))
            blobs.append(list(files.values()))
        return pa.table(
            {"paths": pa.array(paths, pa.list_(pa.string())), "blobs": pa.array(blobs, pa.list_(pa.large_binary()))}
        )


def _prepare(batch: pa.Table, job: ModelJob) -> pa.Table:
    return pa.concat_tables([job.prepare(task_of(row)) for row in batch.to_pylist()])


class _ModelActor:
    """One model per actor, loaded once; CPU actors use as many torch threads as CPUs they were given."""

    def __init__(self, job: ModelJob, threads: int):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.job = job
        job.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.job.run_batch(batch)


@dataclass(frozen=True)
class RayRunner(Runner):
    """Runs on the Ray cluster in RAY_ADDRESS, or a local Ray. Default workers: one per CPU for shard jobs and
    maps; for model jobs one actor per GPU, or one CPU actor using all CPUs but one (left for decoding)."""

    name = "ray"

    def run_shards(self, job: ShardJob, tasks: list[ShardTask], run: RunDir) -> None:
        """Runs the job on Ray and commits each shard through the driver."""

        init_ray()
        with core_logs_off(not verbose()), tqdm(total=len(tasks), desc=job.name, unit="shard",
                                                 disable=not self.progress) as bar:
            if isinstance(job, ModelJob):
                self._run_model_job(job, tasks, run, bar)
            else:
                self._run_shard_job(job, tasks, run, bar)

    def _run_shard_job(self, job: ShardJob, tasks: list[ShardTask], run: RunDir, bar: tqdm) -> None:
        import ray

        size = self.workers or max(1, int(_cluster("CPU") // max(job.resources.cpus, 1)))
        results = shard_items(tasks).map_batches(
            _ShardJobActor, fn_constructor_kwargs={"job": job}, batch_size=1, batch_format="pyarrow",
            num_cpus=job.resources.cpus, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(size, len(tasks))),
        )
        for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                run.commit(dict(zip(row["paths"], row["blobs"], strict=True)))
                bar.update(1)

    def model_pool(self, job: ModelJob) -> dict:
        """Returns the model actors' map_batches resources: GPUs when the cluster has them, else CPU threads."""
        gpus = _cluster("GPU")
        if gpus and job.resources.gpus:
            per_actor = job.resources.gpus
            return dict(resources=dict(num_gpus=per_actor), size=self.workers or max(1, int(gpus // per_actor)),
                        threads=0)
        size = self.workers or 1
        threads = max(1, (max(_cluster("CPU"), 2) - 1) // size)
        return dict(resources=dict(num_cpus=threads), size=size, threads=threads)

    def _run_model_job(self, job: ModelJob, tasks: list[ShardTask], run: RunDir, bar: tqdm) -> None:
        import ray

        expected = {t.shard_id: job.expected_rows(t) for t in tasks}
        for task in tasks:
            if expected[task.shard_id] == 0:
                run.commit(encode_output(job.name, task, job.finish(task, [])))  # nothing for the model to do
                bar.update(1)
        busy = [t for t in tasks if expected[t.shard_id]]
        if not busy:
            return
        pool = self.model_pool(job)
        results = (
            shard_items(busy)
            # Decode workers are recycled every DECODE_CALLS shards (bounding what image decoders leak over a long
            # run); as the model actors take no such option, it also keeps Ray Data from fusing the decoding into
            # them: decoding stays in CPU tasks of its own.
            .map_batches(_prepare, fn_kwargs={"job": job}, batch_size=1, batch_format="pyarrow",
                         num_cpus=1, max_calls=DECODE_CALLS)
            .map_batches(
                _ModelActor, fn_constructor_kwargs={"job": job, "threads": pool["threads"]},
                batch_size=job.resources.batch_size, batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool["size"]), **pool["resources"],
            )
        )
        by_id = {t.shard_id: t for t in busy}
        parts: dict[str, list[pa.Table]] = defaultdict(list)
        received: dict[str, int] = defaultdict(int)
        for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            for shard_id in pc.unique(batch["shard_id"]).to_pylist():
                part = batch.filter(pc.equal(batch["shard_id"], shard_id))
                parts[shard_id].append(part)
                received[shard_id] += part.num_rows
                if received[shard_id] == expected[shard_id]:
                    task = by_id[shard_id]
                    run.commit(encode_output(job.name, task, job.finish(task, parts.pop(shard_id))))
                    bar.update(1)

    def completed(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence,
                  desc: str = "tasks") -> Iterator[tuple[int, Any]]:
        """Yields (i, fn(shared, items[i])) as each Ray task completes: tasks of one CPU each, at most `workers`
        (default: all CPUs) at a time, spread over the cluster's nodes; `shared` goes to the object store once.
        A task whose worker dies is retried (it must be idempotent); where the tasks ran is kept in PLACEMENTS."""
        import ray

        init_ray()
        limit = self.workers or max(1, _cluster("CPU"))
        remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=TASK_RETRIES)(_placed)
        shared_ref = ray.put(shared)
        pending: dict[Any, int] = {}
        queue = list(enumerate(items))[::-1]
        nodes: dict[str, int] = defaultdict(int)
        with tqdm(total=len(items), desc=desc, unit="task", disable=not self.progress) as bar:
            while queue or pending:
                while queue and len(pending) < limit:
                    index, item = queue.pop()
                    pending[remote.remote(fn, shared_ref, item)] = index
                done, _ = ray.wait(list(pending), num_returns=1)
                node, result = ray.get(done[0])
                nodes[node] += 1
                bar.update(1)
                PLACEMENTS[desc] = dict(nodes)
                yield pending.pop(done[0]), result
