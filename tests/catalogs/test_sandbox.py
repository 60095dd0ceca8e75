"""The catalog reaches nothing outside its run: user SQL cannot read other files, write files, install extensions
or attach databases; a plain DuckDB opening it from another folder gets an error, not that folder's rows; a
catalog held open for writing elsewhere is a one-line error."""

import subprocess
import sys

import duckdb
import pytest

from curate.api import open as open_run
from curate.catalogs import connect
from curate.errors import UsageError
from tests.shards import ingested_tars

OUTSIDE = ["SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM read_blob('/etc/hostname')",
           "SELECT * FROM glob('/*')", "SELECT * FROM read_csv('/etc/hosts')",
           "SELECT * FROM read_text('samples/../../../../../../etc/passwd')"]
NOT_READS = ["COPY (SELECT 1) TO 'out.csv'", "INSTALL httpfs", "LOAD httpfs", "ATTACH 'other.duckdb'",
             "SET enable_external_access = true", "CREATE TABLE t AS SELECT 1", "SELECT 1; SELECT 2",
             "PRAGMA disable_checkpoint_on_shutdown"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sandbox")
    return ingested_tars(folder / "a", shards=1, per_shard=3), ingested_tars(folder / "b", shards=2, per_shard=4)


@pytest.mark.parametrize("query", OUTSIDE)
def test_user_sql_reads_no_file_outside_the_run(runs, query):
    with pytest.raises(UsageError, match="SQL error: Permission Error"):
        open_run(runs[0].path).arrow(query)
    con = connect(runs[0])  # the connection itself is confined, whatever statement checks sit above it
    with pytest.raises(duckdb.PermissionException):
        con.execute(query).fetchall()


@pytest.mark.parametrize("query", NOT_READS)
def test_only_read_statements_run(runs, query, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"not allowed|one SQL statement") as refused:
        open_run(runs[0].path).arrow(query)
    assert "\n" not in str(refused.value) and not any(tmp_path.iterdir())


def test_a_predicate_cannot_reach_outside_either(runs, tmp_path):
    run = open_run(runs[0].path)
    with pytest.raises(UsageError, match="Permission Error"):
        run.samples("uid IN (SELECT content FROM read_text('/etc/passwd'))").count()
    assert run.samples("uid IN (SELECT uid FROM samples)").count() == 3
    result = subprocess.run([sys.executable, "-m", "curate.cli.main", "sql", str(runs[0].path), "SELECT uid FROM "
                             "samples", "--format", "csv", "--out", str(tmp_path / "uids.csv")], capture_output=True)
    assert result.returncode == 0 and len((tmp_path / "uids.csv").read_text().splitlines()) == 4


def plain_duckdb_count(catalog, cwd) -> subprocess.CompletedProcess:
    code = f"import duckdb; print(duckdb.connect({str(catalog)!r}, read_only=True).sql('SELECT count(*) FROM samples'))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def test_a_plain_duckdb_reads_the_run_from_its_folder_and_refuses_from_another(runs):
    (a, b) = runs
    own = plain_duckdb_count(a.path / "catalog.duckdb", a.path)
    assert own.returncode == 0 and "│            3 │" in own.stdout
    other = plain_duckdb_count(a.path / "catalog.duckdb", b.path)  # b's samples/ would give 8
    assert other.returncode != 0 and "belongs to another run folder" in other.stderr
    assert "8" not in other.stdout


def test_a_catalog_held_for_writing_elsewhere_is_a_one_line_error(runs):
    catalog = runs[1].path / "catalog.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; con = duckdb.connect({str(catalog)!r}); "
                               "print('held', flush=True); sys.stdin.read()"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = subprocess.run([sys.executable, "-m", "curate.cli.main", "sql", str(runs[1].path), "SELECT 1"],
                                capture_output=True, text=True)
    finally:
        holder.communicate("")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "is open for writing in another process" in result.stderr


def test_a_query_larger_than_its_memory_spills_inside_the_run_and_cleans_up(runs, monkeypatch):
    run = runs[0]
    monkeypatch.setenv("CURATE_DUCKDB_MEMORY", "100MB")
    con = connect(run)
    settings = "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    assert con.execute(settings).fetchone() == ("95.3 MiB", str(run.path / ".duckdb_spill"))
    # a sort of ~130 MB of strings: more than the limit, so DuckDB spills it to the run's spill folder
    query = "SELECT max(s) FROM (SELECT md5(i::VARCHAR) || md5(i::VARCHAR) AS s FROM range(2000000) t(i) ORDER BY s)"
    assert con.execute(query).fetchone()[0].startswith("ffff")
    con.close()
    assert not (run.path / ".duckdb_spill").exists()
    monkeypatch.setenv("CURATE_DUCKDB_MEMORY", "lots")
    with pytest.raises(UsageError, match=r"^CURATE_DUCKDB_MEMORY must be a size such as 2GB: [^\n]*$"):
        connect(run)
