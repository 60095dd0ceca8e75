"""The shards' own columns that ingest keeps beside curate's: a WebDataset `.cls` member, top-level json fields
named by --json-columns, and a Parquet file's scalar columns (Hugging Face ClassLabel values read as their names),
renamed by --rename. Everything here runs on untrusted names and values: a name curate cannot hold is refused in one
line, and a value of another type than its column's is the sample's problem, never the shard's."""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import UsageError
from curate.io.schema import DATACOMP_SCORE_COLUMNS, SAMPLES_SCHEMA

ALL = "all"  # --json-columns all: every top-level scalar field
CLS = "cls"  # the column a WebDataset .cls member fills
# Columns stages add to samples without a prefix of their own: the k-means stage's (curate.concepts.partition's
# COLUMNS, whose module loads faiss) and DataComp's scores.
UNPREFIXED = ("cluster_id", "dist_to_centroid", *DATACOMP_SCORE_COLUMNS)
# Every other stage names its columns <stage>_*: the filters (curate.filters.FILTERS, which imports the stages: a
# test checks this list holds each), decontaminate, the k-means stage, descriptor sets.
STAGE_PREFIXES = ("basic", "dbp", "decontam", "dfn", "dq", "embed", "kmeans", "neardup", "random", "semdedup")
INT64 = (-(2**63), 2**63)
INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def name_list(value: object) -> tuple[str, ...] | None:
    """Returns column names from "a,b" (the command line) or a list or tuple (Python, a recorded config), as a
    tuple; None stays None. Raises UsageError for anything else."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise UsageError(f"expected column names separated by commas, got {value!r}")
    return tuple(names)


def rename_pairs(value: object) -> tuple[tuple[str, str], ...] | None:
    """Returns (old, new) pairs from "old=new,old2=new2" (the command line), a dict or a list of pairs (Python, a
    recorded config); None stays None. Raises UsageError for anything else or an old name given twice."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.split("=", 1) for part in value.split(",")]
    pairs = list(value.items()) if isinstance(value, dict) else value
    if not all(isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(n, str) and n for n in p)
               for p in pairs):
        raise UsageError(f"--rename takes old=new pairs separated by commas, got {value!r}")
    olds = [old for old, _ in pairs]
    if len(set(olds)) != len(olds):
        raise UsageError(f"--rename names {sorted(o for o in olds if olds.count(o) > 1)[0]!r} twice")
    return tuple((old, new) for old, new in pairs)


def name_problem(name: str) -> str | None:
    """Returns why `name` cannot be a column of samples (empty, too long, control characters, not valid Unicode), or
    None: quotes, spaces, SQL keywords and any other Unicode are fine (every query quotes it)."""
    if not name or len(name) > 255:
        return "names must have 1 to 255 characters"
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Cf") for ch in name):
        return "names must not hold control characters or lone surrogates"
    return None


def clash_of(name: str) -> str | None:
    """Returns the column of curate (or the stage prefix) that `name` clashes with in samples, where column names
    are case-insensitive, or None."""
    folded = name.casefold()
    for own in (*SAMPLES_SCHEMA.names, *UNPREFIXED):
        if folded == own:
            return own
    return next((f"{p}_*" for p in STAGE_PREFIXES if folded.startswith(f"{p}_")), None)


@dataclass(frozen=True)
class ColumnPlan:
    """Which json fields a worker keeps as columns, and every kept column's name: the read options' json_columns
    and rename (their columns, for Parquet, is applied by curate.io.parquet_shards.kept_columns)."""

    json_columns: tuple[str, ...] | None = None
    rename: tuple[tuple[str, str], ...] | None = None

    def target(self, name: str) -> str:
        """Returns the samples column that the source column or field `name` fills."""
        return dict(self.rename or ()).get(name, name)

    def json_values(self, meta: dict | None) -> dict[str, object]:
        """Returns column -> value of the sample's json fields that become columns. A field named by --json-columns
        that holds an object or a list raises ValueError (the sample is quarantined with it); under `all`, such
        fields, and fields whose name clashes with curate's columns or cannot be a column, stay in json only."""
        if not self.json_columns or not meta:
            return {}
        if self.json_columns != (ALL,):
            out = {}
            for field in self.json_columns:
                value = meta.get(field)
                if isinstance(value, dict | list):
                    raise ValueError(f"json field {field!r} is {'an object' if isinstance(value, dict) else 'a list'}"
                                     ", not a scalar: --json-columns keeps only text, numbers and booleans")
                out[self.target(field)] = value
            return out
        out = {}
        for field, value in meta.items():
            column = self._all_target(field)
            if column is not None and not isinstance(value, dict | list):
                out[column] = value
        return out

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - a frozen plan, hashable, lives as long as its read options
    def _all_target(self, field: str) -> str | None:
        """Returns the column a json field becomes under `all`, or None when it stays in json only (its name clashes
        with `cls` or curate's columns, or cannot be a column): the same few names come in every sample."""
        column = self.target(field)
        if column == self.target(CLS) or name_problem(column) is not None or clash_of(column) is not None:
            return None
        return column


def cls_value(data: bytes) -> int | str | None:
    """Returns a .cls member's class: an integer when its text is one (in int64), else the text; None when empty.
    Raises ValueError when it is not UTF-8."""
    text = data.decode("utf-8").strip()
    if not text:
        return None
    if len(text) < 21 and INTEGER_TEXT.fullmatch(text) and INT64[0] <= int(text) < INT64[1]:
        return int(text)
    return text


def python_column(values: list) -> pa.Array | None:
    """Returns one shard's values of a json or .cls column as an Arrow array of the shard's type: bool, int64,
    float64 (integers and floats mixed) or string; a column mixing other kinds is text, each non-text value as its
    json. None when every value is null (the column is left out of the shard: null)."""
    kinds = {_kind(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds <= {"bool"} or kinds <= {"int"}:
        return pa.array(values, pa.bool_() if kinds == {"bool"} else pa.int64())
    if kinds <= {"int", "float"}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if INT64[0] <= value < INT64[1] else "text"
    return "float" if isinstance(value, float) else "text"


def is_scalar(kind: pa.DataType) -> bool:
    """Returns whether a Parquet column of this type can be a column of samples: booleans, numbers, text, dates,
    times and decimals, or a dictionary of those (binary, lists, structs and maps cannot)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
                or pa.types.is_nested(kind) or pa.types.is_null(kind) or pa.types.is_binary_view(kind))


def canonical(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Returns a Parquet column in the type samples keep for its kind, so files that differ only in width agree:
    dictionaries decoded, signed and small unsigned integers as int64, floats as float64, text as string."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values, kind = values.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind) and kind != pa.uint64():
        return values.cast(pa.int64())
    if pa.types.is_floating(kind):
        return values.cast(pa.float64())
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return values.cast(pa.string())
    return values


def class_labels(schema: pa.Schema) -> dict[str, list[str]]:
    """Returns column -> class names of the Hugging Face ClassLabel features that a Parquet file's `huggingface`
    schema metadata declares (malformed metadata declares none)."""
    try:
        info = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
        features = info.get("info", {}).get("features", {})
    except (ValueError, AttributeError, RecursionError):
        return {}
    if not isinstance(features, dict):
        return {}
    return {name: feature["names"] for name, feature in features.items()
            if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and name in schema.names
            and isinstance(feature.get("names"), list) and all(isinstance(n, str) for n in feature["names"])}


def label_names(values: pa.ChunkedArray, names: list[str]) -> pa.ChunkedArray | pa.Array:
    """Returns ClassLabel indices as their class names; an index out of range (Hugging Face's -1: no label) is
    null."""
    values = pc.cast(values, pa.int64())
    valid = pc.and_(pc.greater_equal(values, 0), pc.less(values, len(names)))
    return pc.take(pa.array(names, pa.string()), pc.if_else(valid, values, None))


def source_table(table: pa.Table, plan: ColumnPlan, labels: dict[str, list[str]]) -> tuple[pa.Table, list[str]]:
    """Returns a Parquet piece's kept columns as samples hold them (ClassLabel values as names, every other column
    in its canonical type, renamed), and a line per column whose text cells were not valid UTF-8 (nulled: Parquet
    does not check, and DuckDB refuses a file holding one)."""
    columns, problems = {}, []
    for name in table.column_names:
        values = label_names(table[name], labels[name]) if name in labels else canonical(table[name])
        values, bad = _valid_text(values)
        if bad:
            problems.append(f"column {name!r}: {bad} text values are not valid UTF-8; they are null")
        columns[plan.target(name)] = values
    return pa.table(columns), problems


def _valid_text(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, int]:
    """Returns a text column with its cells that are not valid UTF-8 nulled, and how many there were."""
    if values.type != pa.string():
        return values, 0
    try:
        values.validate(full=True)
        return values, 0
    except pa.ArrowInvalid:
        raw = values.cast(pa.binary()).to_pylist()
        texts = [_decoded(v) for v in raw]
        return pa.chunked_array([pa.array(texts, pa.string())]), sum(
            t is None and v is not None for t, v in zip(texts, raw, strict=True))


def _decoded(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_targets(kept: list[tuple[str, str, str]]) -> None:
    """Raises UsageError (one line) for the first kept column, (source name, samples name, where it comes from),
    whose samples name is not allowed, clashes with curate's columns or a stage's prefix, or equals another kept
    column's but for case; the message says how to rename it. Returns nothing."""
    seen: dict[str, str] = {}
    for source, target, where in kept:
        problem = name_problem(target)
        if problem:
            raise UsageError(f"the column {target!r} of {where} cannot be a column: {problem}; "
                             f"rename it: --rename {source}=NEW")
        clash = clash_of(target)
        if clash:
            raise UsageError(f"the column {target!r} of {where} clashes with curate's column {clash} in samples; "
                             f"rename it: --rename {source}=source_{target}")
        other = seen.setdefault(target.casefold(), source)
        if other != source:
            raise UsageError(f"the columns {other!r} and {source!r} would both be {target!r} in samples (names are "
                             f"case-insensitive); rename one: --rename {source}=NEW")


def own_columns(samples: pa.Table, values: list[dict], positions: list[int | None],
                source: pa.Table | None) -> pa.Table:
    """Returns the accepted `samples` with the shard's own columns appended: the json and .cls `values` of each
    sample, typed for the shard (python_column), then a Parquet piece's `source` columns at each sample's row."""
    columns = {name: python_column([row.get(name) for row in values])
               for name in dict.fromkeys(name for row in values for name in row)}
    if source is not None:
        taken = source.take(pa.array(positions, pa.int64()))
        columns |= dict(zip(taken.column_names, taken.columns, strict=True))
    held = {name.casefold() for name in samples.column_names}
    for name, array in columns.items():
        if array is not None and name.casefold() not in held:  # the checks let no clash through; this keeps it so
            samples = samples.append_column(name, array)
            held.add(name.casefold())
    return samples
