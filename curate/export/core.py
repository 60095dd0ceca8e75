"""export_subset: materialize the samples a SQL predicate selects, in one of the registered formats."""

import json
import os
import shutil
import uuid
from pathlib import Path

import duckdb
from tqdm import tqdm

from curate.catalogs import connect
from curate.catalogs.selection import Selection, Writable, iter_selected, select
from curate.errors import UsageError
from curate.export.base import ExportWriter
from curate.export.datacomp import DataCompWriter
from curate.export.hf import HFWriter
from curate.export.parquet import ParquetWriter
from curate.export.wds import WebDatasetWriter
from curate.io.samples import ReadOptions
from curate.io.sources import SourceImages
from curate.rundir import RunDir
from curate.version import __version__

# A format is added by one writer class and one line here.
WRITERS: dict[str, type[ExportWriter]] = {
    w.format_name: w for w in (WebDatasetWriter, ParquetWriter, DataCompWriter, HFWriter)
}
EXPORT_FORMATS: tuple[str, ...] = tuple(WRITERS)
SUMMARY = "_export.json"


def export_subset(
    run: RunDir, where: str | None, fmt: str, out: str | Path, shard_size: int = 10000,
    overwrite: bool = False, progress: bool = True,
) -> dict:
    """Exports the samples matching the SQL predicate `where` (None = all); returns a summary dict
    (format, out, samples, files written, where, run, shard_size, curate_version).

    The output is written to a temporary sibling of `out` and renamed to `out` once complete.
    """
    writer_class = _writer_class(fmt)
    if shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {shard_size}")
    out = Path(out).expanduser().resolve()
    _check_out(run, out)
    if _is_nonempty(out) and not overwrite:
        raise UsageError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    options = _read_options(run)
    con = connect(run)
    try:
        writable = Writable(writer_class.uid_pattern, writer_class.uid_rule, writer_class.needs_images)
        selection = select(con, where, writable)
        _check_selection(selection, writer_class)
        staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        try:
            writer = writer_class(staging, shard_size, progress)
            files, samples = _write_all(con, selection, writer, options, progress)
            summary = dict(
                format=fmt, where=where, samples=samples, files=files, shard_size=shard_size,
                skipped=sum(selection.skipped.values()), skipped_reasons=selection.skipped,
                skipped_uids=list(selection.skipped_uids), run=str(run.path), curate_version=__version__,
            )
            (staging / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            _publish(staging, out, overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        con.close()
    return summary | {"out": str(out)}


def _writer_class(fmt: str) -> type[ExportWriter]:
    if fmt not in WRITERS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    return WRITERS[fmt]


def _is_nonempty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _check_out(run: RunDir, out: Path) -> None:
    """Raises UsageError for an --out that holds the run, lies inside it, or holds one of its source shards:
    nothing --overwrite may replace."""
    folder = run.path.resolve()
    if out == folder or out in folder.parents:
        raise UsageError(f"cannot export to {out}: it holds the run folder {run.path}")
    if folder in out.parents:
        raise UsageError(f"cannot export to {out}: it is inside the run folder {run.path}; choose a folder outside it")
    for shard in _local_sources(run):
        if out == shard or out in shard.parents:
            raise UsageError(f"cannot export to {out}: it holds the run's source shard {shard}")


def _local_sources(run: RunDir) -> list[Path]:
    """Returns the run's source shards that are files on this machine (plain paths or file:// URLs)."""
    inputs = run.manifest()["stages"].get("ingest", {}).get("config", {}).get("inputs", [])
    local = [u.removeprefix("file://") for u in inputs if "://" not in u or u.startswith("file://")]
    return [Path(u).resolve() for u in local]


def _read_options(run: RunDir) -> ReadOptions:
    ingest = run.manifest()["stages"].get("ingest")
    if ingest is None or not (run.path / "catalog.duckdb").exists():
        raise UsageError(f"{run.path} holds no ingested run; run `curate ingest` first")
    return ReadOptions(**ingest["config"]["options"])


def _check_selection(selection: Selection, writer_class: type[ExportWriter]) -> None:
    """Raises UsageError when the predicate selects samples but the format can hold none of them."""
    if selection.samples == 0 and selection.skipped:
        reasons = "; ".join(f"{n} with {reason}" for reason, n in selection.skipped.items())
        hint = "; use --format datacomp to export a uid list" if writer_class.needs_images else ""
        raise UsageError(f"--format {writer_class.format_name} can hold none of the selected samples ({reasons}){hint}")


def _write_all(
    con: duckdb.DuckDBPyConnection, selection: Selection, writer: ExportWriter, options: ReadOptions,
    progress: bool,
) -> tuple[list[str], int]:
    """Streams the selection through the writer, re-reading image bytes when it needs them.

    Returns the files written and the number of samples (the predicate runs again here, so a predicate
    such as random() < 0.1 can select a different count than the first pass did).
    """
    images = SourceImages(options)
    desc = f"export {writer.format_name}"
    bar = tqdm(total=selection.samples, desc=desc, unit="sample", disable=not progress)
    samples = 0
    try:
        for table in iter_selected(con, selection, writer.batch_rows):
            writer.write(images.attach(table) if writer.needs_images else table)
            bar.update(table.num_rows)
            samples += table.num_rows
    finally:
        images.close()
        bar.close()
    return writer.close(), samples


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Renames the finished `staging` folder to `out`, first moving aside what `out` held when overwriting."""
    if not _is_nonempty(out):
        if out.is_dir():
            out.rmdir()
        os.replace(staging, out)
        return
    if not overwrite:
        raise UsageError(f"{out} appeared while exporting; the export was not kept")
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex}")
    os.replace(out, old)
    os.replace(staging, out)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()
