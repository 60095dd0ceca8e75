"""What an export takes: the user's SQL predicate on the catalog's `samples` view, checked, streamed."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from curate.errors import UsageError
from curate.io.schema import SAMPLES_SCHEMA

# Ordered as the source shards lie, so each shard is opened once and read front to back.
ORDER = "shard, image_offset, uid"
ANY_UID = "(?s).*"


@dataclass(frozen=True)
class Selection:
    """A checked predicate and what it selects: the count, and the first sample each format would refuse."""

    where: str | None
    predicate: str
    samples: int
    metadata_only_uid: str | None  # a selected sample with no image bytes in its source (DataComp metadata)
    bad_uid: str | None  # a selected uid that does not fully match the writer's uid pattern


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


def select(con: duckdb.DuckDBPyConnection, where: str | None, uid_pattern: str | None) -> Selection:
    """Returns the Selection of `where`, running the predicate once over the catalog; raises UsageError."""
    predicate = check_predicate(where)
    sql = (
        "SELECT count(*), min(uid) FILTER (image_offset IS NULL),"
        " min(uid) FILTER (NOT regexp_full_match(uid, $uid_pattern))"
        f" FROM samples WHERE (\n{predicate}\n)"
    )
    try:
        rows = con.sql(sql, params={"uid_pattern": uid_pattern or ANY_UID}).fetchall()
    except duckdb.Error as exc:
        raise _predicate_error(where, exc) from None
    count, metadata_only, bad = rows[0]
    return Selection(where, predicate, int(count), metadata_only, bad)


def selected_uids(con: duckdb.DuckDBPyConnection, where: str | None) -> pa.ChunkedArray:
    """Returns the uids of the samples `where` selects (all for None); raises UsageError for a bad predicate."""
    try:
        return con.sql(f"SELECT uid FROM samples WHERE (\n{check_predicate(where)}\n)").to_arrow_table()["uid"]
    except duckdb.Error as exc:
        raise _predicate_error(where, exc) from None


def iter_selected(
    con: duckdb.DuckDBPyConnection, selection: Selection, batch_rows: int
) -> Iterator[pa.Table]:
    """Yields the selected samples' catalog rows (SAMPLES_SCHEMA), at most `batch_rows` a table, in ORDER."""
    columns = ", ".join(SAMPLES_SCHEMA.names)
    sql = f"SELECT {columns} FROM samples WHERE (\n{selection.predicate}\n) ORDER BY {ORDER}"
    try:
        reader = con.sql(sql).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                yield pa.Table.from_batches([batch]).cast(SAMPLES_SCHEMA)
    except duckdb.Error as exc:
        raise _predicate_error(selection.where, exc) from None


def _predicate_error(where: str | None, exc: duckdb.Error) -> UsageError:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UsageError(f"invalid --where predicate {where!r}: {first_line}")


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
        raise UsageError(f"invalid --where predicate {where!r}: {tree.get('error_message', 'does not parse')}")
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
