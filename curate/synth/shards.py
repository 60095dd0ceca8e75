"""Writing shards as img2dataset's webdataset output does: NNNNN.tar, NNNNN.parquet, NNNNN_stats.json."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Fixed fake values so reruns are byte-identical (img2dataset would use the wall clock here).
TAR_MTIME = 1_700_000_000
TAR_USER = "bigdata"
FAKE_START_TIME = 1_700_000_000.0
FAKE_SECONDS_PER_SAMPLE = 0.0125
FAKE_SHARD_OVERHEAD = 0.75

# The per-shard metadata parquet schema: input columns (url, caption, uid), then img2dataset's own.
META_SCHEMA = pa.schema([
    ("url", pa.string()),
    ("caption", pa.string()),
    ("uid", pa.string()),
    ("key", pa.string()),
    ("status", pa.string()),
    ("error_message", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("original_width", pa.int32()),
    ("original_height", pa.int32()),
    ("sha256", pa.string()),
])

_SHARD_FILE = re.compile(r"^\d{5}(\.tar|\.parquet|_stats\.json)$")


@dataclass
class ShardRow:
    """One attempted download; a failed one has `jpg` None and `error` set, and only the parquet lists it."""

    uid: str
    url: str
    caption: str | bytes  # bytes: written to the .txt as they are (a broken sample's undecodable caption)
    jpg: bytes | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None


def shard_name(shard_id: int) -> str:
    """Returns the 5-digit shard name, e.g. 1 -> "00001"."""
    return f"{shard_id:05d}"


def sample_key(shard_id: int, index: int) -> str:
    """Returns img2dataset's key: 5-digit shard + 4-digit index in the shard, e.g. (1, 23) -> "000010023"."""
    if not 0 <= index < 10_000:
        raise ValueError(f"index in shard must be < 10000, got {index}")
    return f"{shard_id:05d}{index:04d}"


def clear_shards(folder: Path) -> None:
    """Deletes earlier shard files ({5 digits}.tar/.parquet/_stats.json) from `folder`; returns None."""
    if folder.is_dir():
        for path in folder.iterdir():
            if _SHARD_FILE.match(path.name):
                path.unlink()


def _meta(row: ShardRow, key: str) -> dict:
    ok = row.jpg is not None
    return {
        "url": row.url,
        "caption": row.caption if isinstance(row.caption, str) else None,
        "uid": row.uid,
        "key": key,
        "status": "success" if ok else "failed_to_download",
        "error_message": None if ok else row.error,
        "width": row.width if ok else None,
        "height": row.height if ok else None,
        "original_width": row.width if ok else None,
        "original_height": row.height if ok else None,
        "sha256": hashlib.sha256(row.jpg).hexdigest() if ok else None,
    }


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = TAR_USER
    tar.addfile(info, io.BytesIO(data))


def _stats(metas: list[dict], shard_id: int) -> dict:
    status = Counter("success" if m["status"] == "success" else m["error_message"] for m in metas)
    successes = status.get("success", 0)
    start = FAKE_START_TIME + 60.0 * shard_id
    duration = round(FAKE_SHARD_OVERHEAD + FAKE_SECONDS_PER_SAMPLE * len(metas), 4)
    return {
        "count": len(metas),
        "successes": successes,
        "failed_to_download": len(metas) - successes,
        "failed_to_resize": 0,
        "duration": duration,
        "start_time": start,
        "end_time": start + duration,
        "status_dict": dict(status),
    }


def write_shard(folder: Path, shard_id: int, rows: list[ShardRow]) -> dict[str, str]:
    """Writes one shard's tar, parquet and stats; returns {uid: key} of the samples written to the tar."""
    name = shard_name(shard_id)
    metas, keys = [], {}
    with tarfile.open(folder / f"{name}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for index, row in enumerate(rows):
            key = sample_key(shard_id, index)
            meta = _meta(row, key)
            metas.append(meta)
            if row.jpg is None:
                continue
            keys[row.uid] = key
            members = {"jpg": row.jpg, "json": json.dumps(meta, indent=4).encode(),
                       "txt": row.caption if isinstance(row.caption, bytes) else row.caption.encode("utf-8")}
            for ext in sorted(members):
                _add_member(tar, f"{key}.{ext}", members[ext])
    table = pa.Table.from_pylist(metas, schema=META_SCHEMA)
    pq.write_table(table, folder / f"{name}.parquet")
    with open(folder / f"{name}_stats.json", "w") as f:
        json.dump(_stats(metas, shard_id), f, indent=4)
    return keys
