"""The Ray runner, the one module that imports ray: shard jobs and maps as Ray tasks, model jobs on actors, the
driver commits what comes back.

Shard jobs (ingest, score stages) and maps run as tasks in Ray's long-lived worker processes, which keep their
imports and a set-up copy of the job from shard to shard, so a stage pays no process start. A model job runs on
actors that load the model once. Without GPUs each actor decodes and runs its shards on its own CPUs, as the local
runner does; with GPUs it runs as a pipeline:

    shards -> map_batches(prepare, CPU tasks) -> map_batches(run_batch, actor pool, a GPU each) -> driver

Workers return encoded files (shard jobs) or rows (the GPU pipeline) to the driver, which alone writes them: ingest
and embed need the run folder visible to the driver only. The whole-pool stages' map tasks read the run's embedding
files and write their buckets' files themselves (each write-once and atomic, so a retried task is harmless): on a
cluster of several nodes their run folder must be on storage every node mounts at the same path.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import ModelJob, Runner, ShardJob, encode_output, shard_files
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


# In a Ray worker process: the job it set up last, under the token of the run_shards call that sent it. Tasks of
# one call reuse it (set up once per process, as the local runner's pool does); a later call's job replaces it.
_SET_UP: dict[str, ShardJob] = {}


def _shard_files(shared: tuple[str, ShardJob], task: ShardTask) -> dict[str, bytes]:
    """Returns one shard's encoded files, from this worker's set-up copy of the job (set up on its first shard)."""
    token, job = shared
    if token not in _SET_UP:
        _SET_UP.clear()
        job.setup()
        _SET_UP[token] = job
    job = _SET_UP[token]
    return shard_files(job, task)


class _JobActor:
    """One set-up copy of a model job per actor (the model loaded once), running whole shards on `threads` torch
    threads: a CPU cluster's model job, whose decoding and model share the actor's CPUs as on the local runner."""

    def __init__(self, job: ShardJob, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.job = job
        job.setup()

    def files(self, task: ShardTask) -> dict[str, bytes]:
        """Returns the shard's encoded files."""
        return shard_files(self.job, task)


def _prepare(batch: pa.Table, job: ModelJob) -> pa.Table:
    return pa.concat_tables([job.prepare(task_of(row)) for row in batch.to_pylist()])


class _ModelActor:
    """One model per GPU actor, loaded once, running batches of prepared rows that may mix shards."""

    def __init__(self, job: ModelJob):
        self.job = job
        job.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.job.run_batch(batch)


def _node_cpus() -> list[int]:
    """Returns the CPU count of each alive node of the cluster."""
    import ray

    return [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]]


@dataclass(frozen=True)
class RayRunner(Runner):
    """Runs on the Ray cluster in RAY_ADDRESS, or a local Ray. Shard jobs and maps run as Ray tasks, one CPU each
    (default workers: every CPU), in Ray's long-lived worker processes. A model job runs on actors that load the
    model once: on a cluster with GPUs, one actor per GPU fed by CPU decoding tasks; without GPUs, actors that
    decode and run the model on their own CPUs, as the local runner does (default: one per node, its CPUs each)."""

    name = "ray"

    def run_shards(self, job: ShardJob, tasks: list[ShardTask], run: RunDir) -> None:
        """Runs the job on Ray and commits each shard through the driver as it completes."""
        init_ray()
        with core_logs_off(not verbose()), tqdm(total=len(tasks), desc=job.name, unit="shard",
                                                 disable=not self.progress) as bar:
            if not isinstance(job, ModelJob):
                shards = self._tasks(_shard_files, (uuid.uuid4().hex, job), tasks, job.name, job.resources.cpus)
            elif _cluster("GPU") and job.resources.gpus:
                shards = self._model_pipeline(job, tasks)
            else:
                shards = self._model_actors(job, tasks)
            for _, files in shards:
                run.commit(files)
                bar.update(1)

    def cpu_actors(self) -> dict:
        """Returns how a model job runs on a cluster without GPUs: `size` actors of `threads` CPUs each (threads no
        more than the smallest node has, so every actor can be placed)."""
        cpus = _node_cpus() or [1]
        size = self.workers or len(cpus)
        return dict(size=size, threads=max(1, min(sum(cpus) // size, min(cpus))))

    def _model_actors(self, job: ShardJob, tasks: list[ShardTask]) -> Iterator[tuple[int, dict[str, bytes]]]:
        """Yields (i, files of tasks[i]) as the CPU model actors finish them; the actors end with the job."""
        import ray

        plan = self.cpu_actors()
        actor = ray.remote(num_cpus=plan["threads"], max_restarts=TASK_RETRIES, max_task_retries=TASK_RETRIES,
                           scheduling_strategy="SPREAD")(_JobActor)
        actors = [actor.remote(job, plan["threads"]) for _ in range(min(plan["size"], len(tasks)))]
        try:
            yield from self._dispatch(lambda i, slot: actors[slot].files.remote(tasks[i]), len(tasks), len(actors))
        finally:
            for each in actors:
                ray.kill(each)

    def _model_pipeline(self, job: ModelJob, tasks: list[ShardTask]) -> Iterator[tuple[int, dict[str, bytes]]]:
        """Yields (i, files) per shard of a model job on GPUs: decoding in CPU tasks, the model on one actor per
        GPU, batches that may mix shards reassembled per shard here."""
        import ray

        expected = {t.shard_id: job.expected_rows(t) for t in tasks}
        by_id = {t.shard_id: (i, t) for i, t in enumerate(tasks)}
        for index, task in enumerate(tasks):
            if expected[task.shard_id] == 0:  # nothing for the model to do
                yield index, encode_output(job.name, task, job.finish(task, []))
        busy = [t for t in tasks if expected[t.shard_id]]
        if not busy:
            return
        results = (
            shard_items(busy)
            # Decode workers are recycled every DECODE_CALLS shards (bounding what image decoders leak over a long
            # run); as the model actors take no such option, it also keeps Ray Data from fusing the decoding into
            # them: decoding stays in CPU tasks of its own.
            .map_batches(_prepare, fn_kwargs={"job": job}, batch_size=1, batch_format="pyarrow",
                         num_cpus=1, max_calls=DECODE_CALLS)
            .map_batches(
                _ModelActor, fn_constructor_kwargs={"job": job}, batch_size=job.resources.batch_size,
                batch_format="pyarrow", num_gpus=job.resources.gpus,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=self.workers or max(
                    1, int(_cluster("GPU") // job.resources.gpus))),
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
                    index, task = by_id[shard_id]
                    yield index, encode_output(job.name, task, job.finish(task, parts.pop(shard_id)))

    def _dispatch(self, submit: Callable[[int, int], Any], count: int,
                  slots: int) -> Iterator[tuple[int, Any]]:
        """Yields (i, result of submit(i, slot)) for i in range(count) as each completes, with at most `slots` in
        flight; `slot` is the free one of 0..slots-1 the call may use (an actor's index)."""
        import ray

        pending: dict[Any, tuple[int, int]] = {}
        free, queue = list(range(slots)), list(range(count))[::-1]
        while queue or pending:
            while queue and free:
                index, slot = queue.pop(), free.pop()
                pending[submit(index, slot)] = (index, slot)
            done, _ = ray.wait(list(pending), num_returns=1)
            index, slot = pending.pop(done[0])
            free.append(slot)
            yield index, ray.get(done[0])

    def _tasks(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, desc: str,
               cpus: float = 1) -> Iterator[tuple[int, Any]]:
        """Yields (i, fn(shared, items[i])) as each Ray task completes, at most `workers` (default: as many as the
        cluster's CPUs hold) at a time, spread over the nodes; `shared` goes to the object store once. A task whose
        worker dies is retried (it must be idempotent); where the tasks ran is kept in PLACEMENTS[desc]."""
        import ray

        remote = ray.remote(num_cpus=cpus, scheduling_strategy="SPREAD", max_retries=TASK_RETRIES)(_placed)
        shared_ref = ray.put(shared)
        limit = self.workers or max(1, int(_cluster("CPU") // max(cpus, 1)))
        nodes: dict[str, int] = defaultdict(int)
        for index, (node, result) in self._dispatch(lambda i, _: remote.remote(fn, shared_ref, items[i]), len(items),
                                                    limit):
            nodes[node] += 1
            PLACEMENTS[desc] = dict(nodes)
            yield index, result

    def completed(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence,
                  desc: str = "tasks") -> Iterator[tuple[int, Any]]:
        """Yields (i, fn(shared, items[i])) as each Ray task completes: tasks of one CPU each, at most `workers`
        (default: all CPUs) at a time, spread over the cluster's nodes; `shared` goes to the object store once.
        A task whose worker dies is retried (it must be idempotent); where the tasks ran is kept in PLACEMENTS."""
        init_ray()
        with tqdm(total=len(items), desc=desc, unit="task", disable=not self.progress) as bar:
            for index, result in self._tasks(fn, shared, items, desc):
                bar.update(1)
                yield index, result
