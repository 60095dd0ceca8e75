from PIL import Image

from curate.report import score_columns, write_report
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.shards import clean_shard
from tests.toy_stages import EveryNth


def test_report_plots_each_score_column(tmp_path):
    clean_shard(tmp_path / "a.tar", 6)
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "a.tar")], run, progress=False)
    assert write_report(run) == []
    EveryNth().apply(run, progress=False)
    assert score_columns(run) == ["toy_score"]
    [png] = write_report(run)
    assert png == run.path / "report" / "toy_score.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 300
