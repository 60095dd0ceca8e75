"""Turning the user's INPUTS (paths, globs, brace ranges, fsspec URLs, folders) into shard tasks."""

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq
from braceexpand import braceexpand

from curate.errors import UsageError

ARROW_SUFFIX = ".arrow"  # a data file of a Hugging Face dataset folder (datasets' save_to_disk)
SHARD_SUFFIXES = (".tar", ".parquet", ARROW_SUFFIX)
HF_STATE = "state.json"  # beside a dataset folder's data files, listing them
INPUT_FORMATS = ("auto", "webdataset", "parquet", "datacomp")
# A Parquet file of more rows is read as pieces of at most this many, each a task of its own: one DataComp metadata
# file (about 500,000 rows, with its .npz at 768-d) would otherwise be one task's memory and one output file.
PIECE_ROWS = 65_536


@dataclass(frozen=True)
class ShardTask:
    """One input shard: where it is, which reader reads it, the id its outputs are named by, and for a piece of a
    large Parquet file its rows [start, stop)."""

    shard_id: str
    url: str
    kind: str
    rows: tuple[int, int] | None = None

    @property
    def file_id(self) -> str:
        """Returns the id of the whole file: a piece's shard id without its `.part<i>` suffix (what default uids
        hash, so they don't depend on how a file was split)."""
        return self.shard_id.rsplit(".part", 1)[0] if self.rows is not None else self.shard_id


def expand_inputs(inputs: list[str], input_format: str = "auto") -> list[ShardTask]:
    """Returns the shard tasks for INPUTS in a stable order; raises UsageError when nothing matches."""
    if input_format not in INPUT_FORMATS:
        raise UsageError(f"unknown --input-format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
    urls: list[str] = []
    for pattern in inputs:
        for item in braceexpand(pattern):
            found = _expand_one(item)
            if not found:
                raise UsageError(f"no shards found at {item!r}; give .tar or .parquet files, a glob or a folder "
                                 "(a Hugging Face dataset folder too)")
            urls.extend(u for u in found if u not in urls)
    urls = _drop_img2dataset_metadata(urls)
    kinds = [_kind_of(u, input_format) for u in urls]
    return [ShardTask(sid, u, k) for sid, u, k in zip(_shard_ids(urls), urls, kinds, strict=True)]


def split_large_parquet(tasks: list[ShardTask], piece_rows: int | None = None) -> list[ShardTask]:
    """Returns the tasks with each Parquet file of more than `piece_rows` (default PIECE_ROWS) rows (from its
    footer) replaced by tasks for its pieces, `<shard id>.part<i>`; a footer that can't be read leaves the file
    whole, for its reader to quarantine."""
    piece_rows = piece_rows or PIECE_ROWS
    out = []
    for task in tasks:
        rows = _parquet_rows(task.url) if task.url.endswith(".parquet") and task.kind != "webdataset" else None
        if rows is None or rows <= piece_rows:
            out.append(task)
            continue
        starts = range(0, rows, piece_rows)
        out.extend(ShardTask(f"{task.shard_id}.part{i:04d}", task.url, task.kind, (a, min(a + piece_rows, rows)))
                   for i, a in enumerate(starts))
    return out


def _parquet_rows(url: str) -> int | None:
    try:
        with fsspec.open(url, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
    except Exception:  # any unreadable footer: the reader quarantines the file with its reason
        return None


def _expand_one(item: str) -> list[str]:
    try:
        fs, path = fsspec.core.url_to_fs(item)
    except ImportError as exc:  # e.g. s3:// without s3fs: fsspec's message names the package to install
        raise UsageError(f"cannot open {item!r}: {exc}; or `pip install 'curate[cloud]'`") from None
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if any(ch in path for ch in "*?["):
        paths = fs.glob(path)
    elif fs.isdir(path):
        paths = [p for p in fs.find(path) if p.endswith(SHARD_SUFFIXES)]
    elif fs.exists(path):
        paths = [path]
    else:
        return []
    files = sorted(p for p in paths if p.endswith(SHARD_SUFFIXES) and not fs.isdir(p))
    return [_unstrip(fs, protocol, p) for p in _dataset_files(fs, files)]


def _dataset_files(fs, files: list[str]) -> list[str]:
    """Returns `files` without the .arrow files that their folder's state.json does not list among the dataset's
    data files (a Hugging Face dataset folder also holds cache files of its own)."""
    listed: dict[str, set[str] | None] = {}
    for path in (p for p in files if p.endswith(ARROW_SUFFIX)):
        folder = posixpath.dirname(path)
        if folder not in listed:
            listed[folder] = _listed_data_files(fs, posixpath.join(folder, HF_STATE))
    return [p for p in files if not p.endswith(ARROW_SUFFIX) or listed[posixpath.dirname(p)] is None
            or posixpath.basename(p) in listed[posixpath.dirname(p)]]


def _listed_data_files(fs, state: str) -> set[str] | None:
    try:
        with fs.open(state, "rb") as f:
            data_files = json.load(f).get("_data_files", [])
        return {d["filename"] for d in data_files if isinstance(d, dict) and isinstance(d.get("filename"), str)}
    except (OSError, ValueError, AttributeError, TypeError):  # no state.json, or not one datasets wrote
        return None


def _unstrip(fs, protocol: str, path: str) -> str:
    return path if protocol in ("file", "local") else fs.unstrip_protocol(path)


def _drop_img2dataset_metadata(urls: list[str]) -> list[str]:
    """img2dataset writes {shard}.parquet beside {shard}.tar: metadata of the tar, not a shard of its own."""
    tars = {u[: -len(".tar")] for u in urls if u.endswith(".tar")}
    return [u for u in urls if not (u.endswith(".parquet") and u[: -len(".parquet")] in tars)]


def _kind_of(url: str, input_format: str) -> str:
    if input_format != "auto":
        return input_format
    # A .parquet is either an image shard or DataComp metadata: the reader decides from its schema.
    if url.endswith(ARROW_SUFFIX):
        return "arrow"
    return "webdataset" if url.endswith(".tar") else "parquet"


def _shard_ids(urls: list[str]) -> list[str]:
    """Names for each shard's output files: the file's stem, made unique with a hash only where stems clash."""
    stems = [_safe_stem(u) for u in urls]
    ids = []
    for stem, url in zip(stems, urls, strict=True):
        if stems.count(stem) > 1:
            stem = f"{stem}-{hashlib.sha1(url.encode()).hexdigest()[:10]}"
        ids.append(stem)
    return ids


def _safe_stem(url: str) -> str:
    name = posixpath.basename(url.rstrip("/"))
    stem = name.rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    return stem if stem[:1].isalnum() else f"s{stem}"
