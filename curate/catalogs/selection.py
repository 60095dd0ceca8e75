"""Selections: the user's SQL predicate on the catalog's `samples` view, checked, counted, streamed; the columns
it names."""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import duckdb
import pyarrow as pa

from curate.catalogs.views import quoted
from curate.errors import UsageError, first_line
from curate.io.schema import SAMPLES_SCHEMA

# Ordered as the source shards lie, so each shard is opened once and read front to back.
ORDER = "shard, image_offset, uid"
ANY_UID = "(?s).*"
SKIPPED_UIDS = 5  # the skipped samples a report names: the first uids in sort order


@dataclass(frozen=True)
class Writable:
    """Which selected samples a writer can hold: uids that fully match `uid_pattern` (said in words by `uid_rule`),
    and, when it `needs_images`, samples whose source has image bytes (not DataComp metadata alone)."""

    uid_pattern: str | None = None
    uid_rule: str = ""
    needs_images: bool = False

    def params(self) -> dict:
        """Returns the query parameters of WRITABLE."""
        return {"uid_pattern": self.uid_pattern or ANY_UID, "needs_images": self.needs_images}

    def reasons(self) -> dict[str, str]:
        """Returns reason -> the SQL condition under which a selected sample is skipped for it."""
        return {
            f"uid cannot be written: {self.uid_rule}": "NOT regexp_full_match(uid, $uid_pattern)",
            "no image bytes in the source (DataComp metadata only)": "image_offset IS NULL AND $needs_images",
        }


WRITABLE = "(regexp_full_match(uid, $uid_pattern) AND (image_offset IS NOT NULL OR NOT $needs_images))"


@dataclass(frozen=True)
class Selection:
    """A checked predicate and what it selects: the samples to write, the first one without image bytes, and
    the samples skipped because the writer cannot hold them (reason -> count, and the first few uids)."""

    where: str | None
    predicate: str
    samples: int
    metadata_only_uid: str | None
    writable: Writable = Writable()
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_uids: tuple[str, ...] = ()

    def with_skipped(self, lost: list[tuple[str, str]]) -> "Selection":
        """Returns this selection with the samples `lost` ((uid, reason) each, found while writing) counted among
        the skipped ones."""
        if not lost:
            return self
        skipped = dict(self.skipped)
        for _, reason in lost:
            skipped[reason] = skipped.get(reason, 0) + 1
        uids = sorted({*self.skipped_uids, *(uid for uid, _ in lost)})[:SKIPPED_UIDS]
        return replace(self, skipped=skipped, skipped_uids=tuple(uids))


def check_predicate(where: str | None) -> str:
    """Returns the SQL to put in WHERE ( ... ): TRUE for None, else `where` once it parses as one expression.

    Parsing it alone first means a predicate cannot close the parenthesis and append a clause of its own.
    """
    if where is None:
        return "TRUE"
    try:
        duckdb.SQLExpression(where)
    except duckdb.Error as exc:
        raise _predicate_error(where, exc) from None
    return where


def select(con: duckdb.DuckDBPyConnection, where: str | None, writable: Writable = Writable()) -> Selection:
    """Returns the Selection of `where` for a writer that can hold `writable` samples; raises UsageError for a bad
    predicate."""
    predicate = check_predicate(where)
    reasons = writable.reasons()
    counts = ", ".join(f"count(*) FILTER ({condition})" for condition in reasons.values())
    sql = (f"SELECT count(*) FILTER ({WRITABLE}), min(uid) FILTER (image_offset IS NULL), {counts}"
           f" FROM samples WHERE (\n{predicate}\n)")
    try:
        count, metadata_only, *skipped = con.sql(sql, params=writable.params()).fetchall()[0]
        first = f"SELECT uid FROM samples WHERE (\n{predicate}\n) AND NOT {WRITABLE} ORDER BY uid LIMIT {SKIPPED_UIDS}"
        uids = con.sql(first, params=writable.params()).fetchall() if any(skipped) else []
    except duckdb.Error as exc:
        raise _predicate_error(where, exc) from None
    by_reason = {reason: int(n) for reason, n in zip(reasons, skipped, strict=True) if n}
    return Selection(where, predicate, int(count), metadata_only, writable, by_reason, tuple(u for (u,) in uids))


def selected_uids(con: duckdb.DuckDBPyConnection, where: str | None) -> pa.ChunkedArray:
    """Returns the uids of the samples `where` selects (all for None); raises UsageError for a bad predicate."""
    try:
        return con.sql(f"SELECT uid FROM samples WHERE (\n{check_predicate(where)}\n)").to_arrow_table()["uid"]
    except duckdb.Error as exc:
        raise _predicate_error(where, exc) from None


def selected_query(con: duckdb.DuckDBPyConnection, where: str | None, columns: str, suffix: str = "",
                   batch_rows: int = 65536) -> pa.RecordBatchReader:
    """Returns a reader of `columns` (SQL the caller wrote) over the samples `where` selects, the query ending in
    `suffix` (e.g. GROUP BY); raises UsageError for a bad predicate."""
    sql = f"SELECT {columns} FROM samples WHERE (\n{check_predicate(where)}\n) {suffix}"
    try:
        return con.sql(sql).to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        raise _predicate_error(where, exc) from None


def iter_selected(
    con: duckdb.DuckDBPyConnection, selection: Selection, batch_rows: int, extra: Sequence[str] = ()
) -> Iterator[pa.Table]:
    """Yields the selected samples' catalog rows (SAMPLES_SCHEMA, then the samples columns `extra` as they are)
    that the writer can hold, at most `batch_rows` a table, in ORDER."""
    columns = ", ".join([*SAMPLES_SCHEMA.names, *(quoted(c) for c in extra)])
    sql = f"SELECT {columns} FROM samples WHERE (\n{selection.predicate}\n) AND {WRITABLE} ORDER BY {ORDER}"
    try:
        reader = con.sql(sql, params=selection.writable.params()).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                table = pa.Table.from_batches([batch])
                own = table.select(range(len(SAMPLES_SCHEMA))).cast(SAMPLES_SCHEMA)
                yield pa.Table.from_arrays([*own.columns, *table.columns[len(SAMPLES_SCHEMA):]],
                                           names=[*SAMPLES_SCHEMA.names, *extra])
    except duckdb.Error as exc:
        raise _predicate_error(selection.where, exc) from None


def _predicate_error(where: str | None, exc: duckdb.Error) -> UsageError:
    return invalid_predicate(where, first_line(exc))


def invalid_predicate(where: str | None, message: str) -> UsageError:
    """Returns the one-line error for a --where predicate that DuckDB refused with `message`."""
    return UsageError(f"invalid --where predicate {where!r}: {message}")


def predicate_columns(where: str | None) -> set[str]:
    """Returns the column names a SQL predicate refers to, as DuckDB parses it (names inside strings and comments
    don't count); raises UsageError when it is not one expression."""
    if where is None:
        return set()
    predicate = check_predicate(where)
    con = duckdb.connect()
    try:
        sql = con.execute("SELECT json_serialize_sql($q)", {"q": f"SELECT * FROM samples WHERE (\n{predicate}\n)"})
        tree = json.loads(sql.fetchone()[0])
    finally:
        con.close()
    if tree.get("error"):
        raise invalid_predicate(where, tree.get("error_message", "does not parse"))
    found: set[str] = set()
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class") == "COLUMN_REF":
                found.add(node["column_names"][-1])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
