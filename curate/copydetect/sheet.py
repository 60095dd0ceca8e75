"""The near-duplicate contact sheet of `curate report`: the largest duplicate groups of the current neardup stage,
one row per group (labelled with its id and size), the kept image first, then the removed members most similar to
it first. Images are re-read from the source shards (checked against their sha256) and shown whole, resized to a
square as the descriptor saw them; one that cannot be re-read or decoded is drawn grey."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.rundir import RunDir

GROUPS = 8  # groups drawn, the largest first
MEMBERS = 8  # images drawn per group
SIDE = 96  # pixels per image

_MEMBERS_SQL = """
WITH top AS (
    SELECT group_id, any_value(size) AS size FROM neardup_groups GROUP BY group_id
    ORDER BY size DESC, group_id LIMIT $groups
)
SELECT top.group_id, top.size, s.uid, s.key, s.shard, s.image_offset, s.image_size, s.sha256
FROM neardup_groups AS g JOIN top USING (group_id) LEFT JOIN samples AS s ON s.uid = g.uid
QUALIFY row_number() OVER (PARTITION BY g.group_id ORDER BY g.kept DESC, g.similarity DESC, g.uid) <= $members
ORDER BY top.size DESC, top.group_id, g.kept DESC, g.similarity DESC, g.uid
"""


def _members(run: RunDir, groups: int, members: int) -> list[dict]:
    """Returns the drawn members' catalog rows (group_id, size and the image's location), in drawing order."""
    from curate.catalogs import connect

    con = connect(run)
    try:
        cursor = con.execute(_MEMBERS_SQL, {"groups": groups, "members": members})
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def _pixels(run: RunDir, rows: list[dict]) -> tuple[list[np.ndarray], int]:
    """Returns each row's image as uint8 SIDE x SIDE x 3 (grey when it cannot be read), and how many were read."""
    from curate.graph import entries
    from curate.io.samples import ReadOptions
    from curate.io.sources import LOCATION_COLUMNS, SourceImages
    from curate.models.encode import square_pixels

    sources = SourceImages(ReadOptions(**entries(run)["ingest"]["config"]["options"]))
    out, read = [], 0
    try:
        for row in rows:
            try:
                table = pa.Table.from_pylist([{c: row[c] for c in LOCATION_COLUMNS}])
                out.append(square_pixels(sources.attach(table)["image"][0].as_py(), SIDE)[0])
                read += 1
            except Exception:  # no image bytes in the run, a changed shard, or bytes PIL cannot decode: draw grey
                out.append(np.full((SIDE, SIDE, 3), 128, np.uint8))
    finally:
        sources.close()
    return out, read


def neardup_sheet(run: RunDir, out: Path, groups: int = GROUPS, members: int = MEMBERS) -> Path | None:
    """Writes the contact sheet of the `groups` largest near-duplicate groups (at most `members` images each) to
    `out`; returns its path, or None when the neardup stage is not current, found no group, or the run holds no
    image to show (DataComp metadata-only)."""
    from curate.graph import status
    from curate.grids import image_grid

    if status(run).get("neardup") != "current":
        return None
    rows = _members(run, groups, members)
    if not rows:
        return None
    pixels, read = _pixels(run, rows)
    if read == 0:
        return None
    order = list(dict.fromkeys(r["group_id"] for r in rows))
    sizes = {r["group_id"]: r["size"] for r in rows}
    names = [f"#{g} ({sizes[g]})" for g in order]
    title = f"neardup: the {len(order)} largest duplicate groups (#group_id (size)), the kept image first"
    return image_grid(pixels, [order.index(r["group_id"]) for r in rows], names, title, out, max_rows=groups,
                      max_columns=members)
