"""curate.open(RUN): SQL to Polars, the stage graph, lazy selections that export, methods by name; and the
`curate status` command over it."""

import json

import polars as pl
import pytest

import curate
from curate.cli.main import main
from curate.errors import UsageError
from tests.shards import ingested_tars
from tests.toy_stages import A, B


@pytest.fixture
def run_path(tmp_path):
    run = ingested_tars(tmp_path, shards=2, per_shard=6)
    A().apply(run, progress=False)
    return run.path


def test_sql_gives_polars_and_samples_are_lazy_until_asked(run_path, tmp_path):
    run = curate.open(run_path)
    frame = run.sql("SELECT uid, a_keep FROM samples WHERE caption LIKE $p ORDER BY uid", {"p": "sample 1%"})
    assert isinstance(frame, pl.DataFrame) and frame.height == 3 and frame.columns == ["uid", "a_keep"]
    assert run.accounting() == dict(read=12, kept=12, quarantined=0, shard_errors=0)
    kept = run.samples("a_keep")
    assert kept.count() == 6 and kept.filter("caption LIKE 'sample 1%'").count() <= 3
    rows = kept.to_polars(["uid", "caption"])
    assert rows.columns == ["uid", "caption"] and rows["uid"].to_list() == sorted(rows["uid"].to_list())
    summary = kept.export(tmp_path / "out", format="parquet", progress=False)
    assert summary["samples"] == 6 and (tmp_path / "out" / "_export.json").exists()
    with pytest.raises(UsageError, match="no column 'nope' in samples"):
        kept.to_polars(["nope"])
    with pytest.raises(UsageError, match="invalid --where"):
        run.samples("a_keep AND")


def test_stages_and_methods_by_name(run_path):
    run = curate.open(run_path)
    with pytest.raises(UsageError, match="unknown method 'b'; choose one of basic, dfn, semdedup, dbp, dq, random"):
        run.filter("b")
    with pytest.raises(UsageError, match=r"basic: .*unexpected keyword argument 'min_sid'"):
        run.filter("basic", min_sid=32)
    assert run.filter("basic", min_side=32, min_words=2, language=None, progress=False) == dict(scored=12, kept=12)
    B().apply(run.dir, progress=False)
    stages = run.stages()
    assert stages["stage"].to_list() == ["ingest", "a", "b", "basic"]
    assert stages.filter(pl.col("stage") == "basic")["options"].item() == json.dumps(
        dict(language=None, max_aspect=3.0, min_chars=6, min_side=32, min_words=2), sort_keys=True)
    assert set(stages["status"]) == {"current"}
    with pytest.raises(UsageError, match="is not a run folder"):
        curate.open(run_path.parent)


def test_status_command_prints_every_stage(run_path, capsys):
    assert main(["status", str(run_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["stage"], r["status"]) for r in rows] == [("ingest", "current"), ("a", "current")]
    assert main(["status", str(run_path)]) == 0
    assert capsys.readouterr().out.splitlines()[3].split() == ["a", "current", "reads", "ingest"]
