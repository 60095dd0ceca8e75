"""What curation buys at equal compute, DataComp-style: a synth pool is ingested, scored by a tiny DFN trained on
its trusted set (hq/), filtered to the top fraction; then `curate evaluate --baselines` trains a CLIP from scratch
on the full pool, on the DFN subset and on a random subset of the same size, for the same samples seen, over
several seeds, and measures zero-shot accuracy and retrieval on the synth held-out set.

    python benchmarks/curation_quality.py [--samples 20000] [--seeds 0,1,2] [--samples-seen N]
        [--budgets 5000,10000,20000] [--work DIR]

Prints the table and writes benchmarks/results/curation_quality.json and curation_quality.png (the baselines
chart), plus, with --budgets, curation_budget.json and .png: zero-shot top-1 of the full pool and the DFN subset against
samples seen (one seed), the curve the default budget is read from.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ALIGNED, RESULTS, dfn_scored_run, ensure_synth, timed, truth_connection, write_results

from curate.cli.evaluate import seed_list
from curate.evaluate.baselines import format_table, run_baselines
from curate.evaluate.run import DEFAULT_SAMPLES_SEEN, evaluate_subset
from curate.rundir import RunDir


def composition(run: RunDir, truth: Path, where: str | None) -> dict:
    """Returns the subset's share of each truth kind and of aligned pairs (clean, exact_dup, near_dup)."""
    con = truth_connection(run, truth)
    try:
        rows = con.execute(
            f"SELECT t.kind, count(*) FROM samples s JOIN truth t USING (uid) WHERE {where or 'TRUE'} GROUP BY t.kind"
        ).fetchall()
    finally:
        con.close()
    total = sum(n for _, n in rows)
    shares = {kind: round(n / total, 4) for kind, n in sorted(rows)}
    return shares | {"aligned": round(sum(shares.get(k, 0) for k in ALIGNED), 4)}


def budget_curve(run: RunDir, heldout: Path, budgets: list[int]) -> dict[str, list[dict]]:
    """Returns zero-shot top-1 (seed 0) of the full pool and of the DFN subset at each samples-seen budget."""
    curve: dict[str, list[dict]] = {"full pool": [], "dfn_keep": []}
    for label, where in (("full pool", None), ("dfn_keep", "dfn_keep")):
        for budget in budgets:
            result = evaluate_subset(run, where, heldout, budget, (0,), progress=False)
            curve[label].append(dict(samples_seen=budget, zeroshot_top1=result["mean"]["zeroshot_top1"],
                                     wall_seconds=result["mean"]["wall_seconds"]))
            print(f"budget {budget:>6}: {label:9s} top-1 {result['mean']['zeroshot_top1']:.3f}")
    return curve


def plot_budget(curve: dict[str, list[dict]], path: Path) -> None:
    """Writes the budget curve as a PNG line chart."""
    from curate.plots import save_figure, subplots

    fig, ax = subplots(figsize=(6, 4))
    for label, points in curve.items():
        ax.plot([p["samples_seen"] for p in points], [p["zeroshot_top1"] for p in points], marker="o", label=label)
    ax.set(xscale="log", xlabel="samples seen", ylabel="zero-shot top-1", title="Accuracy against compute (seed 0)")
    ax.legend()
    save_figure(fig, path, dpi=110)


def parse_args() -> argparse.Namespace:
    """Returns the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="pool size")
    parser.add_argument("--hq-samples", type=int, default=5_000, help="trusted pairs the DFN trains on")
    parser.add_argument("--keep-fraction", type=float, default=0.3)
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    parser.add_argument("--samples-seen", type=int, default=DEFAULT_SAMPLES_SEEN)
    parser.add_argument("--budgets", default="", help="comma-separated samples-seen budgets for the curve")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-curation")
    return parser.parse_args()


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    args = parse_args()
    synth = ensure_synth(args.work / f"synth-{args.samples}", args.samples, args.hq_samples)
    run, timings = dfn_scored_run(synth, args.work, args.keep_fraction)
    heldout, truth = synth / "heldout.parquet", synth / "truth.parquet"
    results: dict = dict(config=dict(pool_samples=args.samples, hq_samples=args.hq_samples,
                                     keep_fraction=args.keep_fraction, samples_seen=args.samples_seen),
                         timings=timings)
    RESULTS.mkdir(exist_ok=True)
    if args.budgets:
        curve = budget_curve(run, heldout, [int(b) for b in args.budgets.split(",")])
        plot_budget(curve, RESULTS / "curation_budget.png")
        write_results("curation_budget", dict(config=results["config"], curve=curve))
    seconds, summary = timed(run_baselines, run, heldout, args.samples_seen, args.seeds, progress=False)
    shutil.copyfile(summary["chart"], RESULTS / "curation_quality.png")
    for row in summary["rows"]:
        row["composition"] = composition(run, truth, row["predicate"])
    print(format_table(summary["rows"]))
    results.update(baselines_seconds=round(seconds, 1), seeds=args.seeds, rows=summary["rows"])
    path = write_results("curation_quality", results)
    print(f"wrote {path} and {RESULTS / 'curation_quality.png'}")


if __name__ == "__main__":
    main()
