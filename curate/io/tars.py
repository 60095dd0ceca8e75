"""Reading WebDataset tars: members grouped into samples by key, whatever their order in the archive."""

import posixpath
import tarfile

import fsspec

from curate.io.samples import RawSample

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSIONS = ("txt",)


class TarReadError(Exception):
    """The archive ended early or is not a tar; the samples read before the failure stay valid."""


def split_member_name(name: str) -> tuple[str, str] | None:
    """Returns (key, extension) the WebDataset way (the key ends at the basename's first dot), or None."""
    directory, base = posixpath.split(name)
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    key = posixpath.join(directory, stem) if directory else stem
    return key, ext.lower()


def read_tar_samples(url: str) -> tuple[list[RawSample], str | None]:
    """Returns the tar's samples in order of first appearance, and the error that ended reading early, if any.

    Members are collected for the whole shard, so a sample's files need not be adjacent. Only regular files
    are read; links and directories are ignored, and nothing is ever extracted to disk.
    """
    parts: dict[str, dict[str, tuple[int, bytes]]] = {}
    repeated: set[str] = set()
    error = None
    try:
        with fsspec.open(url, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                split = split_member_name(member.name)
                if split is None:
                    continue
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise TarReadError(f"member {member.name} truncated: {len(data)} of {member.size} bytes")
                key, ext = split
                sample = parts.setdefault(key, {})
                if ext in sample:
                    repeated.add(key)
                sample[ext] = (member.offset_data, data)
    except (tarfile.TarError, EOFError, OSError, TarReadError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return [_assemble(key, members, key in repeated) for key, members in parts.items()], error


def _assemble(key: str, members: dict[str, tuple[int, bytes]], repeated: bool) -> RawSample:
    raw = RawSample(key=key, note="repeated member in tar" if repeated else None)
    for ext in IMAGE_EXTENSIONS:
        if ext in members:
            raw.image_offset, raw.image = members[ext]
            break
    for ext in CAPTION_EXTENSIONS:
        if ext in members:
            raw.caption = members[ext][1]
            break
    if "json" in members:
        raw.json_text = members["json"][1]
    return raw
