"""The run directory: atomic file writes, per-shard completion markers, the manifest, and the writer lock."""

import contextlib
import fcntl
import json
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import UsageError

MANIFEST = "manifest.json"
DONE = "_done"
LOCK = ".curate.lock"
# The temporary names write_bytes gives, and the write-ahead log beside the catalog.duckdb.tmp-* of a build that an
# earlier curate killed (builds now happen outside the run); nothing else: a user's own *.tmp-* files are never touched.
TEMPORARY = re.compile(r".+\.tmp-[0-9a-f]{32}(\.wal)?$")
# Run folders this process holds the writer lock of: path -> [file descriptor, nesting depth].
_held: dict[Path, list[int]] = {}


def parquet_bytes(table: pa.Table) -> bytes:
    """Returns the table serialized as a Parquet file (zstd), byte-identical for identical tables."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class RunDir:
    """A run's folder. Every file appears under its final name only once complete."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()

    def write_bytes(self, relative: str, data: bytes) -> Path:
        """Writes `data` to a temporary name beside the target and renames it; returns the final path."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex}")
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
        return target

    def write_table(self, relative: str, table: pa.Table) -> Path:
        """Writes `table` as Parquet (zstd, the bytes parquet_bytes makes) straight to a temporary file beside the
        target and renames it, so a large table is never held a second time as bytes; returns the final path."""
        return self.write_batches(relative, table.schema, [table])

    def write_batches(self, relative: str, schema: pa.Schema, tables: Iterable[pa.Table]) -> Path:
        """Writes the `tables` (each of `schema`) one after another as one Parquet file (zstd), which appears whole
        by rename once all are written; returns the final path."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex}")
        try:
            with pq.ParquetWriter(temp, schema, compression="zstd") as writer:
                for table in tables:
                    writer.write_table(table)
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return target

    def write_json(self, relative: str, obj) -> Path:
        """Writes `obj` as indented, key-sorted JSON atomically; returns the final path."""
        return self.write_bytes(relative, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

    def marker(self, job: str, shard_id: str) -> str:
        """Returns the relative path of a shard's completion marker for `job`."""
        return f"{DONE}/{job}/{shard_id}.json"

    def is_done(self, job: str, shard_id: str) -> bool:
        """Returns True when `job` has committed every output of the shard."""
        return (self.path / self.marker(job, shard_id)).exists()

    def markers(self, job: str) -> list[dict]:
        """Returns the completion markers of `job`, sorted by shard id."""
        folder = self.path / DONE / job
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []

    def commit(self, files: dict[str, bytes]) -> None:
        """Writes a shard's files in the given order; the completion marker must come last."""
        for relative, data in files.items():
            self.write_bytes(relative, data)

    def remove_temporaries(self) -> int:
        """Deletes leftovers of writes a killed run never finished (files named as write_bytes names its
        temporaries, nothing else); returns how many there were."""
        found = self.path.rglob("*.tmp-*") if self.path.exists() else []
        stale = [p for p in found if TEMPORARY.match(p.name) and p.is_file() and not p.is_symlink()]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Holds the run's writer lock for the block (re-entrant within this process). Raises UsageError naming
        the holder when another live process holds it; a lock left by a killed process is taken over, since the
        kernel releases it when its holder dies."""
        if self.path in _held:
            _held[self.path][1] += 1
            try:
                yield
            finally:
                _held[self.path][1] -= 1
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write the run folder {self.path}: {exc.strerror}; a run is written in place, so "
                             "make it writable (or copy it somewhere writable) and rerun") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(f"{self.path} is being written by another curate process ({holder}); wait for it to "
                             "finish or stop it, then rerun") from None
        os.ftruncate(fd, 0)
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}: "
                      f"{command}".encode(), 0)
        _held[self.path] = [fd, 1]
        try:
            self.remove_temporaries()  # no other writer can be in the middle of a write now
            yield
        finally:
            del _held[self.path]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def manifest(self) -> dict:
        """Returns the manifest, or an empty one for a new run; raises UsageError when the file is not a curate
        manifest (something else wrote over it)."""
        p = self.path / MANIFEST
        if not p.exists():
            return {"stages": {}}
        try:
            manifest = json.loads(p.read_text())
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
            raise UsageError(f"{p} is not a curate run manifest (something else wrote over it); restore it from a "
                             "backup or ingest again into a new --run folder")
        return manifest

    def update_manifest(self, **fields) -> dict:
        """Merges top-level `fields` into the manifest, writes it atomically, and returns it. A new manifest gets
        a random run_id, which the catalog checks it is reading."""
        manifest = self.manifest()
        manifest = {"run_id": manifest.get("run_id") or uuid.uuid4().hex} | manifest | fields
        self.write_json(MANIFEST, manifest)
        return manifest

    def run_id(self) -> str:
        """Returns the run's id, giving a run made before ids existed one now."""
        return self.manifest().get("run_id") or self.update_manifest()["run_id"]


def is_run_folder(path: Path) -> bool:
    """Returns whether `path` is a curate run folder: a writer has locked it, or it holds a run's manifest."""
    if (path / LOCK).is_file():
        return True
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "run_id" in manifest and "stages" in manifest


def enclosing_run(path: Path) -> Path | None:
    """Returns the run folder that is `path` or holds it (an absolute path), or None."""
    return next((p for p in [path, *path.parents] if is_run_folder(p)), None)


def check_run_folder(path: str | os.PathLike) -> None:
    """Raises UsageError when `path` is a file, a folder that holds other files and no curate run, or a folder inside
    another run: curate writes only into a new, empty or existing run folder."""
    path = Path(path)
    if "\\" in str(path.absolute()):
        raise UsageError(f"--run {path} holds a backslash, which DuckDB reads as a path separator; choose a path "
                         "without one")
    outer = enclosing_run(path.absolute().parent)
    if outer is not None:
        raise UsageError(f"--run {path} is inside the run folder {outer}; choose a folder outside it")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--run {path} is a file; give a folder for the run")
    # a writer killed before its manifest appeared leaves its lock and the manifest's unfinished temporary
    others = [p for p in path.iterdir() if p.name != LOCK and not TEMPORARY.match(p.name)] if path.is_dir() else []
    if others and not (path / MANIFEST).exists():
        raise UsageError(f"--run {path} holds other files and is not a curate run; give a new or empty folder")
