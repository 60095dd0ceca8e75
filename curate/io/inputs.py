"""Turning the user's INPUTS (paths, globs, brace ranges, fsspec URLs, folders) into shard tasks."""

import hashlib
import posixpath
import re
from dataclasses import dataclass

import fsspec
from braceexpand import braceexpand

from curate.errors import UsageError

SHARD_SUFFIXES = (".tar", ".parquet")
INPUT_FORMATS = ("auto", "webdataset", "parquet", "datacomp")


@dataclass(frozen=True)
class ShardTask:
    """One input shard: where it is, which reader reads it, and the id its outputs are named by."""

    shard_id: str
    url: str
    kind: str


def expand_inputs(inputs: list[str], input_format: str = "auto") -> list[ShardTask]:
    """Returns the shard tasks for INPUTS in a stable order; raises UsageError when nothing matches."""
    if input_format not in INPUT_FORMATS:
        raise UsageError(f"unknown --input-format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
    urls: list[str] = []
    for pattern in inputs:
        for item in braceexpand(pattern):
            found = _expand_one(item)
            if not found:
                raise UsageError(f"no shards found at {item!r}; give .tar or .parquet files, a glob or a folder")
            urls.extend(u for u in found if u not in urls)
    urls = _drop_img2dataset_metadata(urls)
    kinds = [_kind_of(u, input_format) for u in urls]
    return [ShardTask(sid, u, k) for sid, u, k in zip(_shard_ids(urls), urls, kinds, strict=True)]


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
    return [_unstrip(fs, protocol, p) for p in files]


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
