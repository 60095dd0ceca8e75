"""Runners execute jobs over shards and commit each shard's outputs; they never know what a job does."""

from curate.runners.base import (
    RUNNER_NAMES,
    ModelJob,
    Resources,
    Runner,
    ShardJob,
    as_runner,
    make_runner,
    quiet,
    run_shard_job,
)

__all__ = ["RUNNER_NAMES", "ModelJob", "Resources", "Runner", "ShardJob", "as_runner", "make_runner", "quiet",
           "run_shard_job"]
