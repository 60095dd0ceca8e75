import shutil

import duckdb
import pytest

from curate.catalogs import connect, saved_queries
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.shards import clean_shard, sample_members, write_tar


@pytest.fixture
def run(tmp_path):
    clean_shard(tmp_path / "a.tar", 4)
    write_tar(tmp_path / "b.tar", sample_members("bad", caption=""))
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "*.tar")], run, progress=False)
    return run


def test_every_saved_query_runs(run):
    con = connect(run)
    assert set(saved_queries()) >= {"accounting", "quarantine_reasons", "shards", "stage_counts"}
    for sql in saved_queries().values():
        con.execute(sql).fetchall()  # raises on a broken query
    assert con.execute(saved_queries()["quarantine_reasons"]).fetchall() == [("empty caption", 1, 1, 0)]


def test_catalog_is_read_only(run):
    con = connect(run)
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("CREATE TABLE x AS SELECT 1")


def test_catalog_still_works_after_the_run_folder_moves(run, tmp_path):
    moved = RunDir(shutil.move(str(run.path), str(tmp_path / "elsewhere")))
    assert connect(moved).execute("SELECT count(*) FROM samples").fetchone() == (4,)


def test_stage_scores_join_the_samples_view(run):
    import pyarrow as pa

    from curate.catalogs import build_catalog
    from curate.rundir import parquet_bytes

    uids = [u for (u,) in connect(run).execute("SELECT uid FROM samples ORDER BY uid").fetchall()]
    scores = pa.table({"uid": uids, "toy_score": [0.1, 0.9, 0.5, 0.7], "toy_keep": [False, True, True, True]})
    run.write_bytes("scores/toy/a.parquet", parquet_bytes(scores))
    build_catalog(run)
    con = connect(run)
    assert con.execute("SELECT count(*) FROM samples WHERE toy_keep").fetchone() == (3,)
    assert con.execute("SELECT stage, kept, dropped FROM stage_counts").fetchall() == [("toy_keep", 3, 1)]
