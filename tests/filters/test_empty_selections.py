"""Empty selections and predicates that fail on the data, for every whole-pool and cluster method: an empty stage
(counts of zero, nothing kept, its own tables empty but with their columns) or a one-line refusal that records
nothing; never a broken catalog. And a catalog that builds past a stage table it cannot read."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.cli.main import main
from curate.graph import status
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.filters.test_decontaminate import eval_parquet
from tests.filters.test_neardup import image_run
from tests.shards import datacomp_shard, planted_datacomp_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three kinds of run, copied by each test: DataComp embeddings (132 samples), no embedded sample at all, and
    images with a copy-descriptor set and an evaluation set beside it."""
    root = tmp_path_factory.mktemp("empty")
    for kind in ("planted", "none"):
        (root / kind).mkdir()
    planted = planted_datacomp_run(root / "planted")[0]
    datacomp_shard(root / "none", np.zeros((0, 32)))
    no_samples = RunDir(root / "none" / "run")
    ingest([str(root / "none" / "0000.parquet")], no_samples, progress=False)
    images = image_run(root / "images")
    eval_parquet(images.path.parent / "eval.parquet")
    return {"planted": planted, "none": no_samples, "images": images}


def copy_of(runs, kind, tmp_path) -> RunDir:
    shutil.copytree(runs[kind].path, tmp_path / "run")
    return RunDir(tmp_path / "run")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """Returns the command's one error line, the last of its stderr (progress bars above it); fails on more."""
    assert err.count("curate: error: ") == 1 and "Traceback" not in err, err
    line = err.splitlines()[-1]
    assert line.startswith("curate: error: "), err
    return line


def stage_views(run: RunDir, stage: str) -> list[str]:
    rows = connect(run).execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND starts_with(view_name, "
                                "$prefix)", {"prefix": f"{stage}_"}).fetchall()
    return [name for (name,) in rows]


FALSE = ["--where", "FALSE"]
CASES = {  # id -> (run kind, stage, command: RUN and EVAL stand for the run folder and the evaluation set)
    "dq-where-false": ("planted", "dq", ["filter", "dq", "RUN", "--keep-fraction", "0.3", "--bins", "2", *FALSE]),
    "dq-per-none": ("planted", "dq", ["filter", "dq", "RUN", "--keep-fraction", "0.3", "--bins", "2", "--per",
                                      "none", *FALSE]),
    "dq-per-label": ("planted", "dq", ["filter", "dq", "RUN", "--keep-fraction", "0.3", "--bins", "2", "--per",
                                       "label", "--label-column", "shard", *FALSE]),
    "dbp": ("planted", "dbp", ["filter", "dbp", "RUN", "--keep-fraction", "0.3", *FALSE]),
    "neardup-threshold": ("planted", "neardup", ["filter", "neardup", "RUN", "--threshold", "0.9", "--descriptor",
                                                 "image", *FALSE]),
    "neardup-fraction": ("planted", "neardup", ["filter", "neardup", "RUN", "--keep-fraction", "0.5",
                                                "--descriptor", "image", *FALSE]),
    "decontaminate": ("images", "decontam", ["decontaminate", "RUN", "--against", "EVAL", *FALSE]),
    "semdedup-no-samples": ("none", "semdedup", ["filter", "semdedup", "RUN", "--eps", "0.01"]),
    "dbp-no-samples": ("none", "dbp", ["filter", "dbp", "RUN", "--keep-fraction", "0.3"]),
    "dq-no-samples": ("none", "dq", ["filter", "dq", "RUN", "--keep-fraction", "0.3", "--per", "none"]),
    "random-no-samples": ("none", "random", ["filter", "random", "RUN", "--keep-fraction", "0.3"]),
    "neardup-no-samples": ("none", "neardup", ["filter", "neardup", "RUN", "--threshold", "0.9", "--descriptor",
                                               "image"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_empty_selection_gives_an_empty_stage_or_a_one_line_refusal(runs, tmp_path, capsys, case):
    kind, stage, command = CASES[case]
    run = copy_of(runs, kind, tmp_path)
    paths = {"RUN": run.path, "EVAL": runs[kind].path.parent / "eval.parquet"}
    code, out, err = run_cli(capsys, *(paths.get(a, a) for a in command))
    if code == 2:
        error_line(err)
        assert stage not in status(run) and set(status(run).values()) == {"current"}  # refused before recording
    else:
        assert code == 0, err
        assert json.loads(out.splitlines()[-1])["kept"] == 0
        assert status(run)[stage] == "current"
        con = connect(run)
        assert con.execute(f"SELECT count(*) FROM samples WHERE {stage}_keep").fetchone() == (0,)
        for view in stage_views(run, stage):  # its own tables: no rows, and columns to query
            assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,), view
    assert main(["filter", "random", str(run.path), "--keep-fraction", "0.5"]) == 0  # a later writer works
    assert main(["status", str(run.path)]) == 0


DQ = ["dq", "--keep-fraction", "0.3", "--bins", "2", "--per", "none"]
NEARDUP = ["neardup", "--threshold", "0.9", "--descriptor", "image"]


@pytest.mark.parametrize(("method", "where"), [(DQ, "CAST(caption AS INTEGER) > 0"), (NEARDUP, "width // 0 = 1"),
                                               (DQ, "error('no')"), (NEARDUP, "CAST(caption AS INTEGER) > 0")])
def test_a_predicate_that_fails_on_the_data_is_refused_and_records_nothing(runs, tmp_path, capsys, method, where):
    run = copy_of(runs, "planted", tmp_path)
    manifest = (run.path / "manifest.json").read_bytes()
    code, _, err = run_cli(capsys, "filter", method[0], run.path, *method[1:], "--where", where)
    assert code == 2 and "invalid --where predicate" in error_line(err)
    assert (run.path / "manifest.json").read_bytes() == manifest
    assert not (run.path / "scores" / method[0]).exists()


def test_a_stage_table_without_columns_or_unreadable_does_not_break_the_catalog(runs, tmp_path):
    run = copy_of(runs, "planted", tmp_path)
    assert main(["filter", "dq", str(run.path), "--keep-fraction", "0.3", "--bins", "2", "--per", "none"]) == 0
    pq.write_table(pa.table({}), run.path / "concepts" / "dq_bins.parquet")  # what an empty DQ wrote before
    assert main(["filter", "random", str(run.path), "--keep-fraction", "0.5"]) == 0
    assert "dq_bins" not in stage_views(run, "dq")
    (run.path / "concepts" / "dq_bins.parquet").write_bytes(b"not parquet")
    assert main(["filter", "random", str(run.path), "--keep-fraction", "0.4"]) == 0
    assert connect(run).execute("SELECT count(*) FILTER (dq_keep) FROM samples").fetchone() == (39,)
