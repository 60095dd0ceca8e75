"""The concept-cluster figure of a run's report: cluster sizes before and after pruning, and DBP's quotas."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curate.catalogs import connect
from curate.rundir import RunDir

SIZE_COLUMNS = {"size": "k-means (all embedded)", "semdedup_kept": "after SemDeDup", "quota": "after DBP"}


def cluster_table(run: RunDir) -> dict[str, np.ndarray] | None:
    """Returns the clusters view's columns as arrays, or None when the run has no clusters."""
    con = connect(run)
    try:
        if not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'clusters'").fetchone()[0]:
            return None
        return {k: np.asarray(v) for k, v in con.execute("SELECT * FROM clusters").fetchnumpy().items()}
    finally:
        con.close()


def concept_figure(run: RunDir, out: Path) -> Path | None:
    """Writes clusters.png (sizes, largest first, per step; complexity against DBP's quota share when DBP ran);
    returns its path, or None when the run has no clusters."""
    from curate.plots import save_figure, subplots

    table = cluster_table(run)
    if table is None:
        return None
    has_dbp = "quota" in table
    fig, axes = subplots(1, 2 if has_dbp else 1, figsize=(12 if has_dbp else 6, 4), squeeze=False)
    sizes = axes[0][0]
    for column, label in SIZE_COLUMNS.items():
        if column in table:
            sizes.plot(np.sort(table[column])[::-1], label=f"{label}: {int(table[column].sum())}")
    sizes.set(yscale="symlog", xlabel="cluster rank (largest first)", ylabel="samples",
              title=f"{len(table['size'])} concept clusters: the long tail before and after")
    sizes.legend()
    if has_dbp:
        share = axes[0][1]
        given = np.maximum(table["dbp_input"], 1)
        points = share.scatter(table["complexity"], table["quota"], c=np.log10(given), s=12, cmap="viridis")
        fig.colorbar(points, ax=share, label="log10 samples given to DBP")
        share.set(xlabel="complexity C = d_inter x d_intra", ylabel="quota (samples kept)",
                  title="DBP quotas: softmax(C / tau), capped by cluster size")
    return save_figure(fig, out)
