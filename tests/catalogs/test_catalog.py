import shutil
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curate.catalogs import connect, saved_queries
from curate.options import option
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from curate.stages.score import ScoreStage
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


@dataclass(kw_only=True)
class CaptionLength(ScoreStage):
    """A stage of a user's own: keep captions of at least `min_chars` characters."""

    name = "toy"
    columns = ("toy_score", "toy_keep")
    min_chars: int = option(9, "fewest characters")

    def process_batch(self, samples: pa.Table) -> pa.Table:
        lengths = pc.utf8_length(samples["caption"])
        return pa.table({"uid": samples["uid"], "toy_score": lengths,
                         "toy_keep": pc.greater_equal(lengths, self.min_chars)})


def test_stage_scores_join_the_samples_view_and_a_stray_folder_does_not(run):
    from curate.catalogs import build_catalog
    from curate.rundir import parquet_bytes

    assert CaptionLength(min_chars=9).apply(run, progress=False) == dict(scored=4, kept=0)
    assert CaptionLength(min_chars=8).apply(run, progress=False) == dict(scored=4, kept=4)
    run.write_bytes("scores/stray/a.parquet", parquet_bytes(pa.table({"uid": ["x"], "stray_keep": [True]})))
    build_catalog(run)
    con = connect(run)
    assert con.execute("SELECT count(*) FROM samples WHERE toy_keep").fetchone() == (4,)
    assert con.execute("SELECT stage, kept, dropped FROM stage_counts").fetchall() == [("toy_keep", 4, 0)]
    assert "stray_keep" not in [c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE samples)").fetchall()]
