"""`curate annotate`: a table of the user's (Parquet, CSV, JSON lines, or a frame from Python) joined to the run's
samples as a stage of the graph.

The table is matched on one of the samples' own keys (uid, key, url or sha256), which must not repeat in it; its
columns become columns of `samples` named NAME_<column> (or as they are, with prefix=False), through the stage's
file scores/NAME/annotation.parquet. The join runs in DuckDB under the catalog's memory limit, reading the table where
it lies and streaming the result into the run, so neither side is held whole. The stage's options record the table's
SHA-256: annotating again from another table (or a changed one) makes stale every stage that read its columns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from curate.catalogs.connection import CATALOG, open_database
from curate.catalogs.views import STAGE_NAME, ingested_samples, quoted, sample_columns
from curate.errors import UsageError, first_line
from curate.graph import ANNOTATION, StageRun, entries
from curate.io.columns import STAGE_PREFIXES, check_targets, is_scalar
from curate.rundir import RunDir
from curate.stages.step import stage_step

KEYS = ("uid", "key", "url", "sha256")  # the samples columns a table may be matched on
OUTPUT = "annotation.parquet"
BATCH_ROWS = 65_536
HASH_BYTES = 1 << 20
# Stage names an annotation cannot take: curate's own stages and the prefixes of their columns (every method's
# name among them, as tests/stages/test_ingest_columns.py checks).
RESERVED = frozenset({"ingest", "datacomp", *STAGE_PREFIXES})
READERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".ndjson": "json",
           ".json": "json"}


@dataclass(frozen=True)
class Annotation:
    """What to join: the stage's `name`, the samples key it is matched `on`, the table's `columns` to keep (None:
    all but the key) and whether they are named NAME_<column> (`prefix`)."""

    name: str
    on: str = "uid"
    columns: tuple[str, ...] | None = None
    prefix: bool = True

    def __post_init__(self):
        if not STAGE_NAME.match(self.name) or len(self.name) > 64:
            raise UsageError(f"--name {self.name!r}: use lowercase letters, digits and underscores, starting with a "
                             "letter (it names the stage and prefixes its columns)")
        if self.name in RESERVED or any(self.name.startswith(f"{p}_") for p in STAGE_PREFIXES):
            raise UsageError(f"--name {self.name!r} is a name of curate's own stages; choose another")
        if self.on not in KEYS:
            raise UsageError(f"--on {self.on!r}: match on one of {', '.join(KEYS)}")

    def target(self, column: str) -> str:
        """Returns the samples column that the table's `column` becomes."""
        return f"{self.name}_{column}" if self.prefix else column


def annotate(run: RunDir, source: str | os.PathLike | pa.Table, annotation: Annotation) -> dict:
    """Joins `source` (a Parquet, CSV or JSON-lines file, or an Arrow table) to the run's samples as the stage
    `annotation.name`; returns its counts: rows in the table, samples matched, table rows matching no sample (and
    rows without a key), samples without a row. Raises UsageError (one line, nothing written) for an unreadable
    table, a key it lacks, repeats or holds as another type, or columns that cannot join samples."""
    label, digest = _describe(source)
    with _source(run, source, label, annotation.on) as con:
        columns = _check_table(run, con.table("annotation_source"), label, annotation)
        config = dict(source=label, sha256=digest, on=annotation.on, columns=columns, prefix=annotation.prefix)
        step = StageRun(annotation.name, config, ("ingest",), columns=tuple(annotation.target(c) for c in columns),
                        hint=f"curate annotate RUN --from {label} --on {annotation.on} --name {annotation.name}")
        # The join's connection opens once the step started: it may have rebuilt the catalog without the stage's
        # earlier columns (and files).
        with stage_step(run, step, lambda: _check_unique(con, label, annotation.on)) as (record, _), \
                _source(run, source, label, annotation.on) as current:
            record.update({"counts": _join(current, run, annotation, columns), ANNOTATION: True})
    return record["counts"]


@contextlib.contextmanager
def _source(run: RunDir, source: str | os.PathLike | pa.Table, label: str,
            on: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yields a connection to the run's catalog (not confined to the run folder: it reads the user's table) with the
    source as the view `annotation_source`."""
    con = open_database(str(run.path / CATALOG), run, read_only=True)
    try:
        _read(con, source, label, on)
        yield con
    finally:
        con.close()


def _describe(source: str | os.PathLike | pa.Table) -> tuple[str, str]:
    """Returns (how the config names the source: its absolute path, or "a table from Python"), its SHA-256)."""
    if isinstance(source, pa.Table):
        digest = hashlib.sha256(source.schema.serialize())
        for batch in source.to_batches():  # one batch's bytes at a time, not a copy of the table
            digest.update(batch.serialize())
        return "a table from Python", digest.hexdigest()
    path = Path(source).absolute()
    if path.suffix.lower() not in READERS:
        raise UsageError(f"--from {path}: give a .parquet, .csv, .tsv, .jsonl or .json file")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(HASH_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise UsageError(f"--from {path}: cannot read it ({exc.strerror or exc})") from None
    return str(path), digest.hexdigest()


def _read(con: duckdb.DuckDBPyConnection, source: str | os.PathLike | pa.Table, label: str, on: str) -> None:
    """Makes the source the view `annotation_source` of `con` (a CSV's key read as text: "000123" is a key, not the
    number 123); returns nothing."""
    try:
        if isinstance(source, pa.Table):
            con.register("annotation_arrow", source)
            relation = con.table("annotation_arrow")
        else:
            relation = _read_file(con, label)
        con.register("annotation_source", relation)
    except duckdb.Error as exc:
        raise UsageError(f"--from {label}: cannot read it as a table: {first_line(exc)}") from None


def _read_file(con: duckdb.DuckDBPyConnection, path: str) -> duckdb.DuckDBPyRelation:
    kind = READERS[Path(path).suffix.lower()]
    if kind == "parquet":
        return con.read_parquet(path)
    if kind == "json":
        return con.read_json(path, format="auto")
    header = con.read_csv(path)
    return con.read_csv(path, dtype={k: "VARCHAR" for k in KEYS if k in header.columns})


def _check_table(run: RunDir, table: duckdb.DuckDBPyRelation, label: str, annotation: Annotation) -> list[str]:
    """Returns the table's columns to keep, once the key is there as text and each kept column can join samples
    under its name (scalar, named so it clashes with nothing that is or will be in samples)."""
    schema = table.limit(0).to_arrow_table().schema
    if annotation.on not in schema.names:
        raise UsageError(f"--from {label} has no column {annotation.on!r} to match on; its columns: "
                         f"{', '.join(schema.names)}")
    if not pa.types.is_string(schema.field(annotation.on).type) and not pa.types.is_large_string(
            schema.field(annotation.on).type):
        raise UsageError(f"--from {label}: its {annotation.on} column holds {schema.field(annotation.on).type} "
                         f"values, the run's {annotation.on} is text; write the keys as text")
    others = [n for n in schema.names if n != annotation.on]
    unknown = [c for c in annotation.columns or () if c not in others]
    if unknown:
        raise UsageError(f"--columns names {unknown[0]!r}, which --from {label} does not have besides the key; "
                         f"its columns: {', '.join(others)}")
    columns = list(annotation.columns or others)
    if not columns:
        raise UsageError(f"--from {label} has no column besides {annotation.on}: nothing to annotate")
    for column in columns:
        if not is_scalar(schema.field(column).type):
            raise UsageError(f"--from {label}: the column {column!r} holds {schema.field(column).type} values; only "
                             "scalar columns can be columns of samples (leave it out with --columns)")
    where = f"--from {label}"
    check_targets([(c, annotation.target(c), where) for c in columns])
    own = set(entries(run).get(annotation.name, {}).get("columns", ()))
    present = {c.casefold(): c for c in sample_columns(run) if c not in own}
    for column in columns:
        if annotation.target(column).casefold() in present:
            raise UsageError(f"the column {annotation.target(column)!r} of {where} would clash with the samples "
                             f"column {present[annotation.target(column).casefold()]!r}; keep the prefix, or "
                             "choose another --name")
    return columns


def _check_unique(con: duckdb.DuckDBPyConnection, label: str, on: str) -> None:
    """Raises UsageError when a key repeats in the table (which of its rows a sample gets would be arbitrary)."""
    repeated = con.execute(f"SELECT {quoted(on)}, count(*) FROM annotation_source WHERE {quoted(on)} IS NOT NULL "
                       f"GROUP BY ALL HAVING count(*) > 1 LIMIT 1").fetchall()
    if repeated:
        key, count = repeated[0]
        raise UsageError(f"--from {label} repeats the {on} {key!r} ({count} rows): each {on} may have one row; "
                         "remove the repeats first")


def _join(con: duckdb.DuckDBPyConnection, run: RunDir, annotation: Annotation, columns: list[str]) -> dict:
    """Writes scores/NAME/annotation.parquet (uid and the annotated columns of every matched sample); returns the
    counts."""
    on = quoted(annotation.on)
    picked = ", ".join(f"a.{quoted(c)} AS {quoted(annotation.target(c))}" for c in columns)
    samples = f"({ingested_samples(run)})"  # ingest's columns alone: the stages' joins would cost a join each
    query = (f"SELECT s.uid, {picked} FROM (SELECT uid, {on} AS match_key FROM {samples}) AS s"
             f" JOIN annotation_source AS a ON s.match_key = a.{on} ORDER BY s.uid")
    matched = 0

    def counted(reader: pa.RecordBatchReader) -> Iterator[pa.Table]:
        nonlocal matched
        for batch in reader:
            matched += batch.num_rows
            yield pa.Table.from_batches([batch])

    try:
        reader = con.sql(query).to_arrow_reader(BATCH_ROWS)
        run.write_batches(f"scores/{annotation.name}/{OUTPUT}", reader.schema, counted(reader))
        rows, keyless, used = con.execute(
            f"SELECT count(*), count(*) FILTER ({on} IS NULL), count(*) FILTER ({on} IN (SELECT {on} FROM {samples}))"
            " FROM annotation_source").fetchone()
        total = con.execute(f"SELECT count(*) FROM {samples}").fetchone()[0]
    except duckdb.Error as exc:
        raise UsageError(f"annotate {annotation.name}: the join failed: {first_line(exc)}") from None
    return dict(rows=rows, matched=matched, unmatched_rows=rows - keyless - used, rows_without_key=keyless,
                samples_without_row=total - matched)
