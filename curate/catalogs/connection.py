"""Opening a run's catalog: its views read the run folder by absolute path, whatever the current directory, and a
read-only connection reaches no file outside it (no reading /etc/passwd, no COPY TO, no extension installs, no
ATTACH of other databases)."""

from __future__ import annotations

import os
import re

import duckdb

from curate.errors import UsageError
from curate.rundir import MANIFEST, RunDir

CATALOG = "catalog.duckdb"
ATTACHED = "catalog"  # the name a connection knows the catalog by, as DuckDB names a file it opens
# Each connection sets this variable to the run folder (as a glob pattern); the views read `<it>/samples/...`. A plain
# DuckDB that opens the catalog has no such variable, and its views fall back to the current directory.
ROOT_VARIABLE = "curate_run"
ROOT = f"coalesce(getvariable('{ROOT_VARIABLE}'), '.')"
# DuckDB expands these in any path it reads, the folder part included; '[c]' matches c alone.
GLOB_CHARACTERS = "*?["
# What DuckDB may hold of a query's hash tables and sorts before it spills them to files in the run folder's
# DUCKDB_SPILL (a pass over a 10M-sample catalog needs more than this machine's share; the default, 80% of RAM, would
# let one driver take the machine).
MEMORY_VARIABLE = "CURATE_DUCKDB_MEMORY"
DEFAULT_MEMORY = "1GB"
DUCKDB_SPILL = ".duckdb_spill"
# DuckDB names the holder of a conflicting lock: "Conflicting lock is held in /usr/bin/python3 (PID 1234)".
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?)(?: by user \S+)?\.? *(?:See also|$)")


def glob_escaped(path: str) -> str:
    """Returns `path` as a DuckDB glob pattern that matches that path alone."""
    return "".join(f"[{c}]" if c in GLOB_CHARACTERS else c for c in path)


def run_file(relative: str) -> str:
    """Returns the SQL expression of the path of `relative` (a constant of curate's, globs allowed) inside the run
    folder of the querying connection."""
    return f"{ROOT} || '/{relative}'"


def open_database(path: str, run: RunDir, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Returns a connection to the DuckDB file at `path` (or ":memory:") whose run_file() paths resolve into `run`'s
    folder, and whose queries hold at most CURATE_DUCKDB_MEMORY (default 1GB) before spilling into the run folder. A
    file is attached, as `catalog` and the default database, to a new in-memory database of this connection's own:
    DuckDB shares one database per file path among a process's connections, so one held open (a notebook's) would
    otherwise hand every later connection the catalog it read before a rebuild replaced it."""
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("SET memory_limit = $limit", {"limit": os.environ.get(MEMORY_VARIABLE) or DEFAULT_MEMORY})
    except duckdb.Error as exc:
        con.close()
        raise UsageError(f"{MEMORY_VARIABLE} must be a size such as 2GB: {exc}".splitlines()[0]) from None
    con.execute("SET temp_directory = $spill", {"spill": str(run.path / DUCKDB_SPILL)})
    con.execute("SET enable_progress_bar = false")  # a stage shows curate's one bar, not DuckDB's
    if path != ":memory:":
        try:
            con.execute(f"ATTACH $path AS {ATTACHED}{' (READ_ONLY)' if read_only else ''}", {"path": path})
        except BaseException:
            con.close()
            raise
        con.execute(f"USE {ATTACHED}")
    con.execute(f"SET VARIABLE {ROOT_VARIABLE} = $root", {"root": glob_escaped(str(run.path))})
    return con


def connect(run: str | os.PathLike | RunDir, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Returns a connection to the run's catalog with its views reading the run folder; a read-only one is confined
    to the run folder. Raises FileNotFoundError when the run has no catalog, and UsageError when another process
    holds the catalog open for writing.

    A connection shows the catalog as it was when the connection opened; every stage run replaces the file with a
    rebuilt one. Connections opened later, and the stage runs themselves, see the new catalog even while an older
    connection stays open in this process; the held connection keeps the views it opened with, which read the
    run's files as they are now: it lacks the columns of stages run since, and a query on a stage those runs
    invalidated (its files deleted) fails with DuckDB's "No files found". Open a new connection after a stage runs."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    path = run.path / CATALOG
    if read_only and not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        con = open_database(str(path), run, read_only)
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
    """Limits the connection's database to files inside the run folder and locks that setting; returns nothing. A
    database already confined is left as it is. Every entry is absolute: DuckDB would resolve a relative one
    against the current directory, not the run."""
    if con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0]:
        return
    folder = str(run.path)
    # DuckDB checks the path as the view spells it, so the glob-escaped spelling is allowed too.
    folders = sorted({f"{folder}{os.sep}", f"{glob_escaped(folder)}{os.sep}"})
    con.execute("SET allowed_directories = $folders", {"folders": folders})
    con.execute("SET allowed_paths = $files", {"files": sorted({f"{p}{os.sep}{MANIFEST}" for p in
                                                                 (folder, glob_escaped(folder))})})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
