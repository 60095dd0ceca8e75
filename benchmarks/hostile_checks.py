"""The checks of benchmarks/reliability_hostile.py: a CLI command run as a user runs it, whether it crashed, what it
lost (files of the run, of its sources and of the user, the catalog's rows, temporaries left behind) and whether the
run is still usable after it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENV = os.environ | {"OMP_NUM_THREADS": "1"}
CLI = (sys.executable, "-m", "curate.cli.main")
TIMEOUT = 300
# Not part of a message: tqdm's lines, ending in "[00:01<00:00, 2.4shard/s]" or "[00:00, ?task/s]", and the advice
# faiss prints on its own whenever k-means has few points per centroid.
CHATTER = re.compile(r"\[\d+:\d\d(<[\d:?]+)?, [^\]]*/s\]$|^WARNING clustering \d+ points to \d+ centroids")
# Temporary names curate gives: "<name>.tmp-<32 hex>" in a run, ".<name>.tmp-" or ".old-<32 hex>" beside an --out.
TEMPORARY = re.compile(r"\.(tmp|old)-[0-9a-f]{32}")
# The lock file holds who writes the run, not data.
LOCK = ".curate.lock"
# The run's own files a writer rewrites in place (every other file it writes is new).
WRITER_FILES = ("manifest.json", "catalog.duckdb")
VIEWS = ("quarantine", "shards", "accounting")
# The line that names an error: "curate: error: ...", "TypeError: ...", "_duckdb.IOException: ...".
ERROR = re.compile(r"[\w.]+: ")


class Dealer(random.Random):
    """A seeded generator that also deals: each item of a list once, in a random order, before any comes again (so
    that a few cases still cover every kind of a class)."""

    def __init__(self, seed: str):
        super().__init__(seed)
        self.decks: dict[tuple, list] = {}

    def deal(self, items: tuple):
        """Returns the next item of a shuffled deck of `items`, shuffled anew once it is dealt out."""
        if not self.decks.get(items):
            self.decks[items] = self.sample(items, len(items))
        return self.decks[items].pop()


def message_lines(stderr: str) -> list[str]:
    """Returns the non-empty lines of a command's standard error, progress bars and faiss's advice left out."""
    lines = (line.split("\r")[-1].strip() for line in stderr.split("\n"))
    return [line for line in lines if line and not CHATTER.search(line)]


def crash(done: subprocess.CompletedProcess) -> str | None:
    """Returns why a finished command counts as a crash (an exit code other than 0, 1 or 2, a traceback, or a refusal
    of more than one line), or None."""
    lines = message_lines(done.stderr)
    if done.returncode not in (0, 1, 2):
        return f"exit code {done.returncode}: {error_line(done.stderr)}"
    if "Traceback" in done.stderr:
        return f"traceback: {error_line(done.stderr)}"
    if done.returncode != 0 and len(lines) > 1:
        return f"{len(lines)} lines: {lines[0][:200]}"
    return None


def snapshot(root: Path) -> dict[str, str]:
    """Returns relative path -> content hash ('dir' for a folder, 'link:' + target for a link) of everything under
    `root`, the run lock files left out; an empty dict when `root` does not exist."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = f"link:{os.readlink(path)}"
            elif name in dirs:
                state[key] = "dir"
            elif name != LOCK:
                state[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return state


def catalog_rows(run: Path, columns: list[str] | None = None) -> dict | None:
    """Returns a digest of the rows of the run's samples view (its `columns`, default all of them; the names under
    'columns'), quarantine, shards and accounting; None when the catalog cannot be read."""
    import duckdb

    from curate.catalogs import connect

    try:
        con = connect(run)
    except Exception:  # an unreadable catalog makes the run unusable, which check_usable measures
        return None
    try:
        columns = columns or [c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE samples)").fetchall()]
        queries = {"samples": f"SELECT {', '.join(map(quoted, columns))} FROM samples"}
        queries |= {view: f"SELECT * FROM {view}" for view in VIEWS}
        # repr: a NaN equals itself there
        rows = {v: hashlib.sha1(repr(con.execute(f"{q} ORDER BY ALL").fetchall()).encode()).hexdigest()
                for v, q in queries.items()}
        return rows | {"columns": columns}
    except duckdb.Error:
        return None
    finally:
        con.close()


def quoted(column: str) -> str:
    """Returns `column` as a quoted SQL identifier."""
    return '"' + column.replace('"', '""') + '"'


def under(path: Path) -> Callable[[Path], bool]:
    """Returns a test of whether a path is `path` or lies inside it."""
    return lambda p: p == path or path in p.parents


def nothing(path: Path) -> bool:
    """Returns False: the command may change no file."""
    return False


class Watch:
    """The files under some folders, and a run's catalog rows, before a command: what it lost is told against them."""

    def __init__(self, roots: tuple[Path, ...], run: Path | None = None):
        self.roots, self.run = roots, run
        self.files = {root: snapshot(root) for root in roots}
        self.rows = catalog_rows(run) if run is not None else None

    def losses(self, may_change: Callable[[Path], bool] = nothing, writer: bool = False) -> list[str]:
        """Returns what was lost since: files or folders that vanished or changed though `may_change` does not
        allow it, new ones inside the run (a `writer` may add files and rewrite its manifest and catalog), a
        temporary left behind anywhere, and catalog rows that changed."""
        lost = []
        for root, before in self.files.items():
            after = snapshot(root)
            for key, digest in before.items():
                path = root / key
                if after.get(key) != digest and not may_change(path) and not (writer and self.owned(path)):
                    lost.append(f"{path} {'changed' if key in after else 'vanished'}")
            for key in after.keys() - before.keys():
                path = root / key
                if TEMPORARY.search(path.name):
                    lost.append(f"{path} left behind")
                elif self.inside_run(path) and not (writer or may_change(path)):
                    lost.append(f"{path} appeared in the run")
        return lost + self.changed_rows()

    def owned(self, path: Path) -> bool:
        """Returns whether `path` is a file a writer of the run rewrites (its manifest or catalog)."""
        return path.parent == self.run and path.name in WRITER_FILES

    def inside_run(self, path: Path) -> bool:
        """Returns whether `path` lies inside the watched run folder."""
        return self.run is not None and self.run in path.parents

    def changed_rows(self) -> list[str]:
        """Returns the catalog views whose rows changed (none when either catalog cannot be read)."""
        if self.rows is None:
            return []
        after = catalog_rows(self.run, self.rows["columns"])
        if after is None:
            return []
        return [f"catalog rows of {view} changed" for view in ("samples", *VIEWS) if after[view] != self.rows[view]]


@dataclass
class Case:
    """What one case found: commands that crashed, what was lost, outcomes other than the expected ones, and why the
    run is not usable after it (`checked` once usability was measured); `kind` names what was drawn."""

    kind: str = ""
    crashed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)
    checked: bool = False

    @property
    def problems(self) -> list[str]:
        """Returns every problem the case found."""
        return [*self.crashed, *self.lost, *self.wrong, *self.unusable]

    def cli(self, args: list, expect: int | str | None = None, cwd: Path | None = None,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """Runs `curate ARGS` (after `prefix`, such as a mount namespace's command) in `cwd`; records a crash, and an
        outcome other than `expect` (0: success, 'refused': exit 1 or 2, None: either); returns the process."""
        args = [str(a) for a in args]
        try:
            done = subprocess.run([*prefix, *CLI, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                                  errors="replace", timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.crashed.append(f"{label(args)}: still running after {TIMEOUT} s")
            return subprocess.CompletedProcess(args, -9, "", "")
        done.args = args
        why = crash(done)
        if why:
            self.crashed.append(f"{label(args)}: {why}")
        elif expect is not None and (done.returncode == 0) != (expect == 0):
            said = "succeeded" if done.returncode == 0 else f"failed: {error_line(done.stderr)}"
            self.wrong.append(f"{label(args)} {said} (expected {'success' if expect == 0 else 'a refusal'})")
        return done

    def check_usable(self, run: Path, *needed: subprocess.CompletedProcess) -> None:
        """Records whether the run is still usable: the `needed` commands succeeded, and so do `curate status RUN`
        and `curate sql RUN "SELECT count(*) FROM samples"` (the CLI's entry point called here: a fresh interpreter
        for each would double what a case costs)."""
        from curate.cli.main import main

        self.checked = True
        self.unusable += [f"{label(d.args)} failed: {error_line(d.stderr)}" for d in needed if d.returncode]
        for argv in (["status", str(run)], ["sql", str(run), "SELECT count(*) FROM samples"]):
            err = io.StringIO()
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    code = main(argv)
            except Exception as exc:  # a traceback there makes the run unusable
                code, err = 1, io.StringIO(f"{type(exc).__name__}: {exc}")
            if code != 0:
                self.unusable.append(f"{argv[0]} failed: {error_line(err.getvalue())}")


def label(args: list[str]) -> str:
    """Returns the name of the command `args` run: `embed`, `filter dq`."""
    return " ".join(args[:2] if args[0] == "filter" else args[:1])


def error_line(stderr: str) -> str:
    """Returns the error of a command's standard error, shortened: its last line that names one ("curate: error:
    ...", "TypeError: ..."; a traceback's SQL context or carets follow it), else its last line."""
    lines = message_lines(stderr)
    named = [line for line in lines if ERROR.match(line)]
    return (named or lines or [""])[-1][:200]
