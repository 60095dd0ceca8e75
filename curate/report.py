"""Reports of a run: a PNG histogram per score column, split by that stage's keep flag; the concept clusters; an
image grid per finished distilled set; a contact sheet of the largest near-duplicate groups."""

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from curate.catalogs import connect
from curate.catalogs.views import sample_columns
from curate.rundir import RunDir

SCORE_COLUMN = re.compile(r"^[a-z][a-z0-9_]*_score$")


def score_columns(run: RunDir) -> list[str]:
    """Returns the numeric `<stage>_score` columns of the samples view."""
    numeric = ("FLOAT", "DOUBLE", "REAL", "DECIMAL", "INTEGER", "BIGINT")
    return [name for name, kind in sample_columns(run).items() if SCORE_COLUMN.match(name) and kind.startswith(numeric)]


def score_histogram(run: RunDir, column: str, out: Path, bins: int = 50) -> Path:
    """Writes a histogram of `column`, kept and dropped samples stacked, to `out`; returns the path."""
    from curate.plots import save_figure, subplots

    if not SCORE_COLUMN.match(column):
        raise ValueError(f"not a score column: {column}")
    keep = column.removesuffix("_score") + "_keep"
    has_keep = keep in sample_columns(run)
    flag = keep if has_keep else "NULL"
    con = connect(run)
    try:
        rows = con.execute(f"SELECT {column}, {flag} FROM samples WHERE {column} IS NOT NULL").fetchall()
    finally:
        con.close()
    scores = np.array([r[0] for r in rows], dtype=float)
    kept = np.array([bool(r[1]) for r in rows])
    edges = np.histogram_bin_edges(scores, bins=bins) if len(scores) else bins
    fig, ax = subplots(figsize=(7, 4))
    if has_keep:
        ax.hist([scores[kept], scores[~kept]], bins=edges, stacked=True, label=["kept", "dropped"],
                color=["tab:green", "tab:gray"])
        ax.legend()
    else:
        ax.hist(scores, bins=edges, color="tab:blue")
    ax.set(xlabel=column, ylabel="samples", title=f"{column} over {len(scores)} samples")
    return save_figure(fig, out)


class DecodedPNGs(Sequence):
    """The rows' `png` bytes as uint8 H x W x 3 arrays, each decoded when it is read."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(self.rows[i]["png"])) as image:
            return np.asarray(image.convert("RGB"))


def distilled_grid(run: RunDir, name: str, out: Path) -> Path:
    """Writes the finished distilled set `name` as an image grid (curate.grids: a row per class, the first
    classes and images when there are many) to `out`; returns the path."""
    from curate.distill.output import read_set
    from curate.grids import image_grid

    meta, rows = read_set(run, name)
    labels = "soft" if meta.get("soft_labels") else "hard"
    title = f"{name}: {meta['method']}, IPC {meta['ipc']}, {meta['iterations']} iterations, {labels} labels"
    return image_grid(DecodedPNGs(rows), [r["class"] for r in rows], meta["classnames"], title, out)


def write_report(run: RunDir, out: Path | None = None) -> list[Path]:
    """Writes a histogram PNG per score column into `out` (default RUN/report), clusters.png when the run has
    concept clusters, distilled-<name>.png per finished distilled set and neardup-groups.png when the neardup stage
    is current and found groups; returns their paths."""
    from curate.concepts.report import concept_figure
    from curate.copydetect.sheet import neardup_sheet
    from curate.distill.layout import distilled_sets

    out = out or run.path / "report"
    paths = [score_histogram(run, column, out / f"{column}.png") for column in score_columns(run)]
    clusters = concept_figure(run, out / "clusters.png")
    grids = [distilled_grid(run, name, out / f"distilled-{name}.png") for name in distilled_sets(run)]
    sheet = neardup_sheet(run, out / "neardup-groups.png")
    return paths + ([clusters] if clusters else []) + grids + ([sheet] if sheet else [])
