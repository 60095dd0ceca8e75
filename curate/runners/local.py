"""The local runner: a plain loop over shards in this process."""

from tqdm import tqdm

from curate.io.inputs import ShardTask
from curate.rundir import RunDir
from curate.runners.base import ShardJob, encode_output


def run_local(job: ShardJob, tasks: list[ShardTask], run: RunDir, progress: bool = True) -> None:
    """Processes and commits each shard in turn, showing a progress bar."""
    job.setup()
    for task in tqdm(tasks, desc=job.name, unit="shard", disable=not progress):
        run.commit(encode_output(job.name, task, job.process(task)))
