"""export_subset: materialize the samples a SQL predicate selects, in one of the registered formats."""

import json
from dataclasses import replace
from pathlib import Path

import duckdb
from tqdm import tqdm

from curate.catalogs import connect
from curate.catalogs.selection import Selection, Writable, iter_selected, select
from curate.errors import UsageError
from curate.export.base import ExportWriter
from curate.export.carried import carried_columns
from curate.export.datacomp import DataCompWriter
from curate.export.hf import HFWriter
from curate.export.parquet import ParquetWriter
from curate.export.patches import (
    PatchDrop,
    PatchDropper,
    PatchDropWriter,
    ReconstructWriter,
    iter_patch_export,
    rebuilt_rows,
)
from curate.export.wds import WebDatasetWriter
from curate.io.samples import ReadOptions
from curate.io.sources import SourceImages
from curate.outputs import Output, run_and_sources, staged_folder
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
    overwrite: bool = False, progress: bool = True, patch_drop: PatchDrop | None = None,
) -> dict:
    """Exports the samples matching the SQL predicate `where` (None = all); returns a summary dict
    (format, out, samples, files written, where, run, shard_size, curate_version; skipped, skipped_reasons and
    skipped_uids: the selected samples not written, because the format cannot hold them or because their source
    shard is missing, unreadable or changed since ingest; with `patch_drop`, a "patch_drop" dict of its settings
    and bytes: source_image_bytes, patch_bytes, mask_bytes, written_bytes).

    With `patch_drop` (curate.export.patches.patch_drop_options) the webdataset holds each image's most salient
    patches and a mask instead of the image, or, with reconstruct, the MAE's rebuilt images.
    The output is written to a temporary sibling of `out` and renamed to `out` once complete.
    """
    writer_class = _writer_class(fmt)
    if patch_drop is not None and writer_class is not WebDatasetWriter:
        raise UsageError(f"--patch-drop writes webdataset tars only, not --format {fmt}")
    _check_shard_size(shard_size)
    out = export_output(run).check(out, overwrite)
    options = _read_options(run)
    dropper = None if patch_drop is None else PatchDropper(run, patch_drop)
    con = connect(run)
    try:
        writable = Writable(writer_class.uid_pattern, writer_class.uid_rule, writer_class.needs_images)
        selection = select(con, where, writable)
        _check_selection(selection, writer_class)
        with staged_folder(out, overwrite) as staging:
            writer = _make_writer(writer_class, staging, shard_size, progress, dropper)
            writer.carried = carried_columns(run)
            files, samples, selection = _write_all(con, selection, writer, options, progress)
            summary = dict(
                format=fmt, where=where, samples=samples, files=files, shard_size=shard_size,
                skipped=sum(selection.skipped.values()), skipped_reasons=selection.skipped,
                skipped_uids=list(selection.skipped_uids), run=str(run.path), curate_version=__version__,
            ) | writer.summary()
            _write_summary(staging, summary)
    finally:
        con.close()
    return summary | {"out": str(out)}


def _make_writer(writer_class: type[ExportWriter], staging: Path, shard_size: int, progress: bool,
                 dropper: PatchDropper | None) -> ExportWriter:
    if dropper is None:
        return writer_class(staging, shard_size, progress)
    chosen = ReconstructWriter if dropper.options.reconstruct else PatchDropWriter
    return chosen(staging, shard_size, progress, dropper)


def _check_shard_size(shard_size: int) -> None:
    if shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {shard_size}")


def export_output(run: RunDir) -> Output:
    """Returns what an export of `run` writes: a folder marked by its summary, never inside the run or holding the
    run or its local source shards."""
    return Output(marker=SUMMARY, protected=run_and_sources(run))


def _write_summary(staging: Path, summary: dict) -> None:
    (staging / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def patch_export_summary(folder: str | Path) -> dict | None:
    """Returns the _export.json of a patch-drop export folder (one holding patches, not rebuilt images), else
    None."""
    path = Path(folder) / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except ValueError:
        return None
    drop = summary.get("patch_drop") if isinstance(summary, dict) else None
    return summary if isinstance(drop, dict) and not drop.get("reconstructed") else None


def reconstruct_export(folder: str | Path, mae: str, out: str | Path, shard_size: int = 10000,
                       overwrite: bool = False, progress: bool = True, device: str = "auto") -> dict:
    """Writes a plain webdataset at `out` of a patch-drop export folder's samples rebuilt by the MAE `mae` (PNG at
    the original size); returns its summary (format, samples, files, source, patch_drop, out, ...)."""
    from curate.models.loading import pick_device
    from curate.models.mae_io import load_mae

    folder = Path(folder).expanduser().resolve()
    source = patch_export_summary(folder)
    if source is None:
        raise UsageError(f"{folder} is not a patch-drop export (no {SUMMARY} with patch_drop)")
    _check_shard_size(shard_size)
    out = Output(marker=SUMMARY, protected=(folder,)).check(out, overwrite)
    model = load_mae(mae, pick_device(device))
    with staged_folder(out, overwrite) as staging:
        writer = WebDatasetWriter(staging, shard_size, progress)
        bar = tqdm(total=source.get("samples"), desc="reconstruct", unit="sample", disable=not progress)
        samples = 0
        for table in rebuilt_rows(iter_patch_export(folder, model), writer.batch_rows):
            writer.write(table)
            samples += table.num_rows
            bar.update(table.num_rows)
        bar.close()
        summary = dict(format=WebDatasetWriter.format_name, samples=samples, files=writer.close(),
                       shard_size=shard_size, source=str(folder), curate_version=__version__,
                       patch_drop=source["patch_drop"] | dict(reconstructed=True, mae=str(Path(mae).resolve())))
        _write_summary(staging, summary)
    return summary | {"out": str(out)}


def _writer_class(fmt: str) -> type[ExportWriter]:
    if fmt not in WRITERS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    return WRITERS[fmt]


def _read_options(run: RunDir) -> ReadOptions:
    ingest = run.manifest()["stages"].get("ingest")
    if ingest is None or not (run.path / "catalog.duckdb").exists():
        raise UsageError(f"{run.path} holds no ingested run; run `curate ingest` first")
    return ReadOptions(**ingest["config"]["options"])


def _check_selection(selection: Selection, writer_class: type[ExportWriter]) -> None:
    """Raises UsageError when the predicate selects samples but the format can write none of them."""
    if selection.samples == 0 and selection.skipped:
        reasons = "; ".join(f"{n} with {reason}" for reason, n in selection.skipped.items())
        hint = "; use --format datacomp to export a uid list" if writer_class.needs_images else ""
        raise UsageError(
            f"--format {writer_class.format_name} can write none of the selected samples ({reasons}){hint}")


def _write_all(
    con: duckdb.DuckDBPyConnection, selection: Selection, writer: ExportWriter, options: ReadOptions,
    progress: bool,
) -> tuple[list[str], int, Selection]:
    """Streams the selection through the writer, re-reading image bytes when it needs them.

    Returns the files written, the number of samples (the predicate runs again here, so a predicate such as
    random() < 0.1 can select a different count than the first pass did) and the selection with the samples whose
    source shard is missing, unreadable or changed since ingest counted as skipped; raises UsageError when none
    is left to write.
    """
    images = SourceImages(options)
    desc = f"export {writer.format_name}"
    bar = tqdm(total=selection.samples, desc=desc, unit="sample", disable=not progress)
    samples, selected = 0, selection
    try:
        for table in iter_selected(con, selection, writer.batch_rows, writer.carried.names):
            bar.update(table.num_rows)
            if writer.needs_images:
                table, lost = images.attach_available(table)
                selection = selection.with_skipped(lost)
            if table.num_rows:
                writer.write(table)
            samples += table.num_rows
    finally:
        images.close()
        bar.close()
    files = writer.close()
    if samples == 0 and selection.skipped != selected.skipped:
        _check_selection(replace(selection, samples=0), type(writer))
    return files, samples, selection
