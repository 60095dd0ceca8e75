"""The command line: real processes (`python -m curate.cli.main`, each forked from one interpreter that imported
curate once: benchmarks/forks.py), one-line errors with exit code 2, results in each format."""

import json

import pyarrow.parquet as pq
import pytest

from tests.benchmarks import bench_module
from tests.shards import clean_shard


@pytest.fixture(scope="module")
def forks(tmp_path_factory):
    with bench_module("forks.py").ForkServer(tmp_path_factory.mktemp("forks")) as server:
        yield server


@pytest.fixture(scope="module")
def curate(forks):
    """Returns a function that runs `curate ARGS` to its end: its exit code, stdout and stderr."""
    return lambda *args, cwd=None: forks.run(list(args), cwd=cwd)


@pytest.fixture(scope="module")
def run(tmp_path_factory, curate):
    folder = tmp_path_factory.mktemp("cli")
    clean_shard(folder / "00000.tar", 3)
    result = curate("ingest", folder / "00000.tar", "--run", folder / "run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["kept"] == 3
    return folder / "run"


@pytest.mark.parametrize("args,message", [
    (["ingest", "/no/such/shards*.tar", "--run", "/tmp/x"], "no shards found"),
    (["ingest", "x.tar", "--run", "/tmp/x", "--runner", "spark"], "invalid choice"),
    (["sql", "/no/such/run", "SELECT 1"], "not a run folder"),
    (["export", "/no/such/run", "--format", "zip", "--out", "/tmp/y"], "invalid choice"),
    (["synth", "--out", "/tmp/z", "--samples", "0"], "invalid positive_int"),
    (["frobnicate"], "invalid choice"),
    # a command that runs nothing on a runner refuses its options instead of ignoring them
    (["sql", "/tmp/x", "SELECT 1", "--runner", "ray"], "unrecognized arguments: --runner"),
    (["filter", "semdedup", "/tmp/x", "--eps", "0.1", "--workers", "0"], "invalid positive_int value: '0'"),
    (["filter", "dfn", "/tmp/x", "--keep-fraction", "1.5"], "--keep-fraction must be in (0, 1], got 1.5"),
])
def test_bad_arguments_give_one_line_and_exit_code_2(curate, args, message):
    result = curate(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_sql_error_is_one_line(curate, run):
    result = curate("sql", run, "SELECT nope FROM samples")
    assert result.returncode == 2 and result.stderr.startswith("curate: error: SQL error:")
    assert result.stderr.count("\n") == 1


def test_sql_output_formats(curate, run, tmp_path):
    as_json = json.loads(curate("sql", run, "SELECT key FROM samples ORDER BY key", "--format", "json").stdout)
    assert [r["key"] for r in as_json] == ["000000000", "000000001", "000000002"]
    as_csv = curate("sql", run, "SELECT key, width FROM samples ORDER BY key", "--format", "csv").stdout
    assert as_csv.splitlines() == ["key,width", "000000000,48", "000000001,48", "000000002,48"]
    out = tmp_path / "r.parquet"
    assert curate("sql", run, "SELECT * FROM samples", "--format", "parquet", "--out", out).returncode == 0
    assert pq.read_table(out).num_rows == 3
    table = curate("sql", run, "--saved", "accounting").stdout
    assert "read" in table and "kept" in table
