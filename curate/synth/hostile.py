"""Hostile shards: a seeded generator of tars and Parquet files whose samples carry the faults crafted or broken
shards carry, each with the quarantine reason ingest must give it, for property tests and the reliability
benchmark.

A shard mixes good samples with faulty ones drawn from a grammar of faults (TAR_FAULTS, PARQUET_FAULTS); a tar
may also be cut short at a random byte. The truth says, per key, the reason expected (None: accepted), and for a
cut tar which samples lay wholly before the cut.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curate.synth.broken import png_bomb

# A member: (name, bytes, sparse apparent size or 0). Names are str; a lone surrogate stands for a raw byte.
Member = tuple[str, bytes, int]


def small_image(rng: np.random.Generator, width: int = 16, height: int = 16, fmt: str = "JPEG") -> bytes:
    """Returns a small encoded image of random colour blocks."""
    pixels = rng.integers(0, 256, (max(1, height // 4), max(1, width // 4), 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((width, height)).save(buffer, fmt)
    return buffer.getvalue()


@dataclass(frozen=True)
class Good:
    """A good sample's parts: its key, uid, image and caption, and its json object."""

    key: str
    uid: str
    image: bytes
    caption: str

    def meta(self) -> dict:
        """Returns the sample's json object (img2dataset's fields, and a DataComp-style uid)."""
        return {"uid": self.uid, "url": f"https://example.com/{self.key}.jpg", "key": self.key}

    def members(self, meta: dict | None = None, caption: bytes | None = None, image: bytes | None = None,
                name: str | None = None) -> list[Member]:
        """Returns its jpg, txt and json members, with any part replaced."""
        stem = name or self.key
        return [(f"{stem}.jpg", self.image if image is None else image, 0),
                (f"{stem}.txt", self.caption.encode() if caption is None else caption, 0),
                (f"{stem}.json", json.dumps(self.meta() if meta is None else meta).encode(), 0)]


def caption_of_size(size: int, start: str = "") -> str:
    """Returns `start` padded to exactly `size` UTF-8 bytes, mostly with two-byte characters (so a caption over a
    byte limit can be under it in characters)."""
    pad = size - len(start.encode())
    return start + "é" * (pad // 2) + "x" * (pad % 2)


def huge_caption(rng: np.random.Generator) -> str:
    """Returns a caption of a random size over MAX_CAPTION_BYTES, up to 4 times it."""
    return caption_of_size(int(rng.integers(MAX_CAPTION_BYTES + 1, 4 * MAX_CAPTION_BYTES)))


def _good(rng: np.random.Generator, path: Path, i: int) -> Good:
    """Returns good sample `i` of the shard at `path`; one in five has a caption of exactly MAX_CAPTION_BYTES."""
    caption = f"a photo {i}"
    if rng.random() < 0.2:
        caption = caption_of_size(MAX_CAPTION_BYTES, caption)
    return Good(f"{path.stem}-{i:04d}", f"{rng.integers(2**63):016x}{i:016x}", small_image(rng), caption)


def _nested(depth: int) -> bytes:
    return b'{"uid": "x", "deep": ' + b"[" * depth + b"]" * depth + b"}"


def _with(good: Good, **fields) -> dict:
    return good.meta() | fields


def _raw_json(good: Good, text: bytes) -> list[Member]:
    return [m if not m[0].endswith(".json") else (m[0], text, 0) for m in good.members()]


@dataclass(frozen=True)
class Fault:
    """A way to spoil one sample, and the quarantine reason ingest must give it."""

    reason: str
    members: Callable[[np.random.Generator, Good], list[Member]]


TAR_FAULTS: dict[str, Fault] = {
    "random bytes for an image": Fault("bad image", lambda rng, g: g.members(image=rng.bytes(300))),
    "truncated image": Fault("bad image", lambda rng, g: g.members(image=g.image[: len(g.image) // 2])),
    "decompression bomb": Fault("bad image", lambda rng, g: g.members(image=png_bomb())),
    "1 x 300 strip": Fault("bad image", lambda rng, g: g.members(image=small_image(rng, 300, 1, "PNG"))),
    "no image": Fault("missing image", lambda rng, g: g.members()[1:]),
    "no caption": Fault("missing caption", lambda rng, g: [g.members()[0], g.members()[2]]),
    "empty caption": Fault("empty caption", lambda rng, g: g.members(caption=b"  ")),
    "latin-1 caption": Fault("caption is not valid UTF-8", lambda rng, g: g.members(caption="café".encode("latin-1"))),
    "no json": Fault("missing json", lambda rng, g: g.members()[:2]),
    "json not an object": Fault("invalid json", lambda rng, g: _raw_json(g, b"[1, 2]")),
    "json syntax error": Fault("invalid json", lambda rng, g: _raw_json(g, b'{"uid": ')),
    "json nested 100 deep": Fault("invalid json", lambda rng, g: _raw_json(g, _nested(100))),
    "json nested 15000 deep": Fault("invalid json", lambda rng, g: _raw_json(g, _nested(15000))),
    "json lone surrogate": Fault("invalid json", lambda rng, g: _raw_json(g, b'{"uid": "x", "t": "\\ud800"}')),
    "url a number": Fault("invalid url", lambda rng, g: g.members(meta=_with(g, url=12345))),
    "url a list": Fault("invalid url", lambda rng, g: g.members(meta=_with(g, url=["a", "b"]))),
    "uid an object": Fault("invalid uid", lambda rng, g: g.members(meta=_with(g, uid={"a": 1}))),
    "uid a boolean": Fault("invalid uid", lambda rng, g: g.members(meta=_with(g, uid=True))),
    "caption a number in json": Fault("invalid caption", lambda rng, g: [
        g.members()[0], (f"{g.key}.json", json.dumps(_with(g, caption=7)).encode(), 0)]),
    "member name not UTF-8": Fault("invalid key", lambda rng, g: g.members(name=g.key + "\udcff")),
    "member repeated": Fault("repeated member in tar", lambda rng, g: [*g.members(), g.members()[1]]),
    "sparse member of 20 GB": Fault("sparse tar member", lambda rng, g: [
        (f"{g.key}.jpg", g.image, 20 * 2**30), *g.members()[1:]]),
    "member over the size limit": Fault("member too large",
                                        lambda rng, g: g.members(image=rng.bytes(MAX_MEMBER_BYTES + 1))),
    "caption over the size limit": Fault("caption too large",
                                         lambda rng, g: g.members(caption=huge_caption(rng).encode())),
    "caption in json over the size limit": Fault("caption too large", lambda rng, g: [
        g.members()[0], (f"{g.key}.json", json.dumps(_with(g, caption=huge_caption(rng))).encode(), 0)]),
    ".cls not UTF-8": Fault("invalid cls", lambda rng, g: [*g.members(), (f"{g.key}.cls", b"\xff" + rng.bytes(3), 0)]),
    "json column an object": Fault("invalid json column", lambda rng, g: g.members(meta=_with(g, label={"a": []}))),
}
MAX_MEMBER_BYTES = 40_000  # the --max-member-bytes hostile tars are to be read with
MAX_CAPTION_BYTES = 1024  # the --max-caption-bytes hostile shards are to be read with


def read_options():
    """Returns the ReadOptions hostile shards are to be ingested with: MAX_MEMBER_BYTES and MAX_CAPTION_BYTES, and
    the json field `label` kept as a column."""
    from curate.io.samples import ReadOptions

    return ReadOptions(max_member_bytes=MAX_MEMBER_BYTES, max_caption_bytes=MAX_CAPTION_BYTES, json_columns="label")


@dataclass
class ShardTruth:
    """What ingest must make of a hostile shard: (key, expected reason or None for accepted) per sample in order,
    the accepted samples' uids, and the byte where a cut tar ends (None: whole)."""

    path: Path
    expected: list[tuple[str, str | None]] = field(default_factory=list)
    uids: dict[str, str] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)  # key -> byte offset where its last member ends
    cut: int | None = None

    def readable(self, key: str) -> bool:
        """Returns whether the sample lies wholly before the cut."""
        return self.cut is None or self.ends[key] <= self.cut


def _header(name: str, size: int, sparse: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = size, 0
    buf = bytearray(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    if sparse:  # an old-GNU sparse member: its `size` bytes are the last ones of a file of `sparse` bytes
        def octal(v: int) -> bytes:
            return tarfile.itn(v, 12, tarfile.GNU_FORMAT)  # base-256 past 8 GiB, as GNU tar writes it

        buf[-512 + 156:-512 + 157] = b"S"
        buf[-512 + 386:-512 + 398], buf[-512 + 398:-512 + 410] = octal(sparse - size), octal(size)
        buf[-512 + 483:-512 + 495] = octal(sparse)
        buf[-512 + 148:-512 + 156] = b" " * 8
        buf[-512 + 148:-512 + 155] = b"%06o\0" % sum(buf[-512:])
    return bytes(buf)


def write_tar(path: Path, samples: list[tuple[str, list[Member]]]) -> dict[str, int]:
    """Writes the samples' members in order as a GNU tar; returns key -> offset where its last member ends."""
    ends = {}
    with open(path, "wb") as out:
        for key, members in samples:
            for name, data, sparse in members:
                out.write(_header(name, len(data), sparse) + data + b"\0" * (-len(data) % 512))
            ends[key] = out.tell()
        out.write(b"\0" * 1024)
    return ends


def hostile_tar(path: Path, rng: np.random.Generator, samples: int, fault_rate: float, cut: bool,
                faults: list[str] | None = None) -> ShardTruth:
    """Writes a tar of `samples` samples, each faulty with probability fault_rate (a fault drawn uniformly from
    `faults`, default all of TAR_FAULTS), cut at a random byte when `cut`; returns its truth."""
    from curate.io.samples import printable
    from curate.io.tars import split_member_name

    truth, entries, faults = ShardTruth(path), [], faults or list(TAR_FAULTS)
    for i in range(samples):
        good = _good(rng, path, i)
        fault = faults[rng.integers(len(faults))] if rng.random() < fault_rate else None
        members = TAR_FAULTS[fault].members(rng, good) if fault else good.members()
        key = printable(split_member_name(members[0][0])[0])
        truth.expected.append((key, TAR_FAULTS[fault].reason if fault else None))
        if fault is None:
            truth.uids[key] = good.uid
        entries.append((key, members))
    if not any(name.endswith(".json") for _, members in entries for name, _, _ in members):
        truth.expected = [(k, None if r == "missing json" else r) for k, r in truth.expected]  # json not expected
    truth.ends = write_tar(path, entries)
    if cut:
        truth.cut = int(rng.integers(512, path.stat().st_size))
        path.write_bytes(path.read_bytes()[: truth.cut])
    return truth


PARQUET_FAULTS: dict[str, Fault] = {
    "no caption": Fault("missing caption", lambda rng, g: [None]),
    "empty caption": Fault("empty caption", lambda rng, g: [""]),
    "no image": Fault("missing image", lambda rng, g: [g.caption, None]),
    "random bytes for an image": Fault("bad image", lambda rng, g: [g.caption, rng.bytes(200)]),
    "caption over the size limit": Fault("caption too large", lambda rng, g: [huge_caption(rng)]),
    "key and uid repeated": Fault("repeated key", lambda rng, g: []),
}


def hostile_parquet(path: Path, rng: np.random.Generator, rows: int, fault_rate: float,
                    text_captions: bool = True, faults: list[str] | None = None) -> ShardTruth:
    """Writes an image Parquet shard of `rows` rows, each faulty with probability fault_rate (a fault drawn from
    `faults`, default all of PARQUET_FAULTS); without text_captions the caption column holds integers, and every
    row is "invalid caption". Returns its truth."""
    truth, faults = ShardTruth(path), faults or list(PARQUET_FAULTS)
    table: dict[str, list] = {"key": [], "uid": [], "caption": [], "jpg": []}
    for i in range(rows):
        good = _good(rng, path, i)
        fault = faults[rng.integers(len(faults))] if rng.random() < fault_rate and i else None
        if fault == "key and uid repeated":  # the previous row's key and uid: quarantined if that row was kept
            good = Good(table["key"][-1], table["uid"][-1], good.image, good.caption)
            fault = fault if good.key in truth.uids else None
        parts = PARQUET_FAULTS[fault].members(rng, good) if fault else []
        caption, image = (parts + [good.caption, good.image][len(parts):])[:2]
        for column, value in zip(table, (good.key, good.uid, caption, image), strict=True):
            table[column].append(value)
        reason = (PARQUET_FAULTS[fault].reason if fault else None) if text_captions else "invalid caption"
        truth.expected.append((good.key, reason))
        if reason is None:
            truth.uids[good.key] = good.uid
    captions = pa.array(table["caption"], pa.string())
    if not text_captions:
        captions = pa.array([len(c or "") for c in table["caption"]], pa.int64())
    pq.write_table(pa.table({"key": table["key"], "uid": table["uid"], "caption": captions,
                             "jpg": pa.array(table["jpg"], pa.binary())}), path)
    return truth


def outcome(run) -> tuple[dict, dict, dict]:
    """Returns a run's (shard file name, key) -> uid of accepted samples and -> quarantine reasons, and its
    accounting counts."""
    from curate.catalogs import connect

    con = connect(run)
    try:
        rows = con.execute("SELECT shard, key, uid FROM samples").fetchall()
        accepted = {(shard.rsplit("/", 1)[-1], key): uid for shard, key, uid in rows}
        quarantined: dict = {}
        for shard, key, reason in con.execute("SELECT shard, key, reason FROM quarantine").fetchall():
            quarantined.setdefault((shard.rsplit("/", 1)[-1], key), []).append(reason)
        names = ("read", "kept", "quarantined", "shard_errors")
        counts = dict(zip(names, con.execute("SELECT * FROM accounting").fetchall()[0], strict=True))
    finally:
        con.close()
    return accepted, quarantined, counts


def mismatches(run, truths: list[ShardTruth]) -> list[str]:
    """Returns what an ingested run got wrong about hostile shards (empty when all is right): a good sample not
    accepted with its uid, a faulty one without its reason, a cut tar without its shard error, or counts that
    do not add up."""
    accepted, quarantined, counts = outcome(run)
    wrong = [] if counts["read"] == counts["kept"] + counts["quarantined"] else [f"accounting {counts}"]
    for truth in truths:
        for key, reason in truth.expected:
            where = (truth.path.name, key)
            if not truth.readable(key):
                continue
            if reason is None and accepted.get(where) != truth.uids[key]:
                wrong.append(f"{where} not accepted")
            elif reason is not None and reason not in quarantined.get(where, []):
                wrong.append(f"{where} lacks quarantine reason {reason!r}: {quarantined.get(where)}")
        cut_early = truth.cut is not None and truth.cut < max(truth.ends.values()) + 512  # before the end block
        if cut_early and "unreadable tar" not in quarantined.get((truth.path.name, None), []):
            wrong.append(f"{truth.path.name} cut at {truth.cut} without a shard error")
    return wrong
