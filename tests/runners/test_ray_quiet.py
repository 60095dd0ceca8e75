"""A command on the Ray runner prints curate's one progress bar per stage and its result, not Ray's own logging
(Ray Data's execution plans and progress lines, a local Ray's start-up warnings), unless CURATE_RAY_VERBOSE asks."""

import os
import re
import subprocess
import sys

from tests.shards import clean_shard

# Ray's Python log lines: "2026-12-07 11:11:29,846\tINFO streaming_executor.py:215 -- ...", and its core's (C++):
# "[2026-12-07 19:13:50,159 E 24359 24359] core_worker.cc:2465: ..." (anywhere in a line: a progress bar may precede
# it)
RAY_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARNING) \S+\.py:\d+ -- "
                          r"|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] \S+:\d+: ")


def ingest_on_ray(tmp_path) -> subprocess.CompletedProcess:
    """Runs `curate ingest --runner ray` on a two-sample shard in a fresh process; returns it finished."""
    shard = clean_shard(tmp_path / "a.tar", 2)
    command = [sys.executable, "-m", "curate.cli.main", "ingest", str(shard), "--run", str(tmp_path / "run"),
               "--runner", "ray"]
    environment = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "CURATE_RAY_VERBOSE")}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)


def test_ray_logs_stay_off_the_console(tmp_path):
    done = ingest_on_ray(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [line for line in re.split("[\r\n]", done.stderr) if RAY_LOG_LINE.search(line)] == []
    assert "ingest: 100%" in done.stderr and "Running Dataset" not in done.stderr  # curate's bar, not Ray Data's
