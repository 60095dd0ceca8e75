"""The local runner: a plain loop over shards in this process."""

from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import ShardJob, encode_output


def run_local(job: ShardJob, tasks: list[ShardTask], run: RunDir, progress: bool = True) -> None:
    """Processes and commits each shard in turn, showing a progress bar."""
    job.setup()
    for task in tqdm(tasks, desc=job.name, unit="shard", disable=not progress):
        run.commit(encode_output(job.name, task, job.process(task)))


def map_local(fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, progress: bool = True,
              desc: str = "tasks") -> list:
    """Returns [fn(shared, item) for item in items], one after another, with a progress bar."""
    return [fn(shared, item) for item in tqdm(items, desc=desc, unit="task", disable=not progress)]
