"""Concept-cluster pruning quality on the synth pool, embedded by the tiny DFN (trained on hq/):

1. SemDeDup against the pool's planted duplicates: recall of exact and near duplicate pairs (one of the two
   removed) and false removals of distinct clean samples, over a grid of eps; the chosen eps is the largest with
   false removals under 2%.
2. DBP after SemDeDup and the DFN filter (the paper's order): the concept histogram of the pool, of the DFN
   subset and of DFN+DBP at the same size (does the long tail flatten?).
3. What it buys: zero-shot accuracy of DFN+DBP vs DFN alone vs random at equal size and compute (3 seeds).

    python benchmarks/concept_quality.py [--samples 20000] [--final-fraction 0.2] [--seeds 0,1,2] [--work DIR]

Writes benchmarks/results/concept_quality.json and concept_quality.png.
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from common import RESULTS, dfn_scored_run, ensure_synth, truth_connection, write_results

from curate.cli.evaluate import seed_list
from curate.evaluate.baselines import random_subset
from curate.evaluate.run import DEFAULT_SAMPLES_SEEN, evaluate_subset
from curate.filters.dbp import DBP
from curate.filters.semdedup import SemDeDup
from curate.rundir import RunDir

EPS_GRID = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
MAX_FALSE_REMOVALS = 0.02


def truth_rows(run: RunDir, truth: Path) -> dict[str, np.ndarray]:
    """Returns per embedded sample: uid, truth kind, concept, planted original (or None), SemDeDup max sim."""
    con = truth_connection(run, truth)
    try:
        rows = con.execute("SELECT s.uid, t.kind, t.concept, t.dup_of, s.semdedup_max_sim FROM samples s"
                           " JOIN truth t USING (uid) WHERE s.cluster_id IS NOT NULL ORDER BY s.uid").fetchnumpy()
    finally:
        con.close()
    rows = {k: np.asarray(v) for k, v in rows.items()}
    sims = rows["semdedup_max_sim"]
    rows["semdedup_max_sim"] = np.where(np.ma.getmaskarray(sims), np.nan, np.ma.getdata(sims)).astype(np.float64)
    return rows


def duplicate_figures(rows: dict[str, np.ndarray], eps: float) -> dict:
    """Returns pair recall per duplicate kind and the false-removal rate of distinct clean samples at eps."""
    return {"eps": eps} | removal_figures(rows, ~(rows["semdedup_max_sim"] > np.float32(1 - eps)))


def chosen_eps(grid: list[dict]) -> dict:
    """Returns the grid row (duplicate_figures) of the largest eps whose false removals are under
    MAX_FALSE_REMOVALS."""
    return max((g for g in grid if g["false_removals"] < MAX_FALSE_REMOVALS), key=lambda g: g["eps"])


def removal_figures(rows: dict[str, np.ndarray], kept: np.ndarray) -> dict:
    """Returns, for a keep mask over truth_rows' samples, pair recall per duplicate kind (one of the pair removed)
    and the false-removal rate of distinct clean samples (clean and nobody's original)."""
    index = {uid: i for i, uid in enumerate(rows["uid"])}
    figures = {"kept": int(kept.sum())}
    originals = set()
    for kind in ("exact_dup", "near_dup"):
        pairs = [(i, index[o]) for i in np.flatnonzero(rows["kind"] == kind) if (o := rows["dup_of"][i]) in index]
        originals |= {o for _, o in pairs}
        figures[f"{kind}_pairs"] = len(pairs)
        figures[f"{kind}_recall"] = round(float(np.mean([not (kept[a] and kept[b]) for a, b in pairs])), 4)
    distinct = np.array([k == "clean" and i not in originals for i, k in enumerate(rows["kind"])])
    figures["distinct_clean"] = int(distinct.sum())
    figures["false_removals"] = round(float((~kept[distinct]).mean()), 4)
    return figures


def concept_counts(run: RunDir, truth: Path, where: str) -> dict[str, int]:
    """Returns {concept: samples} of the image concepts in the selection (junk images have none)."""
    con = truth_connection(run, truth)
    try:
        rows = con.execute(f"SELECT t.concept, count(*) FROM samples s JOIN truth t USING (uid)"
                           f" WHERE ({where}) AND t.concept IS NOT NULL GROUP BY 1")
        return dict(rows.fetchall())
    finally:
        con.close()


def tail_figures(counts: dict[str, int], order: list[str]) -> dict:
    """Returns the head's share (top 10% of concepts by pool frequency) and the normalized concept entropy."""
    values = np.array([counts.get(c, 0) for c in order], dtype=float)
    p = values / values.sum()
    entropy = -(p[p > 0] * np.log(p[p > 0])).sum() / np.log(len(order))
    return dict(samples=int(values.sum()), head_share=round(float(p[: len(order) // 10].sum()), 4),
                normalized_entropy=round(float(entropy), 4), counts=values.astype(int).tolist())


def plot(results: dict, path: Path) -> None:
    """Writes the eps curve and the concept histograms side by side."""
    from curate.plots import save_figure, subplots

    fig, (left, right) = subplots(1, 2, figsize=(12, 4))
    grid = results["semdedup"]["grid"]
    for key, label in (("exact_dup_recall", "exact duplicates found"), ("near_dup_recall", "near duplicates found"),
                       ("false_removals", "distinct clean removed")):
        left.plot([g["eps"] for g in grid], [g[key] for g in grid], marker="o", label=label)
    left.set(xscale="log", xlabel="eps", ylabel="rate", title="SemDeDup on tiny-DFN embeddings")
    left.legend()
    for label, figures in results["concepts"].items():
        right.plot(figures["counts"], label=f"{label} (head share {figures['head_share']:.2f})")
    right.set(yscale="symlog", xlabel="concept rank by pool frequency", ylabel="samples",
              title="Concept histogram: the long tail")
    right.legend()
    save_figure(fig, path, dpi=110)


def parse_args() -> argparse.Namespace:
    """Returns the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--hq-samples", type=int, default=5_000)
    parser.add_argument("--dfn-fraction", type=float, default=0.4, help="DFN keep fraction before DBP")
    parser.add_argument("--final-fraction", type=float, default=0.2, help="what DBP keeps, of the pool")
    parser.add_argument("--clusters", type=int, help="k (default: round(sqrt(N)))")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    parser.add_argument("--samples-seen", type=int, default=DEFAULT_SAMPLES_SEEN)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-curation")
    return parser.parse_args()


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    args = parse_args()
    synth = ensure_synth(args.work / f"synth-{args.samples}", args.samples, args.hq_samples)
    truth, clusters = synth / "truth.parquet", args.clusters
    run, _ = dfn_scored_run(synth, args.work, args.dfn_fraction, run_name="run-concepts")
    SemDeDup(eps=EPS_GRID[0], clusters=clusters).apply(run, progress=False)
    rows = truth_rows(run, truth)
    grid = [duplicate_figures(rows, eps) for eps in EPS_GRID]
    chosen = chosen_eps(grid)
    for g in grid:
        print(f"eps {g['eps']:<7}: exact {g['exact_dup_recall']:.3f}  near {g['near_dup_recall']:.3f}"
              f"  distinct clean removed {g['false_removals']:.3f}")
    SemDeDup(eps=chosen["eps"], clusters=clusters).apply(run, progress=False)
    dbp = DBP(keep_fraction=args.final_fraction, fraction_of="pool", where="semdedup_keep AND dfn_keep",
              clusters=clusters).apply(run, progress=False)
    size = dbp["kept"]
    subsets = {"DFN+DBP": "dbp_keep",
               "DFN alone": f"uid IN (SELECT uid FROM samples ORDER BY dfn_score DESC, uid LIMIT {size})",
               "random": random_subset(size, 0)}
    pool_counts = concept_counts(run, truth, "TRUE")
    order = sorted(pool_counts, key=lambda c: (-pool_counts[c], c))
    concepts = {"pool": tail_figures(pool_counts, order)}
    concepts |= {label: tail_figures(concept_counts(run, truth, where), order) for label, where in subsets.items()}
    evaluations = {}
    for label, where in subsets.items():
        result = evaluate_subset(run, where, synth / "heldout.parquet", args.samples_seen, args.seeds, progress=False)
        evaluations[label] = dict(predicate=where, size=result["subset_size"], mean=result["mean"], std=result["std"])
        print(f"{label:10s} n={result['subset_size']}: top-1 {result['mean']['zeroshot_top1']:.3f}"
              f" ± {result['std']['zeroshot_top1']:.3f}  head share {concepts[label]['head_share']:.3f}")
    results = dict(config=vars(args) | {"work": str(args.work)}, semdedup=dict(grid=grid, chosen=chosen),
                   dbp=dbp, concepts=concepts, evaluations=evaluations, seeds=args.seeds)
    RESULTS.mkdir(exist_ok=True)
    plot(results, RESULTS / "concept_quality.png")
    print(f"wrote {write_results('concept_quality', results)} and {RESULTS / 'concept_quality.png'}")


if __name__ == "__main__":
    main()
