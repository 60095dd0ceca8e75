"""The webdataset export: numbered tars holding {uid}.{jpg,png,webp}, {uid}.txt and {uid}.json per sample."""

import json
import tarfile
from pathlib import Path
from typing import BinaryIO, ClassVar

import pyarrow as pa

from curate.export.base import ShardedWriter
from curate.io.columns import CLS

# Fields the exported json carries from the catalog row where the source's json has none of its own (the
# source's fields are kept as they were), and the name of curate's hash of the stored image bytes, which differs
# from img2dataset's `sha256` of the downloaded original.
JSON_FIELDS = ("uid", "key", "url", "caption", "width", "height")
STORED_SHA256 = "stored_sha256"
SIZES = "sizes.json"  # shard name -> sample count, where open_clip's loader looks for the dataset size


def tar_member(name: str, size: int) -> tarfile.TarInfo:
    """Returns a regular-file header with fixed metadata (mtime 0, owner 0:0, mode 644), reproducible."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _ustar_template() -> bytes:
    header = bytearray(tar_member("x", 0).tobuf(tarfile.USTAR_FORMAT))
    header[0:100] = bytes(100)  # name
    header[148:156] = b" " * 8  # checksum, summed as spaces
    return bytes(header)


USTAR_TEMPLATE = _ustar_template()


def member_header(name: str, size: int) -> bytes:
    """Returns the header bytes tarfile would write for tar_member(name, size).

    A name of up to 100 bytes gets tarfile's USTAR header, filled in here at a fraction of tarfile's cost
    (it dominates the export otherwise); a longer one gets tarfile's own PAX header.
    """
    encoded = name.encode("utf-8")
    if len(encoded) > 100 or size >= 8**11:
        return tar_member(name, size).tobuf(tarfile.PAX_FORMAT)
    header = bytearray(USTAR_TEMPLATE)
    header[0 : len(encoded)] = encoded
    header[124:136] = b"%011o\0" % size
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


def sample_json(row: dict, extra: dict | None = None) -> bytes:
    """Returns the json member of a sample: the source's json fields, the catalog's where it has none, the hash
    of the stored image (row["sha256"], left out when None) and `extra` fields."""
    meta = json.loads(row["json"]) if row["json"] else {}
    for field in JSON_FIELDS:
        meta.setdefault(field, row[field])
    if row["sha256"] is not None:
        meta[STORED_SHA256] = row["sha256"]
    meta.update(extra or {})
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")


def sample_members(row: dict, extra: dict | None = None) -> list[tuple[str, bytes]]:
    """Returns a sample's (member name, bytes): image, caption and json (with `extra` fields), named by the uid."""
    uid = row["uid"]
    return [
        (f"{uid}.{row['image_format']}", row["image"]),
        (f"{uid}.txt", row["caption"].encode("utf-8")),
        (f"{uid}.json", sample_json(row, extra)),
    ]


def cls_member(row: dict) -> list[tuple[str, bytes]]:
    """Returns the sample's `.cls` member (its class as text, webdataset's convention), or none without a class."""
    value = row.get(CLS)
    return [] if value is None else [(f"{row['uid']}.{CLS}", str(value).encode("utf-8"))]


class WebDatasetWriter(ShardedWriter):
    """Writes 00000.tar, 00001.tar, ... as img2dataset does, readable by webdataset and open_clip's loader."""

    format_name: ClassVar[str] = "webdataset"
    # Member names are built from the uid, so it must not hold a path separator, a dot or "..".
    uid_pattern: ClassVar[str | None] = r"[A-Za-z0-9_-]+"
    uid_rule: ClassVar[str] = "tar member names are made from the uid, which may only hold A-Z a-z 0-9 _ -"

    def __init__(self, folder: Path, shard_size: int, progress: bool = True):
        super().__init__(folder, shard_size, progress)
        self._file: BinaryIO | None = None

    def part_name(self, index: int) -> str:
        """Returns the tar's name, its number zero-padded to five digits."""
        return f"{index:05d}.tar"

    def open_part(self, path: Path) -> None:
        """Opens a new uncompressed tar."""
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close_part)

    def members_of(self, table: pa.Table) -> list[list[tuple[str, bytes]]]:
        """Returns each sample's (member name, bytes), in the table's order: its image, caption and json (with the
        carried columns' values), and its class as a `.cls` member where the run has a `cls` column."""
        return [sample_members(row, self.carried.json_fields(row)) + cls_member(row)
                for row in table.to_pylist()]

    def write_part(self, table: pa.Table) -> None:
        """Appends each sample's members, adjacent and in order, to the open tar."""
        for members in self.members_of(table):
            for name, data in members:
                padding = -len(data) % tarfile.BLOCKSIZE
                self._file.write(member_header(name, len(data)) + data + bytes(padding))

    def close_part(self) -> None:
        """Ends the open tar as tarfile does: two zero blocks, then zeros up to a whole record."""
        end = 2 * tarfile.BLOCKSIZE
        self._file.write(bytes(end + -(self._file.tell() + end) % tarfile.RECORDSIZE))
        self._file.close()
        self._file = None

    def close(self) -> list[str]:
        """Closes the last tar and writes sizes.json; returns the files written."""
        files = super().close()
        sizes = dict(zip(self.part_files, self.part_rows, strict=True))
        (self.folder / SIZES).write_text(json.dumps(sizes, indent=2, sort_keys=True) + "\n")
        return [*files, SIZES]
