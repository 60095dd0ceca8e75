"""The command line: real subprocesses, one-line errors with exit code 2, results in each format."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.shards import clean_shard


def curate(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "curate.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
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
def test_bad_arguments_give_one_line_and_exit_code_2(args, message):
    result = curate(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_sql_error_is_one_line(run):
    result = curate("sql", run, "SELECT nope FROM samples")
    assert result.returncode == 2 and result.stderr.startswith("curate: error: SQL error:")
    assert result.stderr.count("\n") == 1


def test_sql_output_formats(run, tmp_path):
    as_json = json.loads(curate("sql", run, "SELECT key FROM samples ORDER BY key", "--format", "json").stdout)
    assert [r["key"] for r in as_json] == ["000000000", "000000001", "000000002"]
    as_csv = curate("sql", run, "SELECT key, width FROM samples ORDER BY key", "--format", "csv").stdout
    assert as_csv.splitlines() == ["key,width", "000000000,48", "000000001,48", "000000002,48"]
    out = tmp_path / "r.parquet"
    assert curate("sql", run, "SELECT * FROM samples", "--format", "parquet", "--out", out).returncode == 0
    assert pq.read_table(out).num_rows == 3
    table = curate("sql", run, "--saved", "accounting").stdout
    assert "read" in table and "kept" in table
