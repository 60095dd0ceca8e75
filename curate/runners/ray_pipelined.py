"""The Ray plan for jobs with a model part: CPU tasks prepare shards, an actor pool runs the model on batches.

    shards -> map_batches(prepare, CPU tasks) -> map_batches(model, actor pool, num_gpus=1 per GPU) -> driver

Batches mix shards, so the driver regroups rows by shard and commits a shard once all its rows are back.
"""

from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc

from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import encode_output
from curate.runners.ray import shard_items, task_of


def _prepare(batch: pa.Table, job) -> pa.Table:
    return pa.concat_tables([job.prepare(task_of(row)) for row in batch.to_pylist()])


class _ModelActor:
    """One model per actor, loaded once; CPU actors use as many torch threads as CPUs they were given."""

    def __init__(self, job, threads: int):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.job = job
        job.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.job.embed_batch(batch)


def model_pool(workers: int | None) -> dict:
    """Returns map_batches resources for the model actors: one per GPU with num_gpus=1, else CPU actors."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if gpus:
        return dict(num_gpus=1, size=workers or gpus, threads=0)
    # Leave a CPU for the decoding tasks; each CPU actor gets an equal share of the rest.
    size = workers or 1
    threads = max(1, (cpus - 1) // size)
    return dict(num_cpus=threads, size=size, threads=threads)


def run_pipelined(job, tasks: list[ShardTask], run: RunDir, workers: int | None = None) -> None:
    """Runs prepare and model parts on Ray and commits every shard of `tasks` through the driver."""
    import ray

    expected = {t.shard_id: job.expected_rows(t) for t in tasks}
    by_id = {t.shard_id: t for t in tasks}
    for task in tasks:
        if expected[task.shard_id] == 0:
            run.commit(encode_output(job.name, task, job.process(task)))  # nothing for the model to do
    busy = [t for t in tasks if expected[t.shard_id]]
    if not busy:
        return
    pool = model_pool(workers)
    resources = {k: pool[k] for k in ("num_gpus", "num_cpus") if k in pool}
    results = (
        shard_items(busy)
        # Retrying a decode task (a flaky object store read) also keeps Ray from fusing the decoding into the
        # model actors, whose remote args differ: decoding stays in CPU tasks of its own.
        .map_batches(_prepare, fn_kwargs={"job": job}, batch_size=1, batch_format="pyarrow",
                     num_cpus=1, max_retries=3)
        .map_batches(
            _ModelActor, fn_constructor_kwargs={"job": job, "threads": pool["threads"]},
            batch_size=job.batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool["size"]), **resources,
        )
    )
    parts: dict[str, list[pa.Table]] = defaultdict(list)
    received: dict[str, int] = defaultdict(int)
    for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        for shard_id in pc.unique(batch["shard_id"]).to_pylist():
            part = batch.filter(pc.equal(batch["shard_id"], shard_id))
            parts[shard_id].append(part)
            received[shard_id] += part.num_rows
            if received[shard_id] == expected[shard_id]:
                task = by_id[shard_id]
                run.commit(encode_output(job.name, task, job.finish(task, pa.concat_tables(parts.pop(shard_id)))))
