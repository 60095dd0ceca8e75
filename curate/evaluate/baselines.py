"""Baselines at equal compute: the full pool, every curated subset the catalog has (each keep flag and their
conjunctions), and for each curated subset a random subset of the same size; several seeds each.

Predicates are built from keep-column names the catalog validated and from integers, never from data values.
"""

import itertools
from pathlib import Path

from curate.catalogs import connect
from curate.catalogs.views import STAGE_NAME, sample_columns
from curate.evaluate.run import DEFAULT_BATCH_SIZE, DEFAULT_SAMPLES_SEEN, EVALUATIONS, evaluate_subset
from curate.models.loading import DEFAULT_MODEL
from curate.rundir import RunDir

CHART_METRIC = "zeroshot_top1"


def keep_columns(run: RunDir) -> list[str]:
    """Returns the samples view's boolean `<stage>_keep` columns, sorted."""
    columns = sample_columns(run).items()
    return sorted(c for c, t in columns if c.endswith("_keep") and t == "BOOLEAN" and STAGE_NAME.match(c))


def subset_size(run: RunDir, where: str | None) -> int:
    """Returns how many samples the predicate selects."""
    con = connect(run)
    try:
        return con.execute(f"SELECT count(*) FROM samples WHERE {where or 'TRUE'}").fetchone()[0]
    finally:
        con.close()


def random_subset(size: int, salt: int) -> str:
    """Returns a predicate selecting `size` samples in a fixed pseudo-random order of their uids."""
    return f"uid IN (SELECT uid FROM samples ORDER BY hash(uid, {int(salt)}), uid LIMIT {int(size)})"


def baseline_subsets(run: RunDir) -> list[tuple[str, str | None]]:
    """Returns (label, predicate) for the full pool, each curated subset, and a same-size random subset of each."""
    flags = keep_columns(run)
    curated = [" AND ".join(combo) for n in range(1, len(flags) + 1) for combo in itertools.combinations(flags, n)]
    subsets: list[tuple[str, str | None]] = [("full pool", None)]
    for salt, where in enumerate(curated):
        size = subset_size(run, where)
        if size == 0:
            continue
        subsets += [(where, where), (f"random {size} (as {where})", random_subset(size, salt))]
    return subsets


def run_baselines(run: RunDir, heldout: str | Path, samples_seen: int = DEFAULT_SAMPLES_SEEN,
                  seeds: list[int] | tuple[int, ...] = (0, 1, 2), model_config: str = DEFAULT_MODEL,
                  batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True) -> dict:
    """Evaluates every baseline subset at the same compute; returns the table and writes its JSON and PNG chart."""
    rows = []
    for label, where in baseline_subsets(run):
        result = evaluate_subset(run, where, heldout, samples_seen, seeds, model_config, batch_size=batch_size,
                                 progress=progress)
        rows.append(dict(label=label, predicate=where, size=result["subset_size"], mean=result["mean"],
                         std=result["std"], evaluation=result["evaluation"]))
    summary = dict(samples_seen=samples_seen, seeds=list(seeds), model_config=model_config, rows=rows)
    folder = run.path / EVALUATIONS
    summary["chart"] = str(bar_chart(rows, folder / "baselines.png"))
    run.write_json(f"{EVALUATIONS}/baselines.json", summary)
    return summary


def format_table(rows: list[dict]) -> str:
    """Returns the baselines as a text table of mean ± std per metric."""
    metrics = ("zeroshot_top1", "zeroshot_top5", "image_to_text_r1", "text_to_image_r1")
    lines = ["subset | size | " + " | ".join(metrics)]
    for row in rows:
        cells = [_cell(row["mean"].get(m), row["std"].get(m)) for m in metrics]
        lines.append(f"{row['label']} | {row['size']} | " + " | ".join(cells))
    return "\n".join(lines)


def _cell(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {std or 0:.3f}"


def bar_chart(rows: list[dict], out: Path) -> Path:
    """Writes a bar chart of zero-shot top-1 (mean, std as error bars) per subset; returns its path."""
    from curate.plots import save_figure, subplots

    means = [r["mean"][CHART_METRIC] or 0 for r in rows]
    stds = [r["std"][CHART_METRIC] or 0 for r in rows]
    fig, ax = subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color="tab:blue")
    ax.set_xticks(range(len(rows)), [f"{r['label']}\n(n={r['size']})" for r in rows], rotation=20, ha="right",
                  fontsize=8)
    ax.set(ylabel="zero-shot top-1", title="Equal compute: what each subset buys")
    return save_figure(fig, out)
