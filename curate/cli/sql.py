"""Query a run's catalog in SQL, read-only: a query of your own or a saved one from catalogs/queries."""

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.api import open as open_run
from curate.errors import UsageError
from curate.outputs import Output, run_and_sources, write_file
from curate.rundir import RunDir

OUTPUT_FORMATS = ("table", "csv", "json", "parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the sql command's options."""
    parser.add_argument("run", help="run folder")
    parser.add_argument("query", nargs="?", help="SQL over the views samples, quarantine, shards, accounting, ...")
    parser.add_argument("--saved", help="run a saved query by name instead (see catalogs/queries)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="table")
    parser.add_argument("--out", help="write the result to this file instead of standard output (never inside a run "
                        "folder or over its source shards)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--max-rows", type=int, default=40, help="rows shown by --format table (default 40)")


def run(args: argparse.Namespace) -> int:
    """Runs the query against the catalog and writes its result; returns 0."""
    from curate.catalogs import saved_query

    if (args.query is None) == (args.saved is None):
        raise UsageError("give either a QUERY or --saved NAME")
    if args.format == "parquet" and not args.out:
        raise UsageError("--format parquet needs --out FILE")
    query = saved_query(args.saved) if args.saved else args.query
    run = open_run(args.run)
    out = None if args.out is None else result_output(run.path).check(args.out, args.overwrite)
    write_result(run.arrow(query), args.format, out, args.max_rows)
    return 0


def result_output(run: Path) -> Output:
    """Returns what `curate sql --out` writes: a file, never inside a run folder or over the run's source shards."""
    return Output(folder=False, protected=run_and_sources(RunDir(run)))


def write_result(table: pa.Table, fmt: str, out: Path | None, max_rows: int = 40) -> None:
    """Writes `table` as fmt to the file `out` (atomically), or to standard output when out is None."""
    if fmt == "parquet":
        write_file(out, lambda temp: pq.write_table(table, temp))
        return
    text = {"table": _as_text_table, "csv": _as_csv, "json": _as_json}[fmt](table, max_rows)
    if out:
        write_file(out, lambda temp: temp.write_text(text, encoding="utf-8"))
    else:
        sys.stdout.write(text)


def _as_text_table(table: pa.Table, max_rows: int) -> str:
    import duckdb

    return str(duckdb.from_arrow(table).limit(max_rows)) + (
        f"({table.num_rows} rows, {max_rows} shown)\n" if table.num_rows > max_rows else ""
    )


def _as_csv(table: pa.Table, _max_rows: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(row.values())
    return buffer.getvalue()


def _as_json(table: pa.Table, _max_rows: int) -> str:
    return json.dumps(table.to_pylist(), default=str, ensure_ascii=False) + "\n"
