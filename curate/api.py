"""A run as a Python object, for notebooks and scripts; the CLI commands are thin layers over it.

    import curate
    run = curate.open("runs/demo")
    run.stages()                                      # the stage graph: options, counts, current or stale
    run.filter("dfn", keep_fraction=0.3)              # any registered method, with its options
    run.annotate("aesthetic", scores_frame, on="url")  # your own columns: aesthetic_score, ... in samples
    run.distill("tesla-ipc10", label_column="label", where="dfn_keep", ipc=10)   # RUN/distilled/tesla-ipc10/
    run.sql("SELECT caption, dfn_score FROM samples ORDER BY dfn_score DESC LIMIT 5")   # a Polars DataFrame
    subset = run.samples(where="dfn_keep AND basic_keep")                               # lazy: nothing runs yet
    subset.count(); subset.to_polars(); subset.export("subset/", format="webdataset")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from curate.catalogs import connect
from curate.catalogs.selection import check_predicate
from curate.catalogs.views import quoted, require_columns, stages_table
from curate.errors import UsageError
from curate.rundir import MANIFEST, RunDir

if TYPE_CHECKING:
    import polars as pl

    from curate.runners import Runner


class Run:
    """An ingested run folder: its catalog in SQL, its stage graph, its methods and its selections."""

    def __init__(self, path: str | os.PathLike | RunDir):
        self.dir = path if isinstance(path, RunDir) else RunDir(path)
        if not (self.dir.path / MANIFEST).exists():
            raise UsageError(f"{path} is not a run folder (no {MANIFEST}); run `curate ingest INPUTS --run "
                             f"{path}` first")

    @property
    def path(self) -> Path:
        """The run folder's absolute path."""
        return self.dir.path

    def __repr__(self) -> str:
        return f"curate.open({str(self.path)!r})"

    def arrow(self, query: str, params: dict | None = None) -> pa.Table:
        """Returns the result of one read-only SQL query (SELECT, DESCRIBE, SUMMARIZE, EXPLAIN, ...) on the catalog
        as an Arrow table; anything else, or a SQL error, is a one-line UsageError. `params` binds $name
        placeholders. The query reaches no file outside the run folder."""
        import duckdb

        con = connect(self.dir)
        try:
            _check_read_only(con, query)
            relation = con.sql(query, params=params)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise UsageError(f"SQL error: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()

    def sql(self, query: str, params: dict | None = None) -> pl.DataFrame:
        """Returns the result of a SQL query on the catalog as a Polars DataFrame (from Arrow, without a copy)."""
        import polars as pl

        return pl.from_arrow(self.arrow(query, params))

    def stages(self) -> pl.DataFrame:
        """Returns the stage graph as it stands now: one row per stage with its status (current, stale or
        incomplete), options, input predicate, inputs, columns, counts and why it is stale."""
        import polars as pl

        return pl.from_arrow(stages_table(self.dir))

    def accounting(self) -> dict:
        """Returns read, kept, quarantined and shard_errors: read = kept + quarantined."""
        return self.arrow("SELECT * FROM accounting").to_pylist()[0]

    def samples(self, where: str | None = None) -> Samples:
        """Returns the lazy selection of the samples `where` selects (a SQL predicate; None: all)."""
        return Samples(self, check_predicate(where) if where is not None else None)

    def filter(self, method: str, runner: str | Runner = "local", workers: int | None = None,
               progress: bool = True, **options) -> dict:
        """Runs the registered method `method` (basic, dfn, semdedup, dbp, ...) with its `options`; returns its
        counts. `runner` is a Runner or a runner's name, made with `workers` and `progress`."""
        from curate.filters import filter_class
        from curate.runners import as_runner

        cls = filter_class(method)
        try:
            instance = cls(**options)
        except TypeError as exc:
            raise UsageError(f"{method}: {exc}") from None
        chosen = runner if not isinstance(runner, str) else as_runner(runner, workers=workers, progress=progress)
        return instance.apply(self.dir, chosen)

    def annotate(self, name: str, table: pa.Table | pl.DataFrame | str | os.PathLike, on: str = "uid",
                 columns: list[str] | None = None, prefix: bool = True) -> dict:
        """Joins `table` (a Polars or pandas DataFrame, an Arrow table, or a Parquet, CSV or JSON-lines file) to the
        samples on the column `on` (uid, key, url or sha256) as the stage `name`, as `curate annotate` does: its
        other columns (or `columns`) become columns of samples named <name>_<column> (as they are with
        prefix=False); returns the counts (rows, matched, unmatched_rows, rows_without_key,
        samples_without_row)."""
        from curate.stages.annotate import Annotation, annotate

        if not isinstance(table, str | os.PathLike | pa.Table):
            table = table.to_arrow() if hasattr(table, "to_arrow") else pa.Table.from_pandas(table,
                                                                                             preserve_index=False)
        return annotate(self.dir, table, Annotation(name, on, tuple(columns) if columns else None, prefix))

    def distill(self, name: str, label_column: str | None = None, where: str | None = None,
                runner: str | Runner = "local", workers: int | None = None, progress: bool = False, **options) -> dict:
        """Distills the samples `where` selects, labelled by `label_column` (or by zero-shot classification over
        `zeroshot_classes=[...]`), into RUN/distilled/<name>/ (as `curate distill`; `options` are
        curate.distill.run.DistillOptions fields: method ('tesla', 'cda', 'sre2l'), ipc, image_size, iterations,
        TESLA's experts, ..., CDA's teacher, curriculum, ...); returns the set's distilled.json contents plus its
        `folder`."""
        from curate.distill.run import DistillOptions, distill_run
        from curate.runners import as_runner

        try:
            chosen = DistillOptions(label_column=label_column, where=where, **options)
        except TypeError as exc:
            raise UsageError(f"distill: {exc}") from None
        chosen_runner = runner if not isinstance(runner, str) else as_runner(runner, workers=workers, progress=progress)
        return distill_run(self.dir, name, chosen, chosen_runner, progress=progress)

    def evaluate_distilled(self, name: str, test: str, seeds: tuple[int, ...] = (0,), runner: str | Runner = "local",
                           **options) -> dict:
        """Evaluates the distilled set `name` by the papers' protocol on the held-out `test` (as `curate
        distill-eval`; `options`: epochs, stored, baselines); returns {evaluation, parquet, summary, ...}."""
        from curate.distill.eval_set import SetEvalOptions, evaluate_distilled

        try:
            chosen = SetEvalOptions(test=test, seeds=tuple(seeds), **options)
        except TypeError as exc:
            raise UsageError(f"evaluate_distilled: {exc}") from None
        return evaluate_distilled(self.dir, name, chosen, runner)


@dataclass(frozen=True)
class Samples:
    """A selection of a run's samples by a SQL predicate on the `samples` view; it runs when asked."""

    run: Run
    where: str | None

    def _predicate(self) -> str:
        return self.where if self.where is not None else "TRUE"

    def filter(self, where: str) -> Samples:
        """Returns the selection narrowed by another predicate (both must hold)."""
        check_predicate(where)
        return Samples(self.run, f"({self._predicate()}) AND ({where})")

    def count(self) -> int:
        """Returns how many samples the selection holds."""
        return int(self.run.arrow(f"SELECT count(*) AS n FROM samples WHERE ({self._predicate()})")["n"][0].as_py())

    def to_polars(self, columns: list[str] | None = None) -> pl.DataFrame:
        """Returns the selected samples' rows (all columns, or `columns`) as a Polars DataFrame, in uid order."""
        names = "*" if columns is None else ", ".join(map(quoted, require_columns(self.run.dir, columns)))
        return self.run.sql(f"SELECT {names} FROM samples WHERE ({self._predicate()}) ORDER BY uid")

    def export(self, out: str | os.PathLike, format: str = "webdataset", shard_size: int = 10000,
               overwrite: bool = False, progress: bool = True, patch_drop: float | None = None,
               mae: str | None = None, reconstruct: bool = False, device: str = "auto") -> dict:
        """Writes the selection to `out` in `format` (webdataset, parquet, datacomp, hf); returns the export's
        summary (format, out, samples, files, ...). With `patch_drop` (a fraction in [0, 1)) and `mae` (an MAE
        checkpoint or train-mae folder) a webdataset keeps each image's most salient patches and a mask; with
        `reconstruct` too, it holds the MAE's rebuilt images."""
        from curate.export import export_subset, patch_drop_options

        options = patch_drop_options(format, patch_drop, mae, reconstruct, device)
        return export_subset(self.run.dir, self.where, format, out, shard_size, overwrite=overwrite,
                             progress=progress, patch_drop=options)


READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")


def _check_read_only(con, query: str) -> None:
    """Raises UsageError unless `query` is one statement that only reads (COPY, ATTACH, SET, INSTALL, ... are
    refused: results go to a file through `curate sql --out`)."""
    statements = con.extract_statements(query)
    if len(statements) != 1:
        raise UsageError(f"give one SQL statement, got {len(statements)}")
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind not in READ_ONLY_STATEMENTS:
        raise UsageError(f"{kind} statements are not allowed: the catalog is read-only (SELECT, DESCRIBE, SUMMARIZE, "
                         "EXPLAIN); write a result to a file with curate sql --out")


def open(path: str | os.PathLike) -> Run:
    """Returns the Run at `path`; raises UsageError when it is not a run folder."""
    return Run(path)
