"""The datacomp export: uids.npy, the sorted uid array DataComp's resharder takes as its subset file."""

from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curate.export.base import ExportWriter

UIDS = "uids.npy"
UID_DTYPE = np.dtype("u8,u8")


def uid_pairs(uids: list[str]) -> np.ndarray:
    """Returns 32-hex-digit uids as DataComp's `u8,u8` records: (int(uid[:16], 16), int(uid[16:32], 16))."""
    big_endian = np.frombuffer(bytes.fromhex("".join(uids)), dtype=">u8").reshape(-1, 2)
    pairs = np.empty(len(uids), dtype=UID_DTYPE)
    pairs["f0"], pairs["f1"] = big_endian[:, 0], big_endian[:, 1]
    return pairs


def sort_pairs(pairs: np.ndarray) -> np.ndarray:
    """Returns `u8,u8` records in the order np.sort gives them, by f0 then f1, about 20 times as fast."""
    return pairs[np.lexsort((pairs["f1"], pairs["f0"]))]


class DataCompWriter(ExportWriter):
    """Collects the selected uids and writes them sorted to uids.npy; needs no image bytes."""

    format_name: ClassVar[str] = "datacomp"
    needs_images: ClassVar[bool] = False
    batch_rows: ClassVar[int] = 65536
    uid_pattern: ClassVar[str | None] = r"[0-9a-fA-F]{32}"
    uid_rule: ClassVar[str] = "DataComp subset files hold uids of exactly 32 hex digits"

    def __init__(self, folder: Path, shard_size: int, progress: bool = True):
        super().__init__(folder, shard_size, progress)
        self._chunks: list[np.ndarray] = []

    def write(self, table: pa.Table) -> None:
        """Converts the table's uids to `u8,u8` records and keeps them (16 bytes a sample) until close."""
        self._chunks.append(uid_pairs(table["uid"].to_pylist()))

    def close(self) -> list[str]:
        """Writes the uids in np.sort's order (by f0, then f1); returns ["uids.npy"]."""
        uids = sort_pairs(np.concatenate(self._chunks)) if self._chunks else np.empty(0, dtype=UID_DTYPE)
        self.folder.mkdir(parents=True, exist_ok=True)
        np.save(self.folder / UIDS, uids)
        return [UIDS]
