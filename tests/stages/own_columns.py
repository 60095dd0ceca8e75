"""Shards with labels and metadata of their own, ingested and queried: what the tests of the columns ingest keeps
share."""

import pyarrow as pa
import pyarrow.parquet as pq

from curate.catalogs import connect
from curate.io.samples import ReadOptions
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.shards import image_bytes, image_parquet, sample_members, write_tar


def labelled_tar(path, classes, metas=None):
    """Writes a tar of one sample per class (bytes of its .cls member, None for none) with optional json."""
    members = []
    for i, cls in enumerate(classes):
        meta = (metas or [None] * len(classes))[i]
        members += sample_members(f"k{i}", f"caption {i}", image_bytes((i * 40 % 256, 9, 9)), meta)
        if cls is not None:
            members.append((f"k{i}.cls", cls))
    return write_tar(path, members)


def rows(run, sql):
    con = connect(run)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def ingested(tmp_path, inputs, name="run", **options):
    run = RunDir(tmp_path / name)
    counts = ingest([str(i) for i in inputs], run, options=ReadOptions(**options), progress=False)
    return run, counts


def labelled_parquet(path, n=4, extra=None, metadata=None, row_group_size=None):
    """Writes an image Parquet shard with extra columns (name -> Arrow array), optional schema metadata."""
    image_parquet(path, n)
    table = pq.read_table(path)
    for name, values in (extra or {}).items():
        table = table.append_column(name, values)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def mixed_pool(pool):
    """Writes shards whose cls and score columns change type: cls int64 in two tars, text in one; score text in one
    Parquet file, double in another (a tie)."""
    pool.mkdir()
    labelled_tar(pool / "a.tar", [b"1", b"2"])
    labelled_tar(pool / "b.tar", [b"cat"])
    labelled_tar(pool / "c.tar", [b"3"])
    labelled_parquet(pool / "d.parquet", 2, {"score": pa.array(["high", "low"])})
    labelled_parquet(pool / "e.parquet", 2, {"score": pa.array([0.5, 0.25])})
