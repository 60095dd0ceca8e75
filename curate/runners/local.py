"""The local runner: a plain loop in this process, or with workers > 1 a pool of that many processes on this
machine, each set up once; the parent alone writes the run folder."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from curate.errors import UsageError
from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import Runner, ShardJob, shard_files

# The variables native thread pools size themselves by when a process starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# What each pool process holds after its initializer ran: the set-up job, or a map's function and shared data.
_worker_state: dict[str, Any] = {}
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# How long a stopped pool's workers get to exit on SIGTERM before they are killed.
STOP_SECONDS = 5.0


def die_with_parent(parent: int) -> None:
    """Makes this process get SIGKILL when its parent (pid `parent`) dies, and exits at once when the parent died
    already; returns nothing. A pool worker's results reach the run folder only through its parent, so one that
    outlives it would only hold the CPUs and memory. Linux only (prctl PR_SET_PDEATHSIG); elsewhere it does nothing.
    The kernel sends the signal when the parent's thread that started this process ends: _pool starts its workers
    from the thread that uses the pool, which outlives it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was set: it will never come
        os._exit(1)


def _init_worker(parent: int, initializer: Callable[..., None], initargs: tuple) -> None:
    die_with_parent(parent)
    initializer(*initargs)


def _init_job(job: ShardJob) -> None:
    job.setup()
    _worker_state["job"] = job


def _process_shard(task: ShardTask) -> dict[str, bytes]:
    job = _worker_state["job"]
    return shard_files(job, task)


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


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancels the pool's queued tasks and ends its workers without waiting for their running tasks, whose results
    no one will commit: SIGTERM, then SIGKILL after STOP_SECONDS; returns once they are gone."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # Python < 3.14 has no terminate_workers()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=True)


@dataclass(frozen=True)
class LocalRunner(Runner):
    """Runs on this machine: `workers` processes (default 1: in this process, no pool)."""

    name = "local"

    @contextlib.contextmanager
    def _pool(self, initializer, initargs, jobs: int) -> Iterator[ProcessPoolExecutor]:
        """Yields a pool of spawned workers whose native thread pools (BLAS, OpenMP: numpy, faiss, torch) share the
        machine's CPUs among them instead of each taking all of them. The workers die with this process (on Linux),
        and a block left by an exception (a task's error, Ctrl-C, the CLI's SIGTERM) stops them at once instead of
        waiting for every queued task."""
        # spawn, not fork: the parent may hold torch or Ray threads that a forked child would inherit locked.
        context = multiprocessing.get_context("spawn")
        size = min(self.workers or 1, jobs)
        threads = str(max(1, (os.cpu_count() or 1) // size))
        saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
        os.environ.update(dict.fromkeys(THREAD_VARIABLES, threads))  # read by each worker as it starts
        try:
            pool = ProcessPoolExecutor(size, context, _init_worker, (os.getpid(), initializer, initargs))
            try:
                yield pool
            except BaseException:
                _stop(pool)
                raise
            pool.shutdown(wait=True)
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
                    run.commit(shard_files(job, task))
                    bar.update(1)
                return
            with _pool_errors(), self._pool(_init_job, (job,), len(tasks)) as pool:
                for done in as_completed([pool.submit(_process_shard, task) for task in tasks]):
                    run.commit(done.result())
                    bar.update(1)

    def completed(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence,
                  desc: str = "tasks") -> Iterator[tuple[int, Any]]:
        """Yields (i, fn(shared, items[i])) as each completes, in this process (in order) or over the pool."""
        if (self.workers or 1) == 1 or len(items) < 2:
            for index, item in enumerate(tqdm(items, desc=desc, unit="task", disable=not self.progress)):
                yield index, fn(shared, item)
            return
        with _pool_errors(), self._pool(_init_map, (fn, shared), len(items)) as pool:
            futures = {pool.submit(_map_item, item): index for index, item in enumerate(items)}
            for future in tqdm(as_completed(futures), total=len(items), desc=desc, unit="task",
                               disable=not self.progress):
                yield futures.pop(future), future.result()  # no reference kept: a folding caller holds one
