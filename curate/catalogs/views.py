"""Builds catalog.duckdb: views over the run's Parquet files, with paths relative to the run folder.

The views hold no data, only globs under the run folder that each connection names (curate.catalogs.connection's
run_file), so the run folder can be moved and the current directory never matters; each view checks that the folder
it reads is the run's own (a plain DuckDB opening the catalog from elsewhere gets an error, not another run's rows).
Small tables: `stages`, the stage graph's status when the catalog was last built (every stage rebuilds it),
`catalog_info`, the run's id, and `distilled_columns`, the (empty) columns of the distilled view.
"""

import json
import re
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from curate.catalogs.connection import CATALOG, connect, open_database, run_file
from curate.errors import UsageError
from curate.graph import entries, status
from curate.io.schema import QUARANTINE_SCHEMA, SAMPLES_SCHEMA, SHARD_MARKER_SCHEMA
from curate.rundir import RunDir

DUPLICATES = "quarantine/_duplicate_uids.parquet"
STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DISTILLED = "distilled"  # curate.distill.run writes RUN/distilled/<name>/
DISTILLED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # curate.distill.layout checks set names with it
LABELS, FINISHED = "labels.parquet", "distilled.json"  # a set's rows, and the file written when it is finished
# Every view over the run's files checks that the manifest its relative paths reach is this run's: a catalog
# opened by a plain DuckDB from inside another run's folder fails with this message instead of reading that run.
# The manifest is read as text: DuckDB's JSON reader takes a 32 MiB buffer for each reference to a view, and the
# stage counts view refers to samples once per stage (a run of a dozen stages went past 1 GB to build).
GUARD = "curate_run_check"
GUARD_MACRO = (
    f"CREATE MACRO {GUARD}() AS (SELECT CASE WHEN max(m.run_id) IS NOT DISTINCT FROM (SELECT run_id FROM catalog_info)"
    " THEN true ELSE error('this catalog.duckdb belongs to another run folder than the one its relative paths reach:"
    " open it from inside its own run folder, or with curate.catalogs.connect(RUN)') END"
    " FROM (SELECT json_extract_string(content, '$.run_id') AS run_id"
    f" FROM read_text({run_file('manifest.json')})) AS m)"
)


def sample_columns(run: RunDir) -> dict[str, str]:
    """Returns the samples view's columns, name -> DuckDB type, in view order."""
    con = connect(run)
    try:
        return dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE samples)").fetchall())
    finally:
        con.close()


def quoted(column: str) -> str:
    """Returns a column name as a DuckDB identifier: in double quotes, a double quote in it doubled (a column the
    shards brought may be named anything)."""
    return '"' + column.replace('"', '""') + '"'


def require_columns(run: RunDir, columns: list[str]) -> list[str]:
    """Returns `columns` once each is a column of `samples` (so it may go into SQL as quoted(column)); raises
    UsageError naming the first unknown one and listing the known ones."""
    known = sample_columns(run)
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise UsageError(f"no column {unknown[0]!r} in samples; columns: {', '.join(known)}")
    return columns


MARKER_BYTES = 1 << 20  # the most one completion marker may hold (they hold a shard's name and counts)


def build_catalog(run: RunDir) -> Path:
    """(Re)creates catalog.duckdb from the files the run holds now; returns its path. The database is built in a
    private temporary folder (DuckDB cannot write one under a path holding '?') and copied in atomically, so a build
    that fails leaves nothing in the run."""
    with tempfile.TemporaryDirectory(prefix="curate-catalog-") as folder:
        built = Path(folder) / CATALOG
        _write_catalog(built, run)
        return run.write_bytes(CATALOG, built.read_bytes())


def _write_catalog(path: Path, run: RunDir) -> None:
    con = open_database(str(path), run, read_only=False)
    try:
        con.register("info_rows", pa.table({"run_id": [run.run_id()]}))
        con.execute("CREATE TABLE catalog_info AS SELECT * FROM info_rows")
        con.execute(GUARD_MACRO)
        for statement in catalog_statements(run, con):
            con.execute(statement)
        con.register("stage_rows", stages_table(run))
        con.execute("CREATE TABLE stages AS SELECT * FROM stage_rows")
    finally:
        con.close()


def _markers(path: str) -> str:
    """Returns the SQL that reads ingest's completion markers at `path` with their declared columns: DuckDB's
    auto-detection would buffer every file to sample it (a 10M-sample run's markers took more than 1 GB)."""
    types = {pa.string(): "VARCHAR", pa.int64(): "BIGINT"}
    columns = ", ".join(f"{f.name}: '{types[f.type]}'" for f in SHARD_MARKER_SCHEMA)
    return f"read_json({path}, columns = {{{columns}}}, maximum_object_size = {MARKER_BYTES})"


def parquet(glob: str) -> str:
    """Returns the DuckDB reader of the run's Parquet files matching a relative glob (a constant of this module)."""
    return f"read_parquet({run_file(glob)}, union_by_name = true)"


def guarded(reader: str) -> str:
    """Returns a SELECT of every row `reader` (a table function over the run's relative paths) gives, that fails
    with a clear error instead when the paths resolve into another run's folder."""
    return f"SELECT * FROM {reader} WHERE {GUARD}()"


def catalog_statements(run: RunDir, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Returns the CREATE VIEW statements for the run's current files, in dependency order."""
    current = sorted(name for name, state in status(run).items() if state == "current")
    stages = score_stages(run, current)
    statements = [
        "CREATE VIEW ingested AS " + _files_or_none(run, con, "samples/*.parquet", parquet("samples/*.parquet"),
                                                    SAMPLES_SCHEMA),
        "CREATE VIEW quarantine AS " + _files_or_none(run, con, "quarantine/*.parquet",
                                                      parquet("quarantine/*.parquet"), QUARANTINE_SCHEMA),
        "CREATE VIEW shards AS " + _files_or_none(run, con, "_done/ingest/*.json",
                                                  _markers(run_file("_done/ingest/*.json")),
                                                  SHARD_MARKER_SCHEMA),
    ]
    statements += [f"CREATE VIEW scores_{s} AS " + guarded(parquet(f"scores/{s}/*.parquet")) for s in stages]
    statements.append(_samples_view(run, stages))
    statements.append(_stage_counts_view(run, stages))
    statements.append(
        "CREATE VIEW accounting AS SELECT"
        " (SELECT coalesce(sum(read), 0) FROM shards)::BIGINT AS read,"
        " (SELECT count(*) FROM samples) AS kept,"
        " (SELECT count(*) FROM quarantine WHERE key IS NOT NULL) AS quarantined,"
        " (SELECT count(*) FROM quarantine WHERE key IS NULL) AS shard_errors"
    )
    clusters = _clusters_view(run, current)
    if clusters:
        statements.append(clusters)
    statements += _stage_table_views(run, current)
    if any((run.path / "evaluations").glob("*.parquet")):
        statements.append("CREATE VIEW evaluations AS " + guarded(parquet("evaluations/*.parquet")))
    distilled = _distilled_view(run, con)
    if distilled:
        statements.append(distilled)
    embeddings = _embeddings_view(run)
    return statements + ([embeddings] if embeddings else [])


def _files_or_none(run: RunDir, con: duckdb.DuckDBPyConnection, glob: str, reader: str, schema: pa.Schema) -> str:
    """Returns a guarded SELECT from `reader`, or while the run has no file matching `glob` (an ingest that wrote
    nothing) a SELECT of no rows with `schema`'s columns (typed by the catalog's connection `con`): DuckDB cannot
    bind a view over a glob that matches none."""
    if any(run.path.glob(glob)):
        return guarded(reader)
    empty = con.from_arrow(schema.empty_table())
    columns = ", ".join(f'NULL::{t} AS "{n}"' for n, t in zip(empty.columns, empty.types, strict=True))
    return f"SELECT {columns} WHERE false"


def _readable(path: Path) -> bool:
    """Returns True when `path` is a Parquet file with at least one column: a view over one that is not (a table
    written without columns, a damaged file) would fail every later catalog build."""
    try:
        return len(pq.read_schema(path).names) > 0
    except (OSError, pa.ArrowException):
        return False


def _distilled_view(run: RunDir, con: duckdb.DuckDBPyConnection) -> str | None:
    """One row per synthetic image of every finished distilled set (RUN/distilled/<name>/labels.parquet beside its
    distilled.json, which is written last): name, key, class, classname, soft_label, path, member. The view globs the
    sets when it is read, so a set deleted since the catalog was built is simply gone from it."""
    first = next(iter(sorted((run.path / DISTILLED).glob(f"*/{LABELS}"))), None)
    if first is None:
        return None
    # The columns even when every set is deleted later (read_parquet then reads no file and knows none).
    con.execute("CREATE TABLE distilled_columns AS SELECT * FROM read_parquet($path) LIMIT 0", {"path": str(first)})
    labels = f"read_parquet({run_file(f'{DISTILLED}/*/{LABELS}')}, union_by_name = true, allow_empty = true," \
             " filename = true)"
    sets = run_file(f"{DISTILLED}/*/{FINISHED}")
    finished = f"SELECT regexp_extract(file, '([^/]+)/{FINISHED}$', 1) FROM glob({sets})"
    return ("CREATE VIEW distilled AS SELECT COLUMNS(lambda c: c NOT IN ('empty', 'filename')) FROM ("
            f"SELECT * FROM {labels} UNION ALL BY NAME SELECT * FROM distilled_columns)"
            f" WHERE regexp_extract(filename, '([^/]+)/{LABELS}$', 1) IN ({finished}) AND {GUARD}()")


def score_stages(run: RunDir, current: list[str]) -> list[str]:
    """Returns the scores/ folders of the `current` stages that have written scores, sorted: stale or unfinished
    stages' columns are not in `samples`."""
    recorded, folder = entries(run), run.path / "scores"
    folders = {f for name in current for f in recorded[name].get("score_folders", [name])}
    return sorted(f for f in folders if STAGE_NAME.match(f) and any((folder / f).glob("*.parquet")))


def stages_table(run: RunDir) -> pa.Table:
    """Returns one row per recorded stage, inputs before the stages that read them: stage, status (current,
    stale or incomplete), options and counts (JSON), input_predicate, inputs, columns and stale_because."""
    recorded, states = entries(run), status(run)
    order: list[str] = []
    while len(order) < len(recorded):
        ready = sorted(n for n, e in recorded.items() if n not in order and set(e.get("inputs", {})) <= {*order})
        order += ready or sorted(set(recorded) - set(order))  # a legacy entry naming an unknown input
    rows = [recorded[n] for n in order]
    return pa.table({
        "stage": pa.array(order, pa.string()),
        "status": pa.array([states[n] for n in order], pa.string()),
        "options": pa.array([json.dumps(e.get("config"), sort_keys=True) for e in rows], pa.string()),
        "input_predicate": pa.array([e.get("where") for e in rows], pa.string()),
        "inputs": pa.array([sorted(e.get("inputs", {})) for e in rows], pa.list_(pa.string())),
        "columns": pa.array([list(e.get("columns", [])) for e in rows], pa.list_(pa.string())),
        "counts": pa.array([json.dumps(e.get("counts"), sort_keys=True) for e in rows], pa.string()),
        "stale_because": pa.array([e.get("stale_because") for e in rows], pa.string()),
    })


def ingested_samples(run: RunDir) -> str:
    """Returns a SELECT of the run's accepted samples with ingest's columns only: `samples` without the stages'
    joins, for a query that needs no stage's column (DuckDB keeps a view's LEFT JOINs even when nothing reads
    them)."""
    sql = "SELECT * FROM ingested"
    if (run.path / DUPLICATES).exists():
        # Later copies of a uid are quarantined (see the quarantine view), not shown twice here.
        sql += (f" ANTI JOIN read_parquet({run_file(DUPLICATES)}) AS d"
                " ON ingested.shard = d.shard AND ingested.key = d.key")
    return sql


def _samples_view(run: RunDir, stages: list[str]) -> str:
    sql = "CREATE VIEW samples AS " + ingested_samples(run)
    for stage in stages:
        sql += f" LEFT JOIN scores_{stage} USING (uid)"
    return sql


def _keep_columns(run: RunDir, stages: list[str]) -> list[str]:
    columns = []
    for stage in stages:
        first = next(iter(sorted((run.path / "scores" / stage).glob("*.parquet"))))
        columns += [c for c in pq.read_schema(first).names if c.endswith("_keep") and STAGE_NAME.match(c)]
    return columns


def _stage_counts_view(run: RunDir, stages: list[str]) -> str:
    parts = [
        f"SELECT '{c}' AS stage, count(*) FILTER ({c}) AS kept, count(*) FILTER (NOT {c}) AS dropped,"
        f" count(*) FILTER ({c} IS NULL) AS unscored FROM samples"
        for c in _keep_columns(run, stages)
    ]
    empty = "SELECT NULL::VARCHAR AS stage, 0::BIGINT AS kept, 0::BIGINT AS dropped, 0::BIGINT AS unscored WHERE false"
    return "CREATE VIEW stage_counts AS " + (" UNION ALL ".join(parts) if parts else empty)


def _clusters_view(run: RunDir, current: list[str]) -> str | None:
    """Per concept cluster: k-means sizes, then each current stage's per-cluster table (concepts/<stage>.parquet)."""
    folder = run.path / "concepts"
    if "kmeans" not in current or not _readable(folder / "kmeans.parquet"):
        return None
    sql = f"CREATE VIEW clusters AS SELECT * FROM ({guarded(parquet('concepts/kmeans.parquet'))}) AS kmeans"
    for name in current:
        if name != "kmeans" and STAGE_NAME.match(name) and _readable(folder / f"{name}.parquet"):
            sql += f" LEFT JOIN {parquet(f'concepts/{name}.parquet')} AS {name} USING (cluster_id)"
    return sql + " ORDER BY cluster_id"


def _stage_table_views(run: RunDir, current: list[str]) -> list[str]:
    """Returns a view <stage>_<table> over each current stage's own table, concepts/<stage>_<table>.parquet."""
    folder = run.path / "concepts"
    current = [name for name in current if STAGE_NAME.match(name)]
    views = []
    for name in current:
        for path in sorted(folder.glob(f"{name}_*.parquet")) if folder.exists() else []:
            if not _readable(path):
                continue
            if STAGE_NAME.match(path.stem) and not any(path.stem.startswith(f"{o}_") for o in current if o != name
                                                       and o.startswith(f"{name}_")):
                views.append(f"CREATE VIEW {path.stem} AS " + guarded(parquet(f"concepts/{path.name}")))
    return views


def _embeddings_view(run: RunDir) -> str | None:
    files = sorted((run.path / "embeddings").glob("*.parquet"))
    if not files:
        return None
    dim = pq.read_schema(files[0]).field("image_embedding").type.list_size
    # Parquet has no fixed-size list: DuckDB reads FLOAT[] back, so cast to the fixed width on read.
    return (
        f"CREATE VIEW embeddings AS SELECT uid, image_embedding::FLOAT[{dim}] AS image_embedding,"
        f" text_embedding::FLOAT[{dim}] AS text_embedding FROM ({guarded(parquet('embeddings/*.parquet'))})"
    )
