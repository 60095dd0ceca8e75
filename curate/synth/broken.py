"""Broken pool samples: what real web shards contain and ingest must quarantine with a reason, never crash on.

Each kind turns a good rendered pair into a broken one; BROKEN_KINDS maps its name to the builder and to the
quarantine reason ingest gives it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """Returns a tiny PNG whose header claims width x height pixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@dataclass(frozen=True)
class BrokenKind:
    """How to break a (jpg, caption) pair, and the quarantine reason ingest must give the result."""

    build: Callable[[np.random.Generator, bytes, str], tuple[bytes, str | bytes]]
    reason: str


BROKEN_KINDS: dict[str, BrokenKind] = {
    "truncated jpeg": BrokenKind(lambda rng, jpg, caption: (jpg[: len(jpg) // 2], caption), "bad image"),
    "decompression bomb": BrokenKind(lambda rng, jpg, caption: (png_bomb(), caption), "bad image"),
    "not an image": BrokenKind(lambda rng, jpg, caption: (rng.bytes(len(jpg)), caption), "bad image"),
    "latin-1 caption": BrokenKind(lambda rng, jpg, caption: (jpg, (caption + " café").encode("latin-1")),
                                  "caption is not valid UTF-8"),
    "empty caption": BrokenKind(lambda rng, jpg, caption: (jpg, ""), "empty caption"),
}


def broken_kind_of(index: int) -> str:
    """Returns the broken kind of the index-th broken sample (the kinds in turn)."""
    return list(BROKEN_KINDS)[index % len(BROKEN_KINDS)]
