"""Ray's core (C++) log lines kept off the console: while a block runs, this process's stderr goes through a thread
that forwards everything but those lines.

Ray's core worker writes lines at ERROR and above to the process's stderr besides its log file, and no setting
turns that off without printing a line of its own (RAY_BACKEND_LOG_LEVEL). Ray Data starts every actor pool in a
way its core worker always reports as an error (its constructor arguments in the object store, with restarts
allowed: https://github.com/ray-project/ray/issues/53727), although Ray Data holds them for the pool's life. The
lines still reach Ray's session logs; CURATE_RAY_VERBOSE shows them here too.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

# "[2026-12-07 19:13:50,159 E 24359 24359] core_worker.cc:2465: ..." up to its newline, wherever it starts (a
# progress bar may precede it on the same line)
CORE_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] [\w./-]+:\d+: [^\n]*\n")
CORE_START = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] ")
JOIN_SECONDS = 5.0


def _forward(source: int, target: int) -> None:
    """Copies `source` to `target` until end of file, without Ray's core log lines; a line that began but has not
    ended is held back until it does."""
    pending = b""
    while chunk := os.read(source, 65536):
        pending = CORE_LINE.sub(b"", pending + chunk)
        started = CORE_START.search(pending)
        cut = started.start() if started and b"\n" not in pending[started.start():] else len(pending)
        if cut:
            os.write(target, pending[:cut])
        pending = pending[cut:]
    if pending:
        os.write(target, pending)
    os.close(source)


@contextlib.contextmanager
def core_logs_off(enabled: bool = True) -> Iterator[None]:
    """While the block runs, drops Ray's core log lines from this process's stderr (nothing when not `enabled`);
    yields nothing."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    read, write = os.pipe()
    console = os.dup(2)
    os.dup2(write, 2)
    os.close(write)
    thread = threading.Thread(target=_forward, args=(read, console), daemon=True, name="ray-core-logs")
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console, 2)  # the pipe's last writer closed: the thread forwards what is left and ends
        thread.join(JOIN_SECONDS)
        if not thread.is_alive():
            os.close(console)
