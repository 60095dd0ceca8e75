"""Runners and restarts: Ray and the local loop agree, and a killed run resumes to the same catalog."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from curate.errors import UsageError
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.conftest import catalog_snapshot
from tests.shards import clean_shard, image_bytes, sample_members, write_tar


def _pool(folder, shards=4, per_shard=5):
    folder.mkdir()
    for i in range(shards):
        clean_shard(folder / f"{i:05d}.tar", per_shard, start=i * per_shard)
    write_tar(folder / "bad.tar", sample_members("k", caption=b"\xff") + sample_members("j", image=b"junk"))
    return folder


def test_rerun_of_a_finished_run_changes_nothing(tmp_path):
    pool = _pool(tmp_path / "pool", shards=2)
    run = RunDir(tmp_path / "run")
    first = ingest([str(pool)], run, progress=False)
    before = catalog_snapshot(run)
    assert ingest([str(pool)], run, progress=False) == first
    assert catalog_snapshot(run) == before
    assert run.manifest()["stages"]["ingest"]["shards_run"] == 0


def _big_pool(folder, shards=30, per_shard=40):
    folder.mkdir()
    for s in range(shards):
        members = []
        for i in range(per_shard):
            key = f"{s:05d}{i:04d}"
            members += sample_members(key, f"caption {key}", image_bytes((s * 8, i * 6, 99), size=(320, 240)), {})
        write_tar(folder / f"{s:05d}.tar", members)
    return folder


def test_killed_run_resumes_to_the_catalog_of_an_uninterrupted_run(tmp_path):
    pool = _big_pool(tmp_path / "pool")
    run = RunDir(tmp_path / "killed")
    command = [sys.executable, "-m", "curate.cli.main", "ingest", str(pool), "--run", str(run.path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = run.path / "_done" / "ingest"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and len(list(done.glob("*.json"))) < 3:
        time.sleep(0.01)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(done.glob("*.json")))
    assert 3 <= finished < 30, "the run should have been killed part-way"
    for path in run.path.rglob("*.parquet"):  # whatever is visible under a final name is complete
        pq.read_table(path)
    assert not (run.path / "catalog.duckdb").exists()

    with pytest.raises(UsageError, match="already holds the ingest stage made with other inputs"):
        ingest([str(pool / "0000[0-4].tar")], run, progress=False)  # recorded before the first shard ran
    resumed = ingest([str(pool)], run, progress=False)
    assert run.manifest()["stages"]["ingest"]["shards_run"] == 30 - finished
    assert not list(run.path.rglob("*.tmp-*"))
    reference = RunDir(tmp_path / "reference")
    assert ingest([str(pool)], reference, progress=False) == resumed
    assert catalog_snapshot(run) == catalog_snapshot(reference)


def test_a_script_without_a_main_guard_gets_the_pool_error_in_one_line_and_an_empty_catalog(tmp_path):
    clean_shard(tmp_path / "a.tar", 2)
    run = tmp_path / "run"
    script = tmp_path / "unguarded.py"  # --workers spawns processes that import this script again
    command = ["ingest", str(tmp_path / "a.tar"), "--run", str(run), "--workers", "2"]
    script.write_text(f"import sys\nfrom curate.cli.main import main\nsys.exit(main({command!r}))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    last = done.stderr.splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert last.startswith("curate: error: the --workers pool broke") and 'if __name__ == "__main__":' in last
    assert "being written by another curate process" not in done.stderr  # the workers say what is wrong too
    assert catalog_snapshot(RunDir(run))["samples"] == []  # a run with no samples file still has a catalog
    assert ingest([str(tmp_path / "a.tar")], RunDir(run), progress=False)["kept"] == 2  # and resumes
