"""Uids that repeat across a run's samples: every copy after the first (ordered by shard, then key) is quarantined,
and the files ingest wrote beside the samples for those copies (a DataComp pool's embeddings and scores, per
shard) lose their rows, so no view holds a uid twice."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.catalogs.connection import open_database, run_file
from curate.catalogs.views import DUPLICATES
from curate.io.schema import QUARANTINE_SCHEMA
from curate.rundir import RunDir, parquet_bytes

# The per-shard files ingest writes beside the samples, keyed by uid (DataComp's .npz embeddings and scores).
BESIDE = ("embeddings", "scores/datacomp")


def write_duplicate_uids(run: RunDir) -> None:
    """Quarantines every copy of a uid after the first (ordered by shard, then key), as one Parquet file, and drops
    those copies' rows from the files beside the samples; returns nothing. Running it again changes nothing."""
    con = open_database(":memory:", run, read_only=False)
    table = con.sql(
        f"""
        SELECT shard, key, uid, 'duplicate uid' AS reason,
               'first seen in ' || first_shard || ' key ' || first_key AS detail, first_shard
        FROM (SELECT shard, key, uid,
                     first_value(shard) OVER w AS first_shard, first_value(key) OVER w AS first_key,
                     row_number() OVER w AS copy
              FROM read_parquet({run_file('samples/*.parquet')})
              WINDOW w AS (PARTITION BY uid ORDER BY shard, key))
        WHERE copy > 1
        ORDER BY shard, key
        """
    ).to_arrow_table()
    con.close()
    target = run.path / DUPLICATES
    if table.num_rows:
        quarantined = table.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
        run.write_bytes(DUPLICATES, parquet_bytes(quarantined))
        _drop_beside(run, table)
    elif target.exists():
        target.unlink()


def _drop_beside(run: RunDir, duplicates: pa.Table) -> None:
    """Drops the later copies' rows from each shard's files beside the samples: a shard that holds the first copy
    of a uid keeps its first row of it, the others none."""
    ids = {m["shard"]: m["shard_id"] for m in run.markers("ingest")}
    for shard in sorted(set(duplicates["shard"].to_pylist())):
        mine = duplicates.filter(pc.equal(duplicates["shard"], shard))
        repeated = set(mine["uid"].to_pylist())
        first_here = {u for u, f in zip(mine["uid"].to_pylist(), mine["first_shard"].to_pylist(), strict=True)
                      if f == shard}
        for folder in BESIDE:
            relative = f"{folder}/{ids.get(shard)}.parquet"
            if shard in ids and (run.path / relative).exists():
                _keep_first_copies(run, relative, repeated, first_here)


def _keep_first_copies(run: RunDir, relative: str, repeated: set[str], first_here: set[str]) -> None:
    table = pq.read_table(run.path / relative)
    seen: set[str] = set()
    keep = np.ones(table.num_rows, dtype=bool)
    for row, uid in enumerate(table["uid"].to_pylist()):
        if uid in repeated:
            keep[row] = uid in first_here and uid not in seen
            seen.add(uid)
    if not keep.all():
        run.write_table(relative, table.filter(pa.array(keep)))
