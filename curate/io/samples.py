"""One shard's outputs while it is read: accepted sample rows and quarantine rows, checked one rule at a time."""

import hashlib
import json
from dataclasses import dataclass, field

import pyarrow as pa

from curate.io.images import DEFAULT_MAX_PIXELS, BadImage, inspect_image
from curate.io.inputs import ShardTask
from curate.io.schema import QUARANTINE_SCHEMA, SAMPLES_SCHEMA


@dataclass(frozen=True)
class ReadOptions:
    """How shards are read: the pixel limit and, for Parquet shards, which columns hold what."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    image_column: str | None = None
    caption_column: str | None = None
    key_column: str | None = None
    uid_column: str = "uid"
    url_column: str = "url"
    datacomp_embeddings: str = "l14"


@dataclass
class RawSample:
    """A sample as found in a shard, before any check: bytes and text exactly as stored."""

    key: str
    image: bytes | None = None
    image_offset: int | None = None
    caption: bytes | str | None = None
    json_text: bytes | str | None = None
    url: str | None = None
    uid: str | None = None
    note: str | None = None  # a structural problem the reader found (e.g. a member repeated)
    # Metadata-only samples (DataComp pools without tars) carry their image facts instead of bytes.
    metadata_only: bool = False
    width: int | None = None
    height: int | None = None
    sha256: str | None = None


def default_uid(shard_id: str, key: str) -> str:
    """Returns the 128-bit hex uid of a sample that carries none: a stable hash of shard name and key."""
    return hashlib.blake2b(f"{shard_id}/{key}".encode(), digest_size=16).hexdigest()


class SampleCheckError(Exception):
    """A sample fails a check; args are (reason, detail)."""


@dataclass
class ShardTables:
    """Accumulates one shard's accepted samples and quarantine rows, and counts what was read."""

    task: ShardTask
    options: ReadOptions
    samples: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    read: int = 0

    def quarantine_shard(self, reason: str, detail: str = "") -> None:
        """Records a failure of the whole shard (or of its unread rest): a row with no key."""
        self.quarantine.append(dict(shard=self.task.url, key=None, uid=None, reason=reason, detail=detail))

    def quarantine_sample(self, key: str, uid: str | None, reason: str, detail: str = "") -> None:
        """Records one read sample that could not be accepted."""
        self.read += 1
        self.quarantine.append(dict(shard=self.task.url, key=key, uid=uid, reason=reason, detail=detail))

    def add(self, raw: RawSample, json_expected: bool) -> None:
        """Checks a raw sample and files it as accepted or quarantined."""
        uid = raw.uid
        try:
            meta = _parse_json(raw.json_text, json_expected)
            uid = _uid_of(raw, meta, self.task.shard_id)
            caption = _caption_of(raw, meta)
            if raw.note:
                raise SampleCheckError(raw.note, "")
            image = {} if raw.metadata_only else self._image_fields(raw)
        except SampleCheckError as exc:
            self.quarantine_sample(raw.key, uid, *exc.args)
            return
        self.read += 1
        row = dict(
            uid=uid, shard=self.task.url, key=raw.key, url=raw.url or (meta or {}).get("url"),
            caption=caption, width=raw.width, height=raw.height, sha256=raw.sha256,
            json=None if meta is None else json.dumps(meta, ensure_ascii=False, sort_keys=True),
        )
        self.samples.append(row | image)

    def _image_fields(self, raw: RawSample) -> dict:
        if raw.image is None:
            raise SampleCheckError("missing image", "no jpg, png or webp member")
        try:
            info = inspect_image(raw.image, self.options.max_pixels)
        except BadImage as exc:
            raise SampleCheckError("bad image", str(exc)) from None
        return dict(
            width=info.width, height=info.height, sha256=hashlib.sha256(raw.image).hexdigest(),
            image_format=info.format, image_offset=raw.image_offset, image_size=len(raw.image),
        )

    def tables(self) -> dict[str, pa.Table]:
        """Returns the shard's samples and quarantine as Arrow tables."""
        return {
            "samples": pa.Table.from_pylist(self.samples, schema=SAMPLES_SCHEMA),
            "quarantine": pa.Table.from_pylist(self.quarantine, schema=QUARANTINE_SCHEMA),
        }

    def counts(self) -> dict[str, int]:
        """Returns read, accepted and quarantined sample counts, and shard-level errors."""
        shard_errors = sum(1 for q in self.quarantine if q["key"] is None)
        return dict(
            read=self.read, accepted=len(self.samples),
            quarantined=len(self.quarantine) - shard_errors, shard_errors=shard_errors,
        )


def _parse_json(text: bytes | str | None, expected: bool) -> dict | None:
    if text is None:
        if expected:
            raise SampleCheckError("missing json", "other samples in this shard have a .json member")
        return None
    try:
        meta = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SampleCheckError("invalid json", str(exc)[:200]) from None
    if not isinstance(meta, dict):
        raise SampleCheckError("invalid json", f"expected an object, got {type(meta).__name__}")
    return meta


def _uid_of(raw: RawSample, meta: dict | None, shard_id: str) -> str:
    uid = raw.uid if raw.uid is not None else (meta or {}).get("uid")
    if uid is None or uid == "":
        return default_uid(shard_id, raw.key)
    if isinstance(uid, (str, int)) and not isinstance(uid, bool):
        return str(uid)
    raise SampleCheckError("invalid uid", f"uid must be a string or integer, got {type(uid).__name__}")


def _caption_of(raw: RawSample, meta: dict | None) -> str:
    caption = raw.caption
    if caption is None:
        caption = (meta or {}).get("caption")
        if not isinstance(caption, str):
            raise SampleCheckError("missing caption", "no txt member and no caption in json")
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SampleCheckError("caption is not valid UTF-8", str(exc)[:200]) from None
    if not caption.strip():
        raise SampleCheckError("empty caption", "")
    return caption
