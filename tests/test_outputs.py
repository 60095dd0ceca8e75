"""Issue 26's repros of where commands write: no --out lands inside a run or over its sources, --overwrite replaces
only curate's own earlier output, the catalog reads its own run from any current directory and any run path, OS
errors are one line, and killed writes leave nothing behind for long."""

import json
import os
import random
import shutil
import subprocess
import sys
import uuid

import duckdb
import pyarrow.parquet as pq
import pytest

import curate
from curate.catalogs import build_catalog
from curate.cli.main import main
from curate.errors import UsageError
from curate.export.core import export_output, export_subset
from curate.outputs import Output, remove_stale_staging, staged_folder
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.conftest import catalog_snapshot
from tests.shards import clean_shard, ingested_tars


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    return ingested_tars(tmp_path_factory.mktemp("outputs"), shards=2, per_shard=3)


def curate_cli(capsys, *argv) -> tuple[int, str]:
    """Returns the exit code and standard error of `curate ARGV`."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("target", ["samples/00000.parquet", "samples/x.parquet", "manifest.json", "report/a.csv"])
def test_sql_out_inside_the_run_is_refused_and_the_catalog_is_unchanged(run, capsys, target):
    before = catalog_snapshot(run)
    files = sorted(p for p in run.path.rglob("*") if p.is_file())
    code, err = curate_cli(capsys, "sql", run.path, "SELECT * FROM ingested WHERE false", "--format", "parquet",
                           "--out", run.path / target, "--overwrite")
    assert code == 2 and "inside the curate run folder" in err and len(err.strip().splitlines()) == 1
    assert sorted(p for p in run.path.rglob("*") if p.is_file()) == files and catalog_snapshot(run) == before
    assert main(["status", str(run.path)]) == 0


def test_sql_out_replaces_a_file_only_with_overwrite_and_never_a_source_shard(run, capsys, tmp_path):
    out = tmp_path / "rows.parquet"
    assert curate_cli(capsys, "sql", run.path, "SELECT uid FROM samples", "--format", "parquet", "--out", out)[0] == 0
    assert pq.read_table(out).num_rows == 6
    code, err = curate_cli(capsys, "sql", run.path, "SELECT 1 AS x", "--format", "csv", "--out", out)
    assert code == 2 and "pass --overwrite" in err and pq.read_table(out).num_rows == 6
    assert curate_cli(capsys, "sql", run.path, "SELECT 1 AS x", "--format", "csv", "--out", out, "--overwrite")[0] == 0
    assert out.read_text() == "x\n1\n" and [p.name for p in tmp_path.iterdir()] == ["rows.parquet"]
    shard = json.loads((run.path / "manifest.json").read_text())["stages"]["ingest"]["config"]["inputs"][0]
    code, err = curate_cli(capsys, "sql", run.path, "SELECT 1", "--out", shard, "--overwrite")
    assert code == 2 and "which this command reads" in err


def test_the_catalog_reads_its_own_run_from_any_current_directory(run, tmp_path, monkeypatch, capsys):
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "secret.txt").write_text("the secret")
    other = ingested_tars(tmp_path / "other", shards=1, per_shard=2)
    for cwd in (tmp_path, other.path):
        monkeypatch.chdir(cwd)
        for query in ("SELECT content FROM read_text('samples/secret.txt')",
                      f"SELECT content FROM read_text('{tmp_path}/samples/secret.txt')",
                      "SELECT count(*) FROM samples WHERE uid IN (SELECT content FROM read_text('samples/*.txt'))"):
            code, err = curate_cli(capsys, "sql", run.path, query)
            assert code == 2 and "the secret" not in err
        assert curate.open(run.path).arrow("SELECT count(*) AS n FROM samples")["n"][0].as_py() == 6
        summary = export_subset(run, "uid IS NOT NULL", "datacomp", tmp_path / f"out-{uuid.uuid4().hex}",
                                progress=False)
        assert summary["samples"] == 6


# Run folder names from a grammar of the characters DuckDB's paths and globs treat specially.
AWKWARD = [",", "'", '"', " ", "é", "\n", "*", "[", "]", "%", "?", "{", "}", "$", ";", "é1,2"]


def awkward_names(seed: int, count: int) -> list[str]:
    """Returns `count` folder names that together hold every awkward character, shuffled with `seed` and each
    followed by a letter."""
    characters = AWKWARD.copy()
    random.Random(seed).shuffle(characters)
    return [f"r{i}" + "".join(c + "a" for c in characters[i::count]) for i in range(count)]


@pytest.mark.parametrize("name", ["a,b", *awkward_names(seed=26, count=2)])
def test_a_run_path_of_awkward_characters_ingests_queries_and_exports(tmp_path, name):
    shard = clean_shard(tmp_path / "s.tar", 2)
    run = RunDir(tmp_path / "runs" / name)
    assert ingest([str(shard)], run, progress=False)["kept"] == 2
    assert ingest([str(shard)], run, progress=False)["kept"] == 2  # the rerun too (issue 26: it failed each time)
    assert curate.open(run.path).arrow("SELECT count(*) AS n FROM samples")["n"][0].as_py() == 2
    assert export_subset(run, None, "webdataset", tmp_path / "out", progress=False)["samples"] == 2


def test_a_run_path_with_a_backslash_is_a_one_line_refusal(tmp_path, capsys):
    shard = clean_shard(tmp_path / "s.tar", 1)
    code, err = curate_cli(capsys, "ingest", shard, "--run", tmp_path / "a\\b")
    assert code == 2 and "backslash" in err and not (tmp_path / "a\\b").exists()


def places(run: RunDir, shard: str, seed: int, count: int) -> list[tuple[str, bool]]:
    """Returns `count` output paths drawn in and around the run, each with whether curate may write there."""
    generator = random.Random(seed)
    base = run.path.parent
    choices = [
        (lambda: run.path / generator.choice(["", "samples", "scores/x", "_done", "new/deeper"]), False),
        (lambda: run.path / "samples" / generator.choice(["00000.parquet", "x.parquet"]), False),
        (lambda: base, False),  # holds the run
        (lambda: shard, False),
        (lambda: base.parent, False),  # holds the run, two levels up
        (lambda: base / f"sibling-{generator.randrange(100)}", True),
        (lambda: base / f"sibling-{generator.randrange(100)}" / "deeper", True),
    ]
    drawn = [generator.choice(choices) for _ in range(count)]
    return [(str(make()), allowed) for make, allowed in drawn]


def test_output_paths_drawn_in_and_around_the_run_are_refused_exactly_where_they_should_be(run):
    shard = json.loads((run.path / "manifest.json").read_text())["stages"]["ingest"]["config"]["inputs"][0]
    before = catalog_snapshot(run)
    for path, allowed in places(run, shard, seed=0, count=60):
        for output in (export_output(run), Output(folder=False, protected=export_output(run).protected)):
            if allowed:
                output.check(path, overwrite=True)
            else:
                with pytest.raises(UsageError):
                    output.check(path, overwrite=True)
    assert catalog_snapshot(run) == before


def test_a_killed_exports_staging_folder_and_a_failed_catalog_build_are_cleaned_up(run, tmp_path):
    out = tmp_path / "subset"
    stale = tmp_path / f".subset.tmp-{uuid.uuid4().hex}"
    stale.mkdir()
    (stale / "00000.tar").write_bytes(b"half")
    mine = tmp_path / f".subset.tmp-{'0' * 31}x"  # not a name curate gives: a user's folder, left alone
    mine.mkdir()
    with staged_folder(out, overwrite=False) as live:  # a write in progress: its folder is locked
        assert remove_stale_staging(out) == 0 and live.exists()
    assert not stale.exists() and mine.exists() and out.is_dir()
    export_subset(run, None, "datacomp", out, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name, "subset"]
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    leftovers = [copy / f"catalog.duckdb.tmp-{uuid.uuid4().hex}", copy / f"catalog.duckdb.tmp-{uuid.uuid4().hex}.wal"]
    for path in leftovers:
        path.write_bytes(b"killed")
    with RunDir(copy).writing():
        build_catalog(RunDir(copy))
    assert not any(p.exists() for p in leftovers) and (copy / "catalog.duckdb").exists()


def test_a_failed_catalog_build_leaves_no_file(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    next((copy / "samples").glob("*.parquet")).write_bytes(b"not parquet")
    with pytest.raises(duckdb.Error):
        build_catalog(RunDir(copy))
    assert not list(copy.glob("catalog.duckdb.tmp-*"))


def read_only_mount_works() -> bool:
    """Returns whether this machine lets a test bind-mount a folder read-only in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp"],
                           capture_output=True)
    return probe.returncode == 0


def run_read_only(folder, *argv) -> subprocess.CompletedProcess:
    """Runs `python -m curate.cli.main ARGV` with `folder` mounted read-only, as a read-only disk or share would."""
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"')
    command = ["unshare", "-m", "sh", "-c", script, "sh", str(folder), sys.executable, "-m", "curate.cli.main",
               *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": os.getcwd()})


@pytest.mark.skipif(not read_only_mount_works(), reason="needs unshare and mount (root in a mount namespace)")
def test_writers_on_a_read_only_run_and_exports_under_a_read_only_folder_are_one_line_errors(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    for argv in (["filter", "random", copy, "--keep-fraction", "0.5"],
                 ["export", copy, "--format", "datacomp", "--out", tmp_path / "locked" / "subset"]):
        (tmp_path / "locked").mkdir(exist_ok=True)
        done = run_read_only(copy if argv[0] == "filter" else tmp_path / "locked", *argv)
        assert done.returncode in (1, 2) and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "read-only" in done.stderr.lower(), done.stderr
    assert not list((tmp_path / "locked").iterdir())



@pytest.mark.parametrize("command", [
    ["synth", "--out", "{run}/pool", "--samples", "10"], ["report", "{run}", "--out", "{run}/../{name}/plots"],
    ["train-dfn", "{shard}", "--out", "{run}/dfn"], ["train-mae", "{shard}", "--out", "{run}/samples/mae"],
    ["train-copy-detector", "{run}", "--out", "{run}/_done/copy"],
    ["evaluate", "{run}", "--heldout", "{shard}", "--out", "{run}/evaluations/mine.json"],
])
def test_every_out_inside_a_run_is_a_one_line_refusal_that_writes_nothing(run, capsys, command):
    shard = json.loads((run.path / "manifest.json").read_text())["stages"]["ingest"]["config"]["inputs"][0]
    files = sorted(run.path.rglob("*"))
    argv = [a.format(run=run.path, name=run.path.name, shard=shard) for a in command]
    code, err = curate_cli(capsys, *argv)
    assert code == 2 and "inside the curate run folder" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(run.path.rglob("*")) == files


def test_a_manifest_written_over_is_a_one_line_error(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    (copy / "manifest.json").write_text('[{"uid": "x"}]')  # as `sql --out RUN/manifest.json --format json` once did
    for argv in (["status", copy], ["filter", "random", copy, "--keep-fraction", "0.5"]):
        code, err = curate_cli(capsys, *argv)
        assert code == 2 and "not a curate run manifest" in err and len(err.strip().splitlines()) == 1
