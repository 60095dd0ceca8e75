"""The run directory: atomic file writes, per-shard completion markers, and the manifest."""

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
DONE = "_done"


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
        """Deletes leftovers of writes a killed run never finished; returns how many there were."""
        stale = list(self.path.rglob("*.tmp-*")) if self.path.exists() else []
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def manifest(self) -> dict:
        """Returns the manifest, or an empty one for a new run."""
        p = self.path / MANIFEST
        return json.loads(p.read_text()) if p.exists() else {"stages": {}}

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
