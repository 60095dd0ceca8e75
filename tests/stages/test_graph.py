"""The stage graph: invalidation of what read an older stage, refusal of a step that would stale its own input,
the stages table, column clashes, and a failed step recording only what it started, the run still queryable."""

from dataclasses import dataclass

import pyarrow as pa
import pytest

from curate.api import open as open_run
from curate.catalogs import connect
from curate.catalogs.selection import predicate_columns
from curate.errors import UsageError
from curate.filters.dbp import DBP
from curate.filters.dfn import DFNFilter
from curate.filters.semdedup import SemDeDup
from curate.graph import require_current, status
from curate.options import option
from curate.rundir import RunDir
from curate.stages.pool import SelectionMethod
from curate.stages.score import ScoreStage
from curate.stages.step import stage_step
from tests.shards import copy_run, ingested_tars, planted_datacomp_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Built once for the module, copied by each test: 3 tars of 8 samples ingested and embedded, and the planted
    DataComp shards ingested."""
    return dict(embedded=ingested_tars(tmp_path_factory.mktemp("embedded"), shards=3, per_shard=8, embedded=True),
                datacomp=planted_datacomp_run(tmp_path_factory.mktemp("datacomp"))[0])


@pytest.fixture
def embedded_run(runs, tmp_path):
    return copy_run(runs["embedded"], tmp_path / "run")


@pytest.fixture
def datacomp_run(runs, tmp_path):
    return copy_run(runs["datacomp"], tmp_path / "run")


def columns(run: RunDir) -> list[str]:
    return [c for (c,) in connect(run).execute("SELECT column_name FROM (DESCRIBE samples)").fetchall()]


def test_dfn_rerun_with_other_options_makes_the_dbp_that_read_dfn_keep_stale(embedded_run):
    run = embedded_run
    half = DFNFilter(keep_fraction=0.5).apply(run)
    first = DBP(keep_fraction=0.25, where="dfn_keep", clusters=3).apply(run, progress=False)
    DFNFilter(keep_fraction=0.5).apply(run)  # the same options: nothing goes stale
    assert status(run)["dbp"] == "current" and "dbp_keep" in columns(run)
    most = DFNFilter(keep_fraction=0.75).apply(run)
    assert status(run) == dict(ingest="current", embed="current", dfn="current", kmeans="current", dbp="stale")
    assert "dbp_keep" not in columns(run) and not (run.path / "scores" / "dbp").exists()
    stages = open_run(run.path).sql("SELECT stage, status, input_predicate, stale_because FROM stages")
    assert stages.row(4) == ("dbp", "stale", "dfn_keep", "dfn reran with other options")
    with pytest.raises(UsageError, match=r"the dbp stage of .* is stale \(dfn reran with other options\); rerun "
                                         "`curate filter dbp"):
        require_current(run, "dbp")
    again = DBP(keep_fraction=0.25, where="dfn_keep", clusters=3).apply(run, progress=False)
    assert (first["input"], again["input"]) == (half["kept"], most["kept"]) and status(run)["dbp"] == "current"


def test_dbp_with_other_kmeans_options_is_refused_before_it_touches_semdedup(datacomp_run):
    run = datacomp_run
    SemDeDup(eps=0.01, clusters=3).apply(run, progress=False)
    before = connect(run).execute("SELECT uid, semdedup_keep FROM samples ORDER BY uid").fetchall()
    with pytest.raises(UsageError, match=r"dbp reads semdedup, which running kmeans with these options would make "
                                         r"stale.*\"clusters\": 3") as refused:
        DBP(keep_fraction=0.25, clusters=4).apply(run, progress=False)
    assert "\n" not in str(refused.value)
    assert connect(run).execute("SELECT uid, semdedup_keep FROM samples ORDER BY uid").fetchall() == before
    assert status(run) == dict(ingest="current", kmeans="current", semdedup="current")
    # With an input that does not name SemDeDup's columns, the new clusters go ahead and SemDeDup goes stale.
    DBP(keep_fraction=0.25, where="TRUE", clusters=4).apply(run, progress=False)
    assert status(run)["semdedup"] == "stale" and status(run)["dbp"] == "current"
    assert "semdedup_keep" not in columns(run)
    assert connect(run).execute("SELECT count(DISTINCT cluster_id) FROM samples").fetchone() == (4,)


def test_the_default_dbp_input_follows_semdedup_and_is_recorded(datacomp_run):
    run = datacomp_run
    SemDeDup(keep_fraction=0.5, clusters=3).apply(run, progress=False)
    DBP(keep_fraction=0.25, clusters=3).apply(run, progress=False)
    row = open_run(run.path).sql("SELECT inputs, input_predicate FROM stages WHERE stage = 'dbp'").row(0)
    assert row == (["ingest", "kmeans", "semdedup"], "semdedup_keep")
    SemDeDup(keep_fraction=0.6, clusters=3).apply(run, progress=False)
    assert status(run)["dbp"] == "stale"


def test_predicate_columns_are_parsed_not_matched_as_text():
    assert predicate_columns("semdedup_keep AND caption = 'dfn_keep' -- dbp_keep") == {"semdedup_keep", "caption"}
    assert predicate_columns("uid IN (SELECT uid FROM samples s WHERE s.basic_keep)") == {"uid", "basic_keep"}
    with pytest.raises(UsageError, match="invalid --where"):
        predicate_columns("dfn_keep) OR (TRUE")


@dataclass(kw_only=True)
class ImageFormatStage(ScoreStage):
    """A stage whose column would shadow ingest's image_format."""

    name = "image"
    columns = ("image_format",)

    def process_batch(self, samples: pa.Table) -> pa.Table:
        return pa.table({"uid": samples["uid"], "image_format": samples["image_format"]})


def test_a_column_clash_is_refused_and_a_column_without_the_prefix_cannot_be_declared(embedded_run):
    with pytest.raises(UsageError, match="image_format, which ingest already adds"):
        ImageFormatStage().apply(embedded_run, progress=False)
    assert "image" not in status(embedded_run)
    with pytest.raises(TypeError, match="must start with late_"):
        type("Late", (ScoreStage,), {"name": "late", "columns": ("keep",), "process_batch": lambda s, b: b})


@dataclass(frozen=True, kw_only=True)
class Failing(SelectionMethod):
    """A whole-pool method that fails while computing its decisions, before it writes any (as neardup computes its
    groups), as a broken one would."""

    name = "failing"
    columns = ("failing_keep",)
    keep_fraction: float = option(0.5, "share")

    def apply(self, run, runner="local", **runner_options) -> dict:
        def decide():
            raise RuntimeError("halfway")

        with stage_step(run, self.step(run), decide):
            return {}


@dataclass(kw_only=True)
class FailingOnShard1(ScoreStage):
    """A per-shard stage that fails on shard 1 after committing shard 0, as a killed run would."""

    name = "halfway"
    columns = ("halfway_keep",)

    def process_batch(self, samples: pa.Table) -> pa.Table:
        if samples["shard"][0].as_py().endswith("1.tar"):
            raise RuntimeError("shard 1")
        return pa.table({"uid": samples["uid"], "halfway_keep": pa.array([True] * samples.num_rows)})


def test_a_failed_step_records_only_what_it_started_and_the_run_stays_queryable(embedded_run):
    kept = DFNFilter(keep_fraction=0.5).apply(embedded_run)["kept"]
    before = embedded_run.manifest()
    with pytest.raises(RuntimeError, match="halfway"):
        Failing().apply(embedded_run, progress=False)
    assert embedded_run.manifest() == before  # it failed before writing anything: nothing to record
    with pytest.raises(RuntimeError, match="shard 1"):
        FailingOnShard1().apply(embedded_run, progress=False)
    assert status(embedded_run)["halfway"] == "incomplete"  # shard 0 is committed: a rerun resumes from it
    assert connect(embedded_run).execute("SELECT count(*) FILTER (dfn_keep) FROM samples").fetchone() == (kept,)
    with pytest.raises(UsageError, match=r"keep-fraction must be in \(0, 1\]"):
        Failing(keep_fraction=1.5)


def test_a_step_reading_its_own_columns_or_a_stage_that_read_it_is_refused(datacomp_run):
    from curate.filters.dq import DQ
    from curate.filters.neardup import NearDup

    NearDup(threshold=0.99, descriptor="image").apply(datacomp_run, progress=False)
    DQ(keep_fraction=0.5, bins=2, per="none", where="neardup_keep").apply(datacomp_run, progress=False)
    before = datacomp_run.manifest()
    with pytest.raises(UsageError, match="neardup reads dq, which read neardup"):
        NearDup(threshold=0.9, descriptor="image", where="dq_keep").apply(datacomp_run, progress=False)
    with pytest.raises(UsageError, match="dq would read its own columns"):
        DQ(keep_fraction=0.5, bins=2, per="label", label_column="dq_bin").apply(datacomp_run, progress=False)
    assert datacomp_run.manifest() == before
