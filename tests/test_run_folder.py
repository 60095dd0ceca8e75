"""The run folder belongs to one writer at a time and to curate alone: a second writer is refused in one line
naming the holder, a killed holder's lock is taken over, a file or a foreign folder is refused as --run, and
curate deletes only the temporaries it wrote."""

import os
import signal
import subprocess
import sys

import pytest

from curate.cli.main import main
from curate.errors import UsageError
from curate.rundir import LOCK, RunDir
from curate.stages.ingest import ingest
from tests.shards import clean_shard, ingested_tars

HOLD = ("import sys; from curate.rundir import RunDir\n"
        "with RunDir(sys.argv[1]).writing():\n"
        "    print('held', flush=True); sys.stdin.read()")


def hold_lock(path) -> subprocess.Popen:
    """Starts a process that holds the run's writer lock until its standard input closes."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path, capsys):
    run = ingested_tars(tmp_path, shards=1, per_shard=3)
    holder = hold_lock(run.path)
    try:
        assert main(["filter", "basic", str(run.path), "--min-side", "8"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"pid {holder.pid}" in error and "being written by another" in error
        with pytest.raises(UsageError, match=f"pid {holder.pid}"):
            ingest([str(tmp_path / "*.tar")], run, progress=False)
        assert main(["sql", str(run.path), "SELECT count(*) AS n FROM samples"]) == 0  # readers are not held up
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert main(["filter", "basic", str(run.path), "--min-side", "8"]) == 0  # the dead holder's lock is free
    assert (run.path / LOCK).read_text() == ""


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.writing(), run.writing():
        assert (run.path / LOCK).read_text().startswith(f"pid {os.getpid()} on ")
    with run.writing():
        pass


def test_a_file_or_a_foreign_folder_is_not_a_run(tmp_path, capsys):
    clean_shard(tmp_path / "a.tar", 2)
    (tmp_path / "file").write_text("mine")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"mine")
    for run, message in (("file", "is a file"), ("photos", "holds other files and is not a curate run")):
        assert main(["ingest", str(tmp_path / "a.tar"), "--run", str(tmp_path / run)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error
    assert (tmp_path / "file").read_text() == "mine" and os.listdir(tmp_path / "photos") == ["cat.jpg"]
    (tmp_path / "empty").mkdir()
    assert main(["ingest", str(tmp_path / "a.tar"), "--run", str(tmp_path / "empty")]) == 0


def test_a_run_killed_while_writing_its_first_manifest_is_still_curates(tmp_path):
    clean_shard(tmp_path / "a.tar", 2)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / LOCK).write_text("")
    (killed / f"manifest.json.tmp-{'ab' * 16}").write_text('{"stages"')
    assert main(["ingest", str(tmp_path / "a.tar"), "--run", str(killed)]) == 0
    assert sorted(p.name for p in killed.iterdir() if ".tmp-" in p.name) == []


def test_only_curates_own_temporaries_are_deleted(tmp_path):
    run = ingested_tars(tmp_path, shards=1, per_shard=2)
    mine = [run.path / "notes.tmp-old", run.path / "samples" / "x.tmp-1234"]
    for path in mine:
        path.write_text("the user's")
    leftover = run.path / "samples" / f"0.parquet.tmp-{'ab' * 16}"
    leftover.write_bytes(b"half a parquet")
    assert run.remove_temporaries() == 1
    assert not leftover.exists() and all(p.read_text() == "the user's" for p in mine)
