"""The shards' own columns on the driver: checked from the Parquet footers before anything is written, and after the
shards are read, one type per column for the whole run.

A column's type in the run is the type most of the shards that have it give it, a tie going to the type of the
earliest shard in input order; it is settled from the per-shard samples files' footers once every shard is read, so
it does not depend on the order workers finish in. A shard whose type differs keeps its samples, with that column's
values null (the column is dropped from its file), and the quarantine gets a row for the shard (no key) whose
detail names the column and both types."""

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import UsageError
from curate.io.columns import ALL, CLS, check_targets, class_labels, is_scalar
from curate.io.inputs import ShardTask
from curate.io.parquet_shards import kept_columns
from curate.io.readers import mapped_columns, shard_schema
from curate.io.samples import ReadOptions
from curate.io.schema import QUARANTINE_SCHEMA, SAMPLES_SCHEMA
from curate.rundir import RunDir

COLUMN_TYPES = "quarantine/_column_types.parquet"
MISMATCH = "column type mismatch"


def check_own_columns(tasks: list[ShardTask], options: ReadOptions) -> dict[str, list[str]]:
    """Raises UsageError (one line, before anything is written) when a column the inputs would add to samples
    cannot be one, clashes with curate's columns or a stage's prefix, or --columns or --rename name a column no
    input has; returns column -> class names of the Hugging Face ClassLabel columns kept, in order of appearance."""
    plan, kept, labels, parquet_names = options.plan, [], {}, set()
    for url in dict.fromkeys(t.url for t in tasks if t.kind != "webdataset"):
        schema = _schema_or_none(url)
        mapped = None if schema is None else mapped_columns(schema, options)
        if mapped is None:
            continue  # its reader quarantines it
        parquet_names |= set(schema.names)
        declared = class_labels(schema)
        for name in kept_columns(schema, mapped, options):
            kind = schema.field(name).type
            if not is_scalar(kind):
                raise UsageError(f"--columns names {name!r}, which holds {kind} values in {url}: only scalar columns "
                                 "(text, numbers, booleans, dates) can be columns of samples")
            kept.append((name, plan.target(name), f"the input {url}"))
            if name in declared:
                labels[plan.target(name)] = list(dict.fromkeys(labels.get(plan.target(name), []) + declared[name]))
    _check_named(options.columns, parquet_names, "--columns", "no Parquet input has")
    if options.json_columns and options.json_columns != (ALL,):
        kept += [(field, plan.target(field), "--json-columns") for field in options.json_columns]
    if any(t.kind == "webdataset" for t in tasks):
        kept.append((CLS, plan.target(CLS), "the .cls members"))
    if options.json_columns != (ALL,):  # under all, any json field may be renamed
        _check_named([old for old, _ in options.rename or ()], {source for source, _, _ in kept}, "--rename",
                     "is not a column any input keeps")
    check_targets(kept)
    return labels


def _check_named(names, known: set[str], flag: str, why: str) -> None:
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise UsageError(f"{flag} names {unknown[0]!r}, which {why}; the kept columns are named as the inputs name "
                         "them (case matters)")


def _schema_or_none(url: str) -> pa.Schema | None:
    try:
        return shard_schema(url)
    except Exception:  # any unreadable footer: the reader quarantines the file with its reason
        return None


def settle_column_types(run: RunDir, tasks: list[ShardTask]) -> dict[str, str]:
    """Gives every kept column one type for the run (see the module docstring): a shard that differs loses that
    column's values and gets a quarantine row. Returns column -> Arrow type, in order of first appearance."""
    found: dict[str, dict[str, list[ShardTask]]] = {}  # column -> type -> the shards of that type, in input order
    own = set(SAMPLES_SCHEMA.names)
    for task in tasks:
        path = run.path / "samples" / f"{task.shard_id}.parquet"
        if path.exists():
            for field in pq.read_schema(path):
                if field.name not in own:
                    found.setdefault(field.name, {}).setdefault(str(field.type), []).append(task)
    types, losers = {}, {}
    for name, shards in found.items():
        types[name] = max(shards, key=lambda kind: len(shards[kind]))  # the first of the most: the earliest shard's
        for kind, tasks_of_kind in shards.items():
            for task in tasks_of_kind if kind != types[name] else ():
                losers.setdefault(task, []).append((name, kind))
    rows = [dict(shard=task.url, key=None, uid=None, reason=MISMATCH,
                 detail=f"column {name!r} is {kind} in {task.shard_id} but {types[name]} in most shards: its "
                        "values there are null")
            for task, columns in losers.items() for name, kind in columns]
    _add_quarantine_rows(run, rows)  # first: a kill before the files are rewritten finds the mismatch again
    for task, columns in losers.items():
        relative = f"samples/{task.shard_id}.parquet"
        table = pq.read_table(run.path / relative)
        run.write_table(relative, table.drop_columns([name for name, _ in columns]))
    return types


def _add_quarantine_rows(run: RunDir, rows: list[dict]) -> None:
    """Adds `rows` to the run's column-type quarantine file (a rerun finds those already there again)."""
    path = run.path / COLUMN_TYPES
    old = pq.read_table(path).to_pylist() if path.exists() else []
    merged = sorted({tuple(r[c] for c in QUARANTINE_SCHEMA.names): r for r in old + rows}.values(),
                    key=lambda r: (r["shard"], r["detail"]))
    if len(merged) > len(old):
        run.write_table(COLUMN_TYPES, pa.Table.from_pylist(merged, schema=QUARANTINE_SCHEMA))
