"""The hf export: a `datasets.Dataset` saved with save_to_disk, built from parquet parts written beside it."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pyarrow.parquet as pq

from curate.export.carried import CarriedColumns
from curate.export.parquet import ParquetWriter, export_features

WORK = ".hf-work"  # parts and the datasets cache, inside the export's temporary folder, removed on close


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Turns the `datasets` progress bars off for the block when `enabled` is False, then restores them."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def save_parquet_as_dataset(parts: list[Path], out: Path, cache_dir: Path, carried: CarriedColumns,
                            progress: bool = True) -> None:
    """Saves the parquet `parts` (with the `carried` columns) as one `datasets` dataset in `out`, one arrow shard
    per part.

    The conversion's cache goes to `cache_dir`, never to the user's Hugging Face cache.
    """
    import datasets

    features = export_features(carried)
    with progress_bars(progress):
        if sum(pq.ParquetFile(p).metadata.num_rows for p in parts):
            paths, cache = [str(p) for p in parts], str(cache_dir)
            dataset = datasets.Dataset.from_parquet(paths, features=features, cache_dir=cache, split="train")
        else:  # `datasets` reads no rows as no split at all
            dataset = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        dataset.save_to_disk(str(out), num_shards=len(parts))


class HFWriter(ParquetWriter):
    """Writes a dataset folder that `datasets.load_from_disk` opens, with the parquet export's columns."""

    format_name: ClassVar[str] = "hf"

    def __init__(self, folder: Path, shard_size: int, progress: bool = True):
        super().__init__(folder, shard_size, progress)
        self.parts_folder = folder / WORK / "parts"

    def close(self) -> list[str]:
        """Writes the dataset from the parquet parts, then removes them; returns the dataset's files."""
        super().close()
        parts = [self.parts_folder / name for name in self.part_files]
        save_parquet_as_dataset(parts, self.folder, self.folder / WORK / "cache", self.carried, self.progress)
        shutil.rmtree(self.folder / WORK)
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file())
