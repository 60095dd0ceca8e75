"""The export writer contract, and the shared logic of formats that split samples into numbered shards."""

from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from curate.export.carried import CarriedColumns


class ExportWriter:
    """Writes selected samples into a folder, one Arrow table of catalog rows at a time.

    Tables carry the SAMPLES_SCHEMA columns, then the `carried` ones, plus `image` (the verified bytes) when
    `needs_images`; they hold only samples the writer can write (its uid pattern, and image bytes when it needs
    them): the export skips and reports the others, the same way in every format.
    """

    format_name: ClassVar[str]  # the --format name the registry lists it under
    needs_images: ClassVar[bool] = True
    batch_rows: ClassVar[int] = 512  # samples per table given to write(); with images, what memory holds
    uid_pattern: ClassVar[str | None] = None  # a regex a uid must fully match to be written, None for any uid
    uid_rule: ClassVar[str] = ""  # the pattern in words, for the export's report of skipped samples
    carried: CarriedColumns = CarriedColumns()  # the user's columns its tables hold after curate's, set by the export

    def __init__(self, folder: Path, shard_size: int, progress: bool = True):
        self.folder = folder
        self.shard_size = shard_size
        self.progress = progress

    def write(self, table: pa.Table) -> None:
        """Writes the samples of `table`."""
        raise NotImplementedError

    def close(self) -> list[str]:
        """Finishes the output; returns the files written, relative to the folder."""
        raise NotImplementedError

    def summary(self) -> dict:
        """Returns the writer's own fields for the export summary (none by default)."""
        return {}


class ShardedWriter(ExportWriter):
    """A writer whose output is numbered parts of at most `shard_size` samples each.

    Subclasses name a part and open, fill and close one; an empty selection still gives one empty part, so
    the output is loadable whatever it holds.
    """

    def __init__(self, folder: Path, shard_size: int, progress: bool = True):
        super().__init__(folder, shard_size, progress)
        self.parts_folder = folder
        self.part_files: list[str] = []
        self.part_rows: list[int] = []

    def part_name(self, index: int) -> str:
        """Returns the file name of part `index`."""
        raise NotImplementedError

    def open_part(self, path: Path) -> None:
        """Starts writing a new part at `path`."""
        raise NotImplementedError

    def write_part(self, table: pa.Table) -> None:
        """Appends `table`'s samples to the open part."""
        raise NotImplementedError

    def close_part(self) -> None:
        """Finishes the open part."""
        raise NotImplementedError

    def write(self, table: pa.Table) -> None:
        """Writes the samples of `table`, starting a new part whenever the open one is full."""
        done = 0
        while done < table.num_rows:
            if not self.part_rows or self.part_rows[-1] >= self.shard_size:
                self._next_part()
            take = min(self.shard_size - self.part_rows[-1], table.num_rows - done)
            self.write_part(table.slice(done, take))
            self.part_rows[-1] += take
            done += take

    def close(self) -> list[str]:
        """Closes the last part; returns the part files, relative to the folder."""
        if not self.part_rows:
            self._next_part()
        self.close_part()
        return [str((self.parts_folder / f).relative_to(self.folder)) for f in self.part_files]

    def _next_part(self) -> None:
        if self.part_rows:
            self.close_part()
        name = self.part_name(len(self.part_files))
        self.parts_folder.mkdir(parents=True, exist_ok=True)
        self.open_part(self.parts_folder / name)
        self.part_files.append(name)
        self.part_rows.append(0)
