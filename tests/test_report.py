import pyarrow as pa
from PIL import Image

from curate.catalogs import build_catalog, connect
from curate.report import score_columns, write_report
from curate.rundir import RunDir, parquet_bytes
from curate.stages.ingest import ingest
from tests.shards import clean_shard


def test_report_plots_each_score_column(tmp_path):
    clean_shard(tmp_path / "a.tar", 6)
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "a.tar")], run, progress=False)
    assert write_report(run) == []
    uids = [u for (u,) in connect(run).execute("SELECT uid FROM samples ORDER BY uid").fetchall()]
    scores = pa.table({"uid": uids, "toy_score": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "toy_keep": [False] * 3 + [True] * 3,
                       "toy_reason": ["x"] * 6})
    run.write_bytes("scores/toy/a.parquet", parquet_bytes(scores))
    build_catalog(run)
    assert score_columns(run) == ["toy_score"]
    [png] = write_report(run)
    assert png == run.path / "report" / "toy_score.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 300
