"""Ingest: read input shards into the run's samples, quarantine and (for DataComp) embeddings tables."""

import platform
from dataclasses import asdict, dataclass

from curate.catalogs import build_catalog, connect
from curate.errors import UsageError
from curate.graph import StageRun
from curate.io.inputs import ShardTask, expand_inputs, split_large_parquet
from curate.io.readers import ShardOutput, read_shard
from curate.io.samples import ReadOptions
from curate.io.schema import DATACOMP_SCORE_COLUMNS, EMBEDDING_DTYPES, SAMPLES_SCHEMA
from curate.rundir import RunDir, check_run_folder
from curate.runners import Runner, ShardJob, as_runner, run_shard_job
from curate.stages.duplicates import write_duplicate_uids
from curate.stages.ingest_columns import check_own_columns, settle_column_types
from curate.stages.step import stage_step

# Read options added after runs were first recorded, with their defaults.
LATER_DEFAULTS = {"embedding_dtype": "float32", "columns": None, "json_columns": None, "rename": None}


@dataclass
class IngestJob(ShardJob):
    """The shard job that reads one shard; it needs no per-worker setup."""

    options: ReadOptions
    name: str = "ingest"

    def setup(self) -> None:
        """Nothing to load: reading needs no model."""

    def process(self, task: ShardTask) -> ShardOutput:
        """Returns the shard's samples, quarantine and extra tables."""
        return read_shard(task, self.options)


def ingest(
    inputs: list[str], run: RunDir, runner: str | Runner = "local", options: ReadOptions | None = None,
    input_format: str = "auto", **runner_options,
) -> dict:
    """Ingests INPUTS into the run, resuming where an earlier attempt stopped; returns the accounting counts.

    The inputs and options are recorded before the first shard runs, so a rerun with others is refused even
    after a kill."""
    options = options or ReadOptions()
    if options.embedding_dtype not in EMBEDDING_DTYPES:
        raise UsageError(f"unknown --dtype {options.embedding_dtype!r}; choose one of {', '.join(EMBEDDING_DTYPES)}")
    runner = as_runner(runner, **runner_options)
    tasks = split_large_parquet(expand_inputs(inputs, input_format))
    urls = list(dict.fromkeys(t.url for t in tasks))
    config = dict(inputs=urls, input_format=input_format, options=recorded_options(options))
    check_run_folder(run.path)
    labels = check_own_columns(tasks, options)
    columns = (*SAMPLES_SCHEMA.names, *DATACOMP_SCORE_COLUMNS)
    step = StageRun("ingest", config, columns=columns, score_folders=("datacomp",), refuse_changes=True,
                    hint="curate ingest INPUTS --run RUN")
    with stage_step(run, step) as (record, _):
        ran = run_shard_job(IngestJob(options), tasks, run, runner)
        types = settle_column_types(run, tasks)
        write_duplicate_uids(run)
        build_catalog(run)
        record.update(counts=accounting(run), shards=len(tasks), shards_run=ran, columns=[*columns, *types],
                      own_columns=types, class_labels={c: n for c, n in labels.items() if c in types})
    run.update_manifest(python=platform.python_version())
    return record["counts"]


def recorded_options(options: ReadOptions) -> dict:
    """Returns the read options as the ingest config records them: options added since runs were first recorded
    are left out while they hold their defaults, so an older run still resumes."""
    return {k: v for k, v in asdict(options).items() if LATER_DEFAULTS.get(k, object()) != v}


def accounting(run: RunDir) -> dict:
    """Returns read, kept, quarantined and shard_errors from the run's catalog."""
    con = connect(run)
    try:
        cursor = con.execute("SELECT * FROM accounting")
        names = [d[0] for d in cursor.description]
        return dict(zip(names, (int(v) for v in cursor.fetchone()), strict=True))
    finally:
        con.close()
