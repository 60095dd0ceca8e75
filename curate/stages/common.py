"""What every stage does around its work: refuse a rerun with another config, record status and counts."""

import pyarrow as pa
import pyarrow.parquet as pq

from curate import __version__
from curate.catalogs.views import DUPLICATES
from curate.errors import UsageError
from curate.rundir import RunDir


def check_stage_config(run: RunDir, stage: str, config: dict) -> None:
    """Raises UsageError when the run already holds `stage` made with another config."""
    previous = run.manifest()["stages"].get(stage)
    if previous is not None and previous["config"] != config:
        raise UsageError(
            f"{run.path} already holds the {stage} stage made with other inputs or options; "
            "pass the same ones to resume, or choose a new --run folder"
        )


def record_stage(run: RunDir, stage: str, config: dict, **fields) -> dict:
    """Marks `stage` complete in the manifest with its config and extra fields; returns the manifest."""
    stages = run.manifest()["stages"] | {stage: dict(status="complete", config=config, **fields)}
    return run.update_manifest(stages=stages, curate_version=__version__)


def require_stage(run: RunDir, stage: str, hint: str) -> dict:
    """Returns the manifest entry of a completed stage; raises UsageError with `hint` when it is missing."""
    entry = run.manifest()["stages"].get(stage)
    if entry is None or entry.get("status") != "complete":
        raise UsageError(f"{run.path} has no completed {stage} stage; {hint}")
    return entry


def shard_samples(run: RunDir, shard_id: str, columns: list[str] | None = None) -> pa.Table:
    """Returns the accepted samples of one shard, without the later copies of duplicate uids, in file order."""
    table = pq.read_table(run.path / "samples" / f"{shard_id}.parquet", columns=columns and ["shard", "key", *columns])
    duplicates = run.path / DUPLICATES
    if duplicates.exists() and table.num_rows:
        dup = pq.read_table(duplicates, columns=["shard", "key"])
        keys = {(s, k) for s, k in zip(dup["shard"].to_pylist(), dup["key"].to_pylist(), strict=True)}
        pairs = zip(table["shard"].to_pylist(), table["key"].to_pylist(), strict=True)
        table = table.filter(pa.array([(s, k) not in keys for s, k in pairs]))
    return table if columns is None else table.select(columns)
