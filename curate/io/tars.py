"""Reading WebDataset tars: members grouped into samples by key, whatever their order in the archive."""

import posixpath
import tarfile

import fsspec

from curate.io.samples import DEFAULT_MAX_CAPTION_BYTES, DEFAULT_MAX_MEMBER_BYTES, RawSample, caption_too_large

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


def read_tar_samples(
    url: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES, max_caption_bytes: int = DEFAULT_MAX_CAPTION_BYTES,
) -> tuple[list[RawSample], str | None]:
    """Returns the tar's samples in order of first appearance, and the error that ended reading early, if any.

    Members are collected for the whole shard, so a sample's files need not be adjacent. Only regular files
    are read; links and directories are ignored, and nothing is ever extracted to disk. A sparse member (its
    bytes are not where export would re-read them), one over max_member_bytes or a caption member over
    max_caption_bytes is not read into memory: its sample carries the problem instead.
    """
    parts: dict[str, dict[str, tuple[int, bytes]]] = {}
    problems: dict[str, tuple[str, str]] = {}
    error = None
    try:
        with fsspec.open(url, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                split = split_member_name(member.name) if member.isfile() else None
                if split is None:
                    continue
                key, ext = split
                sample = parts.setdefault(key, {})
                limit = max_caption_bytes if ext in CAPTION_EXTENSIONS else None
                problem = _member_problem(member, max_member_bytes, limit)
                if problem is None and ext in sample:
                    problem = ("repeated member in tar", f"{member.name} appears more than once")
                if problem is not None:
                    problems.setdefault(key, problem)
                    continue
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise TarReadError(f"member {member.name} truncated: {len(data)} of {member.size} bytes")
                sample[ext] = (member.offset_data, data)
            end = tar.offset
        if not _archive_ends_at(url, end):
            raise TarReadError(f"no end-of-archive marker at byte {end}: the tar is cut short or corrupt there")
    except (tarfile.TarError, EOFError, OSError, TarReadError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return [_assemble(key, members, problems.get(key)) for key, members in parts.items()], error


def _archive_ends_at(url: str, offset: int) -> bool:
    """Returns whether a zero block (the end-of-archive marker) starts at `offset`: tarfile reads a header cut
    short as the end of the archive, so a truncated tar would otherwise look whole."""
    with fsspec.open(url, "rb") as f:
        f.seek(offset)
        block = f.read(tarfile.BLOCKSIZE)
    return len(block) == tarfile.BLOCKSIZE and not block.strip(b"\0")


def _member_problem(member: tarfile.TarInfo, max_member_bytes: int,
                    max_caption_bytes: int | None) -> tuple[str, str] | None:
    """Returns why a member is not read (sparse, too large, a caption over its limit), or None to read it."""
    if member.issparse():
        return "sparse tar member", f"{member.name} is stored sparse ({member.size} bytes declared)"
    if member.size > max_member_bytes:
        return "member too large", f"{member.name} is {member.size} bytes, over the limit of {max_member_bytes}"
    if max_caption_bytes is not None and member.size > max_caption_bytes:
        return caption_too_large(member.size, max_caption_bytes)
    return None


def _assemble(key: str, members: dict[str, tuple[int, bytes]], problem: tuple[str, str] | None) -> RawSample:
    raw = RawSample(key=key, problem=problem)
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
    if "cls" in members:
        raw.cls = members["cls"][1]
    return raw
