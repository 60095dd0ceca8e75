"""Where a command may write what a user names with --out: one check for every such path, and the atomic ways to
write there.

No output lands inside a curate run folder (the run's own files are curate's to write), holds or lies inside a path the
command protects (the run it reads, the run's source shards), or replaces what the user owns: an existing folder is
replaced only with --overwrite and only when it is curate's own earlier output (it holds the marker file its command
writes), an existing file only with --overwrite. Files and folders appear under their final name only once complete;
the temporary folder of a killed write is removed by the next write to the same place.
"""

import contextlib
import errno
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from curate.errors import UsageError
from curate.rundir import RunDir, enclosing_run, is_run_folder

STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[0-9a-f]{32}$")


@dataclass(frozen=True)
class Output:
    """What a command writes at a user's path: a file or a folder (`folder`), named by `flag`; a folder is curate's
    own earlier output when it holds `marker`; nothing may hold or lie inside the `protected` paths."""

    flag: str = "--out"
    folder: bool = True
    marker: str | None = None
    protected: tuple[Path, ...] = ()

    def check(self, path: str | os.PathLike, overwrite: bool) -> Path:
        """Returns `path` resolved (links followed) once this output may be written there; raises UsageError
        saying what to choose instead."""
        out = self.check_place(path)
        refusal = self._existing_refusal(out, overwrite)
        if refusal:
            raise UsageError(f"cannot write {self.flag} {out}: {refusal}")
        return out

    def check_place(self, path: str | os.PathLike) -> Path:
        """Returns `path` resolved once it lies outside every run folder and the protected paths, whatever it holds
        now (for commands that check what an existing folder holds themselves); raises UsageError."""
        out = Path(path).expanduser().resolve()
        refusal = self._place_refusal(out)
        if refusal:
            raise UsageError(f"cannot write {self.flag} {out}: {refusal}")
        return out

    def _place_refusal(self, out: Path) -> str | None:
        run = enclosing_run(out)
        if run is not None:
            return f"it is inside the curate run folder {run}; choose a path outside it"
        for path in (p.resolve() for p in self.protected):
            if out == path or out in path.parents:
                return f"it holds {path}, which this command reads; choose another path"
            if path in out.parents:
                return f"it is inside {path}, which this command reads; choose a path outside it"
        return None

    def _existing_refusal(self, out: Path, overwrite: bool) -> str | None:
        if not out.exists():
            return None
        if self.folder != out.is_dir():
            return f"it is a {'file' if self.folder else 'folder'}; give a {'folder' if self.folder else 'file'} path"
        if self.folder and not any(out.iterdir()):
            return None
        if not overwrite:
            return "it exists; choose another path or pass --overwrite to replace it"
        if self.folder and not self.owns(out):
            return (f"it holds files curate did not write there (no {self.marker}); --overwrite replaces only "
                    "curate's own earlier output: choose another path")
        return None

    def owns(self, folder: Path) -> bool:
        """Returns whether `folder` is curate's own earlier output of this kind, holding no run folder."""
        if self.marker is None or not (folder / self.marker).is_file():
            return False
        return not any(is_run_folder(p) for p in folder.iterdir() if p.is_dir())


def run_and_sources(run: RunDir) -> tuple[Path, ...]:
    """Returns the run folder and the local files and folders among its ingest inputs (plain paths or file:// URLs):
    what no output of a command reading the run may hold or lie inside."""
    inputs = run.manifest()["stages"].get("ingest", {}).get("config", {}).get("inputs", [])
    local = [u.removeprefix("file://") for u in inputs if "://" not in u or u.startswith("file://")]
    return (run.path, *(Path(u) for u in local))


@contextlib.contextmanager
def staged_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yields a new temporary sibling folder of `out`, renamed to `out` when the block completes (removed if it
    raises). The folder is locked while it is written, so the stale ones of killed writes are told apart and
    removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex}")
    staging.mkdir()
    fd = os.open(staging, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield staging
        _publish(staging, out, overwrite)
    finally:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(out: Path) -> int:
    """Removes the temporary folders beside `out` that killed writes to it left (unlocked ones); returns how many."""
    removed = 0
    for path in out.parent.iterdir() if out.parent.is_dir() else []:
        match = STAGING.match(path.name)
        if match is None or match["name"] != out.name or path.is_symlink() or not path.is_dir():
            continue
        if match["kind"] == "old" and not out.exists():
            continue  # the earlier output, moved aside by a write killed before it put the new one in place
        if _unlocked(path):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _unlocked(folder: Path) -> bool:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Renames the finished `staging` folder to `out`, first moving aside what `out` held when overwriting."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(staging, out)
        return
    if not overwrite:
        raise UsageError(f"{out} appeared while it was being written; the new output was not kept")
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex}")
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old)


def write_file(out: Path, write: Callable[[Path], None]) -> None:
    """Calls write(temporary path beside `out`), creating its folder first, and renames the finished file to `out`;
    no file is left when it raises, and an OS error names `out`."""
    temp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write(temp)
        os.replace(temp, out)
    except OSError as exc:  # named by the path the user gave, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(out)) from None
    finally:
        temp.unlink(missing_ok=True)


OS_ERROR_HINTS = {
    errno.EACCES: "give curate write access there or choose another path",
    errno.EPERM: "give curate write access there or choose another path",
    errno.EROFS: "the file system is read-only; choose a writable path",
    errno.ENOSPC: "the disk is full; free some space, then rerun the same command",
    errno.EDQUOT: "the disk quota is used up; free some space, then rerun the same command",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "it is a folder; give a file path",
}


def os_error_message(exc: OSError) -> str:
    """Returns one line for an OS error: the file, what went wrong, and what to do about it."""
    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = OS_ERROR_HINTS.get(exc.errno, "")
    return f"{where}{reason}" + (f"; {hint}" if hint else "")
