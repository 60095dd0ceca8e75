"""Opening a run's catalog: relative paths resolve into the run folder, and a read-only connection reaches no
file outside it (no reading /etc/passwd, no COPY TO, no extension installs, no ATTACH of other databases)."""

from __future__ import annotations

import os
import re

import duckdb

from curate.errors import UsageError
from curate.rundir import MANIFEST, RunDir

CATALOG = "catalog.duckdb"
# The views name these relative to the run folder; DuckDB checks the relative name before resolving it.
RUN_FOLDERS = ("samples/", "quarantine/", "scores/", "_done/", "concepts/", "embeddings/", "evaluations/",
               "distilled/")
# DuckDB names the holder of a conflicting lock: "Conflicting lock is held in /usr/bin/python3 (PID 1234)".
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?)(?: by user \S+)?\.? *(?:See also|$)")


def connect(run: str | os.PathLike | RunDir, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Returns a connection to the run's catalog with its relative paths resolving into the run folder; a
    read-only one is confined to the run folder. Raises FileNotFoundError when the run has no catalog, and
    UsageError when another process holds the catalog open for writing."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    path = run.path / CATALOG
    if read_only and not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    config = {"file_search_path": str(run.path), "autoinstall_known_extensions": False,
              "autoload_known_extensions": False}
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        holder = LOCK_HOLDER.search(str(exc))
        if holder is None:
            raise
        raise UsageError(f"{path} is open for writing in another process ({holder.group(1)}); close it there "
                         "(open catalogs read-only: duckdb -readonly), then rerun") from None
    if read_only:
        confine(con, run)
    return con


def confine(con: duckdb.DuckDBPyConnection, run: RunDir) -> None:
    """Limits the connection's database to files inside the run folder and locks that setting; a database
    this process already confined (DuckDB shares one per file) is left as it is."""
    if con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0]:
        return
    con.execute("SET allowed_directories = $folders", {"folders": [f"{run.path}{os.sep}", *RUN_FOLDERS]})
    con.execute("SET allowed_paths = $files", {"files": [MANIFEST]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
