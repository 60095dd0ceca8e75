"""The Ray runner: shards as a Ray Dataset, processed by an actor pool; the driver commits what comes back.

Workers return each shard's encoded files in one row, so the run folder needs to be visible only to the
driver, not to every node of a cluster.
"""

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import ShardJob, encode_output


def init_ray() -> None:
    """Connects to the cluster named by RAY_ADDRESS, or starts a local Ray; does nothing if connected."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING, configure_logging=True)


class _ShardJobActor:
    """Holds one set-up copy of the job per Ray actor."""

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


def run_ray(job: ShardJob, tasks: list[ShardTask], run: RunDir, workers: int | None = None) -> None:
    """Runs the job on Ray and commits each shard; a job with a model part gets a pipelined plan (see below)."""
    init_ray()
    if hasattr(job, "prepare"):
        from curate.runners.ray_pipelined import run_pipelined

        run_pipelined(job, tasks, run, workers)
    else:
        _run_per_shard(job, tasks, run, workers)


def shard_items(tasks: list[ShardTask]):
    """Returns a Ray Dataset with one row (shard_id, url, kind) and one block per shard."""
    import ray

    items = [dict(shard_id=t.shard_id, url=t.url, kind=t.kind) for t in tasks]
    return ray.data.from_items(items, override_num_blocks=len(items))


def task_of(row: dict) -> ShardTask:
    """Returns the ShardTask of a row made by shard_items."""
    return ShardTask(row["shard_id"], row["url"], row["kind"])


def _run_per_shard(job: ShardJob, tasks: list[ShardTask], run: RunDir, workers: int | None) -> None:
    """Processes shards on an actor pool (one CPU each, `workers` of them, default all CPUs) and commits them."""
    import ray

    size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    results = shard_items(tasks).map_batches(
        _ShardJobActor,
        fn_constructor_kwargs={"job": job},
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(size, len(tasks))),
    )
    for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            run.commit(dict(zip(row["paths"], row["blobs"], strict=True)))


def map_ray(fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, progress: bool = True, desc: str = "tasks",
            workers: int | None = None) -> list:
    """Returns [fn(shared, item) for item in items] computed by Ray tasks of one CPU each, at most `workers` (default:
    all CPUs) at a time; `shared` is put in the object store once."""
    import ray
    from tqdm import tqdm

    init_ray()
    limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote, shared_ref = ray.remote(num_cpus=1)(fn), ray.put(shared)
    results: dict[int, Any] = {}
    pending: dict[Any, int] = {}
    queue = list(enumerate(items))[::-1]
    with tqdm(total=len(items), desc=desc, unit="task", disable=not progress) as bar:
        while queue or pending:
            while queue and len(pending) < limit:
                index, item = queue.pop()
                pending[remote.remote(shared_ref, item)] = index
            done, _ = ray.wait(list(pending), num_returns=1)
            results[pending.pop(done[0])] = ray.get(done[0])
            bar.update(1)
    return [results[i] for i in range(len(items))]
