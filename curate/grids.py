"""Image grids: one row per class (labelled with its class name), the class's images across; for distilled sets in
`curate report` and benchmarks/distill.py, and for copy-detection sheets."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_ROWS = 20  # classes drawn (the first ones); the title says when there are more
MAX_COLUMNS = 10  # images drawn per class
LABEL_CHARS = 16  # a class name longer than this keeps its start and end around an ellipsis


def grid_cells(classes: Sequence[int] | np.ndarray, max_rows: int = MAX_ROWS,
               max_columns: int = MAX_COLUMNS) -> list[tuple[int, list[int]]]:
    """Returns the grid's rows as (class, indices of its first `max_columns` images in `classes`), for the first
    `max_rows` classes in ascending order."""
    labels = np.asarray(classes)
    return [(int(c), np.flatnonzero(labels == c)[:max_columns].tolist()) for c in np.unique(labels)[:max_rows]]


def short_name(name: str, chars: int = LABEL_CHARS) -> str:
    """Returns `name` cut to at most `chars` characters, its start and end around an ellipsis when cut."""
    if len(name) <= chars:
        return name
    tail = (chars - 1) // 2
    return f"{name[:chars - 1 - tail]}…{name[-tail:]}"


def cap_note(classes: Sequence[int] | np.ndarray, cells: list[tuple[int, list[int]]]) -> str:
    """Returns what the grid leaves out, e.g. "first 20 of 1000 classes, 10 of 50 images per class", or ""."""
    labels = np.asarray(classes)
    total = len(np.unique(labels))
    widest = int(np.unique(labels, return_counts=True)[1].max()) if len(labels) else 0
    columns = max((len(index) for _, index in cells), default=0)
    notes = [f"first {len(cells)} of {total} classes"] if len(cells) < total else []
    notes += [f"{columns} of {widest} images per class"] if columns < widest else []
    return ", ".join(notes)


def mosaic(pixels: Sequence[np.ndarray] | np.ndarray,
           cells: list[tuple[int, list[int]]]) -> tuple[np.ndarray, list[float]]:
    """Returns (the cells' uint8 S x S x 3 images tiled into one uint8 image, a row per cell row, separated and
    short rows padded by white; each row's centre in image coordinates)."""
    columns = max((len(index) for _, index in cells), default=0)
    if not columns:
        return np.full((1, 1, 3), 255, np.uint8), []
    side = np.asarray(pixels[cells[0][1][0]]).shape[0]
    step = side + max(1, side // 8)
    out = np.full((len(cells) * step - step + side, columns * step - step + side, 3), 255, np.uint8)
    for row, (_, index) in enumerate(cells):
        for column, i in enumerate(index):
            out[row * step:row * step + side, column * step:column * step + side] = np.asarray(pixels[i])[..., :3]
    return out, [row * step + (side - 1) / 2 for row in range(len(cells))]


def image_grid(pixels: Sequence[np.ndarray] | np.ndarray, classes: Sequence[int] | np.ndarray,
               classnames: Sequence[str], title: str, out: Path, max_rows: int = MAX_ROWS,
               max_columns: int = MAX_COLUMNS, dpi: int = 80) -> Path:
    """Writes a PNG grid of uint8 N x S x S x 3 `pixels` (only the images drawn are read, so a lazily decoding
    sequence works) to `out` atomically: a row per class labelled with its (shortened) class name, at most
    `max_rows` classes and `max_columns` images per class, the title saying what is left out; returns the path."""
    from curate.plots import save_figure, subplots

    cells = grid_cells(classes, max_rows, max_columns)
    note = cap_note(classes, cells)
    rows, columns = max(len(cells), 1), max((len(index) for _, index in cells), default=1)
    width = max(4.0, columns + 2.0)  # an inch per image, the class names left of them
    heading = textwrap.fill(f"{title} ({note})" if note else title, width=int(width * 14))
    fig, ax = subplots(figsize=(width, rows + 0.2 + 0.2 * (heading.count("\n") + 1)))
    image, centres = mosaic(pixels, cells)
    ax.imshow(image, interpolation="nearest")
    ax.set_yticks(centres, [short_name(classnames[c]) if c < len(classnames) else str(c) for c, _ in cells], fontsize=7)
    ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_frame_on(False)
    ax.set_title(heading, fontsize=8)
    return save_figure(fig, out, dpi=dpi)
