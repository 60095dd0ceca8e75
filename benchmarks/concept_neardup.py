"""Issue 5's near-duplicate target re-measured with copy detection (`curate filter neardup`) in front of SemDeDup.

The pool, run and tiny DFN are concept_quality.py's (the same work folder, so either script reuses the other's):
the 20,000-sample synth pool (1,200 exact and 1,600 near duplicates, each naming its original) and SemDeDup on the
tiny DFN's image embeddings at concept_quality.py's eps (the largest of its grid under 2% false removals). In
front of it, the product's copy-detection path as copy_detection.py runs it: `curate train-copy-detector` on the
run's own images (self-supervised, seeded; 10 epochs on at most 4,000 images), `curate embed --as copy`, and
`curate filter neardup --threshold T` (score normalization on, the default), once per T of copy_detection's grid
(finer at 0.76-0.79): its groups depend on every pair and on T's own background, so they cannot be replayed from
one run's columns. A sample is removed when neardup_keep or semdedup_keep is false. Per T, for neardup alone and
for both: exact and near duplicate pair recall (one of the pair removed) and false removals of distinct clean
samples (clean and nobody's original), as concept_quality.duplicate_figures counts them. Target (issue 5):
near-duplicate recall >= 90% at <= 2% false removal.

    python benchmarks/concept_neardup.py [--samples 20000] [--eps E] [--threads 1] [--work DIR]

Writes benchmarks/results/concept_neardup.json and concept_neardup.png.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from common import RESULTS, dfn_scored_run, ensure_synth, write_results
from concept_quality import EPS_GRID, MAX_FALSE_REMOVALS, chosen_eps, duplicate_figures, removal_figures, truth_rows
from copy_detection_methods import COPY_EPOCHS, COPY_GRID, COPY_MAX_IMAGES

from curate.catalogs import connect
from curate.cli.main import main as curate
from curate.filters.semdedup import SemDeDup
from curate.rundir import RunDir

PARTS = {"neardup": "neardup alone", "combined": "neardup + SemDeDup"}
# copy_detection's grid, and finer where this pool's curve crosses 2% false removal
THRESHOLDS = tuple(sorted({*COPY_GRID, 0.76, 0.77, 0.78, 0.79}))


def keep_columns(run: RunDir, uids: np.ndarray) -> dict[str, np.ndarray]:
    """Returns {column: bool array in `uids` order} of the run's neardup_keep and semdedup_keep (NULL as kept)."""
    con = connect(run)
    try:
        rows = con.execute("SELECT uid, coalesce(neardup_keep, TRUE), coalesce(semdedup_keep, TRUE) FROM samples")
        keep = {uid: (n, s) for uid, n, s in rows.fetchall()}
    finally:
        con.close()
    return {"neardup": np.array([keep[u][0] for u in uids]), "semdedup": np.array([keep[u][1] for u in uids])}


def semdedup_at_chosen_eps(run: RunDir, truth: Path, eps: float | None) -> tuple[dict, dict]:
    """Applies SemDeDup at `eps`, or at concept_quality.py's choice (the largest eps of its grid under the
    false-removal limit) when None; returns (truth_rows, SemDeDup alone's figures at that eps)."""
    SemDeDup(eps=eps or EPS_GRID[0]).apply(run, progress=False)
    rows = truth_rows(run, truth)
    if eps is None:
        eps = chosen_eps([duplicate_figures(rows, e) for e in EPS_GRID])["eps"]
        SemDeDup(eps=eps).apply(run, progress=False)
    return rows, duplicate_figures(rows, eps)


def describe(run: RunDir, folder: Path, seed: int, threads: int) -> dict:
    """Trains the copy descriptor on the run's own images (copy_detection's options; reruns resume) and describes
    the run with it; returns the seconds each call took and the training's own (train_info.json: a resumed rerun
    keeps the first run's)."""
    start = time.perf_counter()
    assert curate(["train-copy-detector", str(run.path), "--out", str(folder), "--epochs", str(COPY_EPOCHS),
                   "--max-images", str(COPY_MAX_IMAGES), "--seed", str(seed), "--threads", str(threads)]) == 0
    trained = time.perf_counter()
    assert curate(["embed", str(run.path), "--model", str(folder), "--as", "copy"]) == 0
    return dict(train_seconds=round(trained - start, 1), describe_seconds=round(time.perf_counter() - trained, 1),
                descriptor_training_seconds=json.loads((folder / "train_info.json").read_text())["seconds"])


def sweep(run: RunDir, rows: dict) -> list[dict]:
    """Returns, per threshold of THRESHOLDS, the filter's seconds and the figures of neardup alone and
    of neardup in front of SemDeDup (removal_figures)."""
    grid = []
    for t in THRESHOLDS:
        start = time.perf_counter()
        assert curate(["filter", "neardup", str(run.path), "--threshold", str(t)]) == 0
        seconds = round(time.perf_counter() - start, 1)
        keep = keep_columns(run, rows["uid"])
        grid.append(dict(threshold=t, seconds=seconds, neardup=removal_figures(rows, keep["neardup"]),
                         combined=removal_figures(rows, keep["neardup"] & keep["semdedup"])))
        print(f"T {t:<5}: " + "   ".join(f"{label}: {line(grid[-1][part])}" for part, label in PARTS.items())
              + f"  ({seconds} s)", flush=True)
    return grid


def line(figures: dict) -> str:
    """Returns one threshold's figures as a line of text."""
    return (f"exact {figures['exact_dup_recall']:.3f} near {figures['near_dup_recall']:.3f}"
            f" false {figures['false_removals']:.4f}")


def best(grid: list[dict], part: str) -> dict | None:
    """Returns the grid row with the highest near-duplicate recall of `part` at <= MAX_FALSE_REMOVALS false
    removals (the lower false removal on a tie), or None when no threshold is that strict."""
    allowed = [g for g in grid if g[part]["false_removals"] <= MAX_FALSE_REMOVALS]
    return max(allowed, key=lambda g: (g[part]["near_dup_recall"], -g[part]["false_removals"]), default=None)


def plot(grid: list[dict], semdedup: dict, path: Path) -> None:
    """Writes near-duplicate recall against false removal (neardup alone, neardup + SemDeDup, SemDeDup alone) and
    the combined figures against the threshold."""
    from curate.plots import save_figure, subplots

    fig, (left, right) = subplots(1, 2, figsize=(12, 4.2))
    for part, label in PARTS.items():
        left.plot([g[part]["false_removals"] for g in grid], [g[part]["near_dup_recall"] for g in grid], marker="o",
                  label=label)
    left.plot([semdedup["false_removals"]], [semdedup["near_dup_recall"]], marker="s", linestyle="none",
              label=f"SemDeDup alone (eps {semdedup['eps']})")
    left.axvline(MAX_FALSE_REMOVALS, color="grey", linestyle="--", linewidth=1)
    left.axhline(0.9, color="grey", linestyle=":", linewidth=1)
    left.set_xscale("symlog", linthresh=0.01)
    left.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="distinct clean samples removed", ylabel="near duplicates found",
             title="concept_quality's pool: copy detection + SemDeDup")
    left.legend()
    for key, label in (("exact_dup_recall", "exact duplicates found"), ("near_dup_recall", "near duplicates found"),
                       ("false_removals", "distinct clean removed")):
        right.plot([g["threshold"] for g in grid], [g["combined"][key] for g in grid], marker="o", label=label)
    right.set(xlabel="neardup threshold (normalized cosine)", ylabel="rate", ylim=(0, 1.02),
              title=f"neardup + SemDeDup (eps {semdedup['eps']})")
    right.legend(loc="center left")
    save_figure(fig, path, dpi=110)


def parse_args() -> argparse.Namespace:
    """Returns the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--hq-samples", type=int, default=5_000)
    parser.add_argument("--dfn-fraction", type=float, default=0.4, help="as concept_quality.py (the run's DFN filter)")
    parser.add_argument("--eps", type=float, help="SemDeDup's eps (default: concept_quality.py's choice)")
    parser.add_argument("--seed", type=int, default=0, help="the copy descriptor's training seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (faiss: OMP_NUM_THREADS)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-curation")
    return parser.parse_args()


def main() -> None:
    """Builds or reuses the run, applies SemDeDup, trains and applies the copy descriptor, sweeps the threshold,
    prints the figures and writes the results."""
    import torch

    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    synth = ensure_synth(args.work / f"synth-{args.samples}", args.samples, args.hq_samples)
    run, timings = dfn_scored_run(synth, args.work, args.dfn_fraction, run_name="run-concepts")
    rows, semdedup = semdedup_at_chosen_eps(run, synth / "truth.parquet", args.eps)
    print(f"SemDeDup alone at eps {semdedup['eps']}: {line(semdedup)}", flush=True)
    model = args.work / f"copy-run-concepts-e{COPY_EPOCHS}-m{COPY_MAX_IMAGES}-s{args.seed}"
    timings |= describe(run, model, args.seed, args.threads)
    grid = sweep(run, rows)
    chosen = {part: best(grid, part) for part in PARTS}
    for part, label in PARTS.items():
        row = chosen[part]
        print(f"best {label} at <= {MAX_FALSE_REMOVALS:.0%} false removal: "
              + (f"T {row['threshold']}: {line(row[part])}" if row else "none"))
    timings["total_seconds"] = round(time.perf_counter() - start, 1)
    results = dict(config=vars(args) | dict(work=str(args.work), epochs=COPY_EPOCHS, max_images=COPY_MAX_IMAGES,
                                            max_false_removals=MAX_FALSE_REMOVALS),
                   semdedup=semdedup, grid=grid, best=chosen, timings=timings)
    RESULTS.mkdir(exist_ok=True)
    plot(grid, semdedup, RESULTS / "concept_neardup.png")
    print(f"wrote {write_results('concept_neardup', results)} and {RESULTS / 'concept_neardup.png'}")


if __name__ == "__main__":
    main()
