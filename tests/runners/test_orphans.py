"""A `curate` command killed while its --workers pool is busy leaves no process behind: the pool's workers (and
multiprocessing's resource tracker) end within seconds, whether the command got SIGTERM (it stops its pool and
exits 143 with one line) or SIGKILL (the workers die with it)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the fix is Linux-only")
GONE_WITHIN = 5.0  # seconds


def children(pid: int) -> dict[int, str]:
    """Returns pid -> start time (from /proc/PID/stat) of every live process whose parent is `pid`."""
    found = {}
    for entry in os.listdir("/proc"):
        stat = _stat(int(entry)) if entry.isdigit() else None
        if stat is not None and stat[1] == str(pid) and stat[0] not in "ZX":
            found[int(entry)] = stat[19]
    return found


def _stat(pid: int) -> list[str] | None:
    """Returns the fields of /proc/PID/stat after the command name (state, ppid, ...), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int, started: str) -> bool:
    """Returns whether process `pid`, started at `started`, still runs (a zombie has ended)."""
    stat = _stat(pid)
    return stat is not None and stat[19] == started and stat[0] not in "ZX"


def open_writer(fifo: Path) -> int | None:
    """Returns a write descriptor of `fifo` once a process has it open for reading, else None."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_command_leaves_no_pool_worker_behind(tmp_path, sig):
    # Two shards that are FIFOs: each worker blocks reading its shard for as long as this test holds the writer.
    fifos = [tmp_path / f"{i}.tar" for i in range(2)]
    for fifo in fifos:
        os.mkfifo(fifo)
    command = subprocess.Popen([sys.executable, "-m", "curate.cli.main", "ingest", *map(str, fifos), "--run",
                                str(tmp_path / "run"), "--workers", "2"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    writers: list[int | None] = [None, None]
    workers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while None in writers and command.poll() is None and time.monotonic() < deadline:
            writers = [w if w is not None else open_writer(f) for w, f in zip(writers, fifos, strict=True)]
            time.sleep(0.05)
        assert None not in writers, f"the workers never opened their shards: {command.poll()}"
        workers = children(command.pid)  # the two workers, mid-task, and the resource tracker
        assert len(workers) >= 2
        command.send_signal(sig)
        command.wait(timeout=30)
        end = time.monotonic() + GONE_WITHIN
        while any(alive(p, s) for p, s in workers.items()) and time.monotonic() < end:
            time.sleep(0.05)
        left = [p for p, s in workers.items() if alive(p, s)]
        assert not left, f"processes of the killed command still run: {left}"
        if sig == signal.SIGTERM:
            assert command.returncode == 143
            assert command.stderr.read().splitlines()[-1] == "curate: terminated; rerun the same command to resume"
        else:
            assert command.returncode == -signal.SIGKILL
    finally:
        for pid, started in workers.items():  # leave nothing behind when the test fails
            if alive(pid, started):
                os.kill(pid, signal.SIGKILL)
        if command.poll() is None:
            command.kill()
            command.wait()
        for fd in writers:
            if fd is not None:
                os.close(fd)
