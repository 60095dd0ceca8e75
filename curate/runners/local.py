"""The local runner: a plain loop in this process, or with workers > 1 a pool of that many processes on this
machine, each set up once; the parent alone writes the run folder."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from curate.errors import UsageError
from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import Runner, ShardJob, encode_output

# The variables native thread pools size themselves by when a process starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# What each pool process holds after its initializer ran: the set-up job, or a map's function and shared data.
_worker_state: dict[str, Any] = {}


def _init_job(job: ShardJob) -> None:
    job.setup()
    _worker_state["job"] = job


def _process_shard(task: ShardTask) -> dict[str, bytes]:
    job = _worker_state["job"]
    return encode_output(job.name, task, job.process(task))


def _init_map(fn: Callable[[Any, Any], Any], shared: Any) -> None:
    _worker_state["map"] = (fn, shared)


def _map_item(item: Any) -> Any:
    fn, shared = _worker_state["map"]
    return fn(shared, item)


@contextlib.contextmanager
def _pool_errors() -> Iterator[None]:
    """Turns a broken process pool into a UsageError saying what to fix (a worker's own exception passes through)."""
    try:
        yield
    except BrokenProcessPool as exc:
        raise UsageError(
            f"the --workers pool broke: a worker process exited before finishing its task ({exc}); a script that runs "
            "curate with --workers must guard its entry with `if __name__ == \"__main__\":` (each worker imports "
            "the script again), else rerun with --workers 1 to see the worker's own error"
        ) from None


@dataclass(frozen=True)
class LocalRunner(Runner):
    """Runs on this machine: `workers` processes (default 1: in this process, no pool)."""

    name = "local"

    @contextlib.contextmanager
    def _pool(self, initializer, initargs, jobs: int) -> Iterator[ProcessPoolExecutor]:
        """Yields a pool of spawned workers whose native thread pools (BLAS, OpenMP: numpy, faiss, torch) share the
        machine's CPUs among them instead of each taking all of them."""
        # spawn, not fork: the parent may hold torch or Ray threads that a forked child would inherit locked.
        context = multiprocessing.get_context("spawn")
        size = min(self.workers or 1, jobs)
        threads = str(max(1, (os.cpu_count() or 1) // size))
        saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
        os.environ.update(dict.fromkeys(THREAD_VARIABLES, threads))  # read by each worker as it starts
        try:
            with ProcessPoolExecutor(size, context, initializer, initargs) as pool:
                yield pool
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def run_shards(self, job: ShardJob, tasks: list[ShardTask], run: RunDir) -> None:
        """Processes and commits each shard, in order in this process or as pool processes finish them."""
        with tqdm(total=len(tasks), desc=job.name, unit="shard", disable=not self.progress) as bar:
            if (self.workers or 1) == 1:
                job.setup()
                for task in tasks:
                    run.commit(encode_output(job.name, task, job.process(task)))
                    bar.update(1)
                return
            with _pool_errors(), self._pool(_init_job, (job,), len(tasks)) as pool:
                for done in as_completed([pool.submit(_process_shard, task) for task in tasks]):
                    run.commit(done.result())
                    bar.update(1)

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, desc: str = "tasks") -> list:
        """Returns [fn(shared, item) for item in items], in this process or spread over the pool."""
        if (self.workers or 1) == 1 or len(items) < 2:
            return [fn(shared, item) for item in tqdm(items, desc=desc, unit="task", disable=not self.progress)]
        with _pool_errors(), self._pool(_init_map, (fn, shared), len(items)) as pool:
            futures = [pool.submit(_map_item, item) for item in items]
            for _ in tqdm(as_completed(futures), total=len(items), desc=desc, unit="task", disable=not self.progress):
                pass
            return [f.result() for f in futures]
