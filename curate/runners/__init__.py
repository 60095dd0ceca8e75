"""Runners execute a shard job over shards and commit each shard's outputs; they never know what the job does."""

from curate.runners.base import RUNNER_NAMES, ShardJob, run_shard_job

__all__ = ["RUNNER_NAMES", "ShardJob", "run_shard_job"]
