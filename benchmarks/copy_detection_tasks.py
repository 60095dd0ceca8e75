"""Tasks and measurement of copy_detection.py: pools with planted copies (the synth pool made with instance
detail; sklearn's real digits with copies made by the synth near-duplicate transform), all pairs of signatures
above a similarity, duplicate groups, and the figures of a removal.

Signatures are unit float32 rows compared by cosine, or uint64 64-bit hashes compared by Hamming distance read as a
similarity 1 - distance / 64, so every threshold means "similarity >= t".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from near_dup_separability import pool_images
from PIL import Image

from curate.synth.render import encode_jpeg, near_duplicate

BLOCK_ROWS = 1024  # signatures compared with all others at once
HASH_BITS = 64
DIGIT_SIDE = 64


@dataclass
class Task:
    """A pool with planted copies: images in pool order, each one's truth kind ("clean", "near_dup", "exact_dup",
    or another synth kind) and the pool index of the image it copies (-1 for none; always an earlier image)."""

    name: str
    images: list[bytes]
    kind: np.ndarray
    dup_of: np.ndarray


def synth_task(synth: Path) -> Task:
    """Returns the synth pool as a Task (truth.parquet's kinds; dup_of uids mapped to pool indices)."""
    truth = pq.read_table(synth / "truth.parquet").to_pydict()
    index = {uid: i for i, uid in enumerate(truth["uid"])}
    dup_of = np.array([-1 if d is None else index[d] for d in truth["dup_of"]], dtype=np.int64)
    return Task("synth", pool_images(synth, truth), np.array(truth["kind"]), dup_of)


def digit_jpegs(side: int = DIGIT_SIDE) -> list[bytes]:
    """Returns sklearn's 1,797 8 x 8 digits as side x side JPEGs (dark ink on white, bicubic upsampling)."""
    from sklearn.datasets import load_digits

    grey = (255.0 - load_digits().images * (255.0 / 16.0)).round().astype(np.uint8)
    return [encode_jpeg(Image.fromarray(g, "L").resize((side, side), Image.Resampling.BICUBIC)) for g in grey]


def digits_task(near: int, exact: int, side: int = DIGIT_SIDE, seed: int = 0) -> Task:
    """Returns a Task of real images: every digit once ("clean"), then `near` near copies (near_duplicate: shift
    and/or crop, re-encode) and `exact` byte copies of distinct random digits, shuffled, after all originals."""
    originals = digit_jpegs(side)
    rng = np.random.default_rng([seed, 18])
    sources = rng.choice(len(originals), size=near + exact, replace=False)
    copies = [near_duplicate(np.random.default_rng([seed, 18, int(s)]), originals[s]) for s in sources[:near]]
    copies += [originals[s] for s in sources[near:]]
    kinds = np.array(["near_dup"] * near + ["exact_dup"] * exact)
    order = rng.permutation(len(copies))
    kind = np.concatenate([np.full(len(originals), "clean"), kinds[order]])
    dup_of = np.concatenate([np.full(len(originals), -1), sources[order]]).astype(np.int64)
    return Task("digits", originals + [copies[o] for o in order], kind, dup_of)


def similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Returns the len(a) x len(b) similarities: cosine of float rows, 1 - Hamming / 64 of uint64 hashes."""
    if a.dtype == np.uint64:
        return 1.0 - np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.float32) / HASH_BITS
    return a @ b.T


def close_pairs(x: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (i, j, similarity) of every pair i < j of signatures with similarity >= floor (exact, blockwise)."""
    found = []
    for start in range(0, len(x), BLOCK_ROWS):
        sims = similarities(x[start:start + BLOCK_ROWS], x[start:])
        i, j = np.nonzero(np.triu(sims >= np.float32(floor), k=1))
        found.append((i + start, j + start, sims[i, j]))
    i, j, s = (np.concatenate(parts) for parts in zip(*found, strict=True))
    return i.astype(np.int64), j.astype(np.int64), s.astype(np.float32)


def group_removals(n: int, pairs: tuple[np.ndarray, ...], thresholds: list[float]) -> list[np.ndarray]:
    """Returns, per threshold, a mask of the n samples removed when the pairs with similarity >= t are linked into
    groups (connected components) and each group keeps its first member in pool order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i, j, s = pairs
    removed = []
    for t in thresholds:
        linked = s >= np.float32(t)
        graph = coo_matrix((np.ones(int(linked.sum()), np.int8), (i[linked], j[linked])), shape=(n, n))
        labels = connected_components(graph, directed=False)[1]
        first = np.zeros(n, dtype=bool)
        first[np.unique(labels, return_index=True)[1]] = True
        removed.append(~first)
    return removed


def _share(mask: np.ndarray) -> float | None:
    return round(float(mask.mean()), 4) if len(mask) else None


def duplicate_figures(task: Task, removed: np.ndarray, threshold: float) -> dict:
    """Returns the figures of one removal: per planted kind the share of copies removed (recall); the share of
    distinct clean samples (clean and no copy's source) removed (false removal); the share of the copies' sources
    removed; and the share of the pool removed."""
    figures: dict = {"threshold": round(float(threshold), 6)}
    for kind in ("exact_dup", "near_dup"):
        figures[f"{kind}_recall"] = _share(removed[task.kind == kind])
    sources = np.zeros(len(task.kind), dtype=bool)
    sources[task.dup_of[task.dup_of >= 0]] = True
    figures["false_removal"] = _share(removed[(task.kind == "clean") & ~sources])
    figures["sources_removed"] = _share(removed[sources])
    figures["removed"] = _share(removed)
    return figures


def best_under(grid: list[dict], recall: str, limit: float, cost: str = "false_removal") -> dict | None:
    """Returns the grid row with the highest `recall` among those whose `cost` is <= limit (None if none)."""
    allowed = [g for g in grid if g[cost] <= limit and g[recall] is not None]
    return max(allowed, key=lambda g: (g[recall], -g[cost])) if allowed else None
