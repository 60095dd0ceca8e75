"""What the stages that re-read a shard's samples share: the accepted samples of one shard."""

import pyarrow as pa
import pyarrow.parquet as pq

from curate.catalogs.views import DUPLICATES
from curate.io.schema import SAMPLES_SCHEMA
from curate.rundir import RunDir


def shard_samples(run: RunDir, shard_id: str, columns: list[str] | None = None) -> pa.Table:
    """Returns the accepted samples of one shard, without the later copies of duplicate uids, in file order: curate's
    columns (SAMPLES_SCHEMA), or `columns`. The shard's own kept columns are read through the catalog."""
    names = ["shard", "key", *columns] if columns is not None else SAMPLES_SCHEMA.names
    table = pq.read_table(run.path / "samples" / f"{shard_id}.parquet", columns=list(dict.fromkeys(names)))
    duplicates = run.path / DUPLICATES
    if duplicates.exists() and table.num_rows:
        dup = pq.read_table(duplicates, columns=["shard", "key"])
        keys = {(s, k) for s, k in zip(dup["shard"].to_pylist(), dup["key"].to_pylist(), strict=True)}
        pairs = zip(table["shard"].to_pylist(), table["key"].to_pylist(), strict=True)
        table = table.filter(pa.array([(s, k) not in keys for s, k in pairs]))
    return table if columns is None else table.select(columns)
