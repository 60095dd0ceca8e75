"""One shard's outputs while it is read: accepted sample rows and quarantine rows, checked one rule at a time.

Everything here is untrusted input: a value of the wrong type, text that is not valid Unicode, json nested past
any sane depth or a key seen twice makes that one sample a quarantine row with a reason; nothing one sample holds
can stop its shard, and every sample read is either accepted or quarantined.
"""

import hashlib
from dataclasses import dataclass, field

import pyarrow as pa

from curate.io.columns import CLS, ColumnPlan, cls_value, name_list, own_columns, rename_pairs
from curate.io.images import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    BadImage,
    ImageLimits,
    inspect_image,
)
from curate.io.inputs import ShardTask
from curate.io.jsonmeta import SampleCheckError, is_valid_text, parse_json
from curate.io.schema import QUARANTINE_SCHEMA, SAMPLES_SCHEMA
from curate.options import option

DEFAULT_MAX_MEMBER_BYTES = 256 * 2**20  # a tar member larger than this is not read into memory
# Web alt-texts run to a few kB at most (DataComp's longest are a few kB): 64 KiB leaves room and still bounds
# what one caption costs every later stage.
DEFAULT_MAX_CAPTION_BYTES = 64 * 2**10
CAPTION_TOO_LARGE = "caption too large"


@dataclass(frozen=True)
class ReadOptions:
    """How shards are read: the image, member and caption limits, for Parquet shards which columns hold what, and
    which of the shards' own columns samples keep (the option fields: `curate ingest` and the pipelines declare
    them from here)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    max_aspect: float = DEFAULT_MAX_ASPECT
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_caption_bytes: int = DEFAULT_MAX_CAPTION_BYTES
    image_column: str | None = None
    caption_column: str | None = None
    key_column: str | None = None
    uid_column: str = "uid"
    url_column: str = "url"
    datacomp_embeddings: str = "l14"
    embedding_dtype: str = "float32"  # how DataComp .npz embeddings are stored in the run (float16 halves them)
    columns: tuple[str, ...] | None = option(
        None, "Parquet and Hugging Face inputs: the columns to keep, a,b (default: every scalar column besides "
        "curate's own)",
        type=name_list)
    json_columns: tuple[str, ...] | None = option(
        None, "WebDataset json: the top-level fields to keep as typed columns, a,b or all (the json column stays)",
        type=name_list)
    rename: tuple[tuple[str, str], ...] | None = option(
        None, "kept columns under other names, old=new,old2=new2 (one that clashes with curate's must be)",
        type=rename_pairs)

    def __post_init__(self):
        object.__setattr__(self, "columns", name_list(self.columns))
        object.__setattr__(self, "json_columns", name_list(self.json_columns))
        object.__setattr__(self, "rename", rename_pairs(self.rename))

    @property
    def plan(self) -> ColumnPlan:
        """The shards' own columns to keep, as a worker applies them."""
        return ColumnPlan(self.json_columns, self.rename)


@dataclass
class RawSample:
    """A sample as found in a shard, before any check: bytes and text exactly as stored."""

    key: str
    image: bytes | None = None
    image_offset: int | None = None
    caption: bytes | str | None = None
    json_text: bytes | str | None = None
    url: object = None  # str when well formed; readers pass on whatever the source holds
    uid: object = None
    problem: tuple[str, str] | None = None  # (reason, detail) of a problem the reader found (a member repeated)
    # Metadata-only samples (DataComp pools without tars) carry their image facts instead of bytes.
    metadata_only: bool = False
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    cls: bytes | None = None  # a WebDataset .cls member
    position: int | None = None  # the row in the reader's piece of a Parquet file, whose kept columns it holds


def default_uid(shard_id: str, key: str) -> str:
    """Returns the 128-bit hex uid of a sample that carries none: a stable hash of shard name and key."""
    return hashlib.blake2b(f"{shard_id}/{key}".encode(), digest_size=16).hexdigest()


def caption_too_large(size: int, limit: int) -> tuple[str, str]:
    """Returns the (reason, detail) of a caption of `size` UTF-8 bytes over the limit `limit`."""
    return CAPTION_TOO_LARGE, f"caption is {size} bytes, over --max-caption-bytes {limit}"


@dataclass
class ShardTables:
    """Accumulates one shard's accepted samples and quarantine rows, and counts what was read."""

    task: ShardTask
    options: ReadOptions
    samples: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    read: int = 0
    keys: set[str] = field(default_factory=set)
    values: list[dict] = field(default_factory=list)  # per accepted sample: its json and .cls columns
    positions: list[int | None] = field(default_factory=list)  # per accepted sample: its row in `source`
    source: pa.Table | None = None  # a Parquet reader's kept columns of its piece's rows

    def quarantine_shard(self, reason: str, detail: str = "") -> None:
        """Records a failure of the whole shard (or of its unread rest): a row with no key."""
        self.quarantine.append(dict(shard=self.task.url, key=None, uid=None, reason=reason, detail=detail))

    def add_source(self, source: pa.Table, problems: list[str]) -> None:
        """Takes a Parquet piece's kept columns, a row per its rows, and a shard row (no key) per problem found in
        them."""
        self.source = source
        for problem in problems:
            self.quarantine_shard("invalid column text", problem)

    def quarantine_sample(self, key: str, uid: str | None, reason: str, detail: str = "") -> None:
        """Records one read sample that could not be accepted."""
        self.read += 1
        self.quarantine.append(dict(shard=self.task.url, key=key, uid=uid, reason=reason, detail=detail))

    def add(self, raw: RawSample, json_expected: bool) -> None:
        """Checks a raw sample and files it as accepted or quarantined."""
        uid = None
        try:
            key = _text(raw.key, "key")
            if key in self.keys:
                raise SampleCheckError("repeated key", "an earlier sample of this shard has the same key")
            if raw.problem:  # the reader could not take one of its members: nothing else about it can be trusted
                raise SampleCheckError(*raw.problem)
            meta, json_text = parse_json(raw.json_text, json_expected)
            uid = _uid_of(raw, meta, self.task.file_id)
            caption = _caption_of(raw, meta, self.options.max_caption_bytes)
            row = dict(uid=uid, shard=self.task.url, key=key, caption=caption, json=json_text,
                       url=_text(raw.url if raw.url is not None else (meta or {}).get("url"), "url"))
            row |= _metadata_facts(raw) if raw.metadata_only else self._image_fields(raw)
            values = self._own_values(raw, meta)
        except SampleCheckError as exc:
            self.quarantine_sample(printable(raw.key), uid, *exc.args)
            return
        except Exception as exc:
            self.quarantine_sample(printable(raw.key), uid, "unreadable sample", f"{type(exc).__name__}: {exc}"[:300])
            return
        self.read += 1
        self.keys.add(key)
        self.samples.append(row)
        self.values.append(values)
        self.positions.append(raw.position)

    def _own_values(self, raw: RawSample, meta: dict | None) -> dict:
        """Returns column -> value of the sample's json fields and .cls member that become columns."""
        plan = self.options.plan
        try:
            values = plan.json_values(meta)
        except ValueError as exc:
            raise SampleCheckError("invalid json column", str(exc)[:300]) from None
        if raw.cls is not None:
            try:
                values[plan.target(CLS)] = cls_value(raw.cls)
            except UnicodeDecodeError:
                raise SampleCheckError("invalid cls", "the .cls member is not valid UTF-8") from None
        return values

    def _image_fields(self, raw: RawSample) -> dict:
        if raw.image is None:
            raise SampleCheckError("missing image", "no jpg, png or webp member")
        options = self.options
        try:
            info = inspect_image(raw.image, ImageLimits(options.max_pixels, options.max_side, options.max_aspect))
        except BadImage as exc:
            raise SampleCheckError("bad image", str(exc)) from None
        return dict(
            width=info.width, height=info.height, sha256=hashlib.sha256(raw.image).hexdigest(),
            image_format=info.format, image_offset=raw.image_offset, image_size=len(raw.image),
        )

    def tables(self) -> dict[str, pa.Table]:
        """Returns the shard's samples (curate's columns, then the shard's own kept ones) and quarantine as Arrow
        tables."""
        try:
            samples = pa.Table.from_pylist(self.samples, schema=SAMPLES_SCHEMA)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            samples = self._representable_samples()
        samples = own_columns(samples, self.values, self.positions, self.source)
        return {"samples": samples, "quarantine": pa.Table.from_pylist(self.quarantine, schema=QUARANTINE_SCHEMA)}

    def _representable_samples(self) -> pa.Table:
        """Returns the accepted rows Arrow can hold, quarantining the others (the checks let nothing through
        that Arrow refuses; this keeps that promise if one ever does)."""
        kept = []
        for row, values, position in zip(self.samples, self.values, self.positions, strict=True):
            try:
                pa.Table.from_pylist([row], schema=SAMPLES_SCHEMA)
                kept.append((row, values, position))
            except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                self.quarantine.append(dict(shard=self.task.url, key=row["key"], uid=row["uid"],
                                            reason="unrepresentable value", detail=str(exc)[:300]))
        self.samples, self.values, self.positions = ([k[i] for k in kept] for i in range(3))
        return pa.Table.from_pylist(self.samples, schema=SAMPLES_SCHEMA)

    def counts(self) -> dict[str, int]:
        """Returns read, accepted and quarantined sample counts, and shard-level errors."""
        shard_errors = sum(1 for q in self.quarantine if q["key"] is None)
        return dict(
            read=self.read, accepted=len(self.samples),
            quarantined=len(self.quarantine) - shard_errors, shard_errors=shard_errors,
        )


def printable(value: object) -> str | None:
    """Returns a key as text Arrow can store, whatever it holds: invalid Unicode escaped, non-text as its repr."""
    if value is None or (isinstance(value, str) and is_valid_text(value)):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
    return repr(value)[:200]


def _text(value: object, name: str) -> str | None:
    """Returns a string field of the sample, None when absent; raises SampleCheckError for another type or
    text that is not valid Unicode (lone surrogates, member names that were not UTF-8)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise SampleCheckError(f"invalid {name}", f"{name} is not valid UTF-8") from None
    if not isinstance(value, str):
        raise SampleCheckError(f"invalid {name}", f"{name} must be text, got {type(value).__name__}")
    if not is_valid_text(value):
        raise SampleCheckError(f"invalid {name}", f"{name} is not valid Unicode (a lone surrogate)")
    return value


def _uid_of(raw: RawSample, meta: dict | None, shard_id: str) -> str:
    uid = raw.uid if raw.uid is not None else (meta or {}).get("uid")
    if uid is None or uid == "":
        return default_uid(shard_id, _text(raw.key, "key"))
    if isinstance(uid, int) and not isinstance(uid, bool):
        return str(uid)
    if isinstance(uid, str):
        return _text(uid, "uid")
    raise SampleCheckError("invalid uid", f"uid must be a string or integer, got {type(uid).__name__}")


def _caption_of(raw: RawSample, meta: dict | None, max_bytes: int) -> str:
    caption = raw.caption
    if caption is None:
        caption = (meta or {}).get("caption")
        if caption is None:
            raise SampleCheckError("missing caption", "no txt member and no caption in json")
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SampleCheckError("caption is not valid UTF-8", str(exc)[:200]) from None
    caption = _text(caption, "caption")
    size = len(caption.encode("utf-8"))
    if size > max_bytes:  # the readers keep such captions from memory where they can; json ones land here
        raise SampleCheckError(*caption_too_large(size, max_bytes))
    if not caption.strip():
        raise SampleCheckError("empty caption", "")
    return caption


def _metadata_facts(raw: RawSample) -> dict:
    """Returns the image facts a metadata-only sample (DataComp) carries instead of bytes, checked."""
    for name in ("width", "height"):
        value = getattr(raw, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31):
            raise SampleCheckError(f"invalid {name}", f"{name} must be a whole number of pixels, got {value!r}"[:200])
    return dict(width=raw.width, height=raw.height, sha256=_text(raw.sha256, "sha256"))
