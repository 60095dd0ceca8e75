"""What decontaminating changes in `curate evaluate`'s figures: held-out pairs leaked into the pool, before and after.

    python benchmarks/copy_decontam_eval.py [--samples 5000] [--leaked-per-class 5] [--pool-subset N] [--seeds 0,1,2]

The pool and the trained copy descriptor are copy_detection.py's (run that first). Of each held-out class,
--leaked-per-class images (seeded) leak into the pool as near copies with their held-out captions, in an extra shard
(copy_decontam.planted_shard); the run is described and decontaminated against the whole held-out set at
--threshold. The held-out set is split in two halves of equal size and equal classes: the leaked images and the
rest. `curate evaluate` (the library call, at its default compute) trains from scratch on three selections of the
run: everything (contaminated), decontam_keep (decontaminated), and the pool without the planted copies (clean, the
truth), and measures each on both halves. A leak shows as the leaked half scoring above the other; decontaminating
should close that gap and bring the figures back to the clean pool's. --pool-subset N trains on the planted copies
and N other samples only, so each leaked pair is seen more often at the same compute. Each setup's figures are
added to benchmarks/results/copy_decontam_eval.json (and .png) beside earlier setups'.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from common import RESULTS, write_results
from copy_decontam import decontaminate, described_run, planted_shard, trained_descriptor

from curate.cli.evaluate import seed_list
from curate.evaluate.run import DEFAULT_SAMPLES_SEEN, evaluate_subset
from curate.rundir import RunDir

SELECTIONS = {"contaminated": "TRUE", "decontaminated": "decontam_keep",
              "clean pool": "NOT starts_with(key, 'planted-')"}
METRICS = ("zeroshot_top1", "zeroshot_top5", "image_to_text_r1", "text_to_image_r1")


def leaked_rows(heldout: Path, per_class: int, seed: int = 0) -> list[int]:
    """Returns `per_class` random rows of every held-out class (each class needs 2 x per_class), sorted."""
    labels = pq.read_table(heldout, columns=["label"])["label"].to_numpy(zero_copy_only=False)
    rng = np.random.default_rng([seed, 1819])
    rows = []
    for label in sorted(set(labels)):
        members = np.flatnonzero(labels == label)
        if len(members) < 2 * per_class:
            raise SystemExit(f"class {label!r} has {len(members)} held-out images, fewer than 2 x {per_class}")
        rows += rng.choice(members, size=per_class, replace=False).tolist()
    return sorted(rows)


def split_heldout(heldout: Path, rows: list[int], folder: Path) -> dict[str, Path]:
    """Writes the leaked rows and the rest of each class (as many per class, the first ones) as two Parquet
    files; returns {"leaked": path, "not leaked": path}."""
    table = pq.read_table(heldout)
    leaked = np.zeros(table.num_rows, dtype=bool)
    leaked[rows] = True
    labels = table["label"].to_numpy(zero_copy_only=False)
    counts = {label: int((labels[leaked] == label).sum()) for label in set(labels)}
    rest, taken = [], dict.fromkeys(counts, 0)
    for i in np.flatnonzero(~leaked):
        if taken[labels[i]] < counts[labels[i]]:
            rest.append(int(i))
            taken[labels[i]] += 1
    paths = {"leaked": folder / "heldout-leaked.parquet", "not leaked": folder / "heldout-not-leaked.parquet"}
    pq.write_table(table.filter(leaked), paths["leaked"])
    pq.write_table(table.take(rest), paths["not leaked"])
    assert pc.count_distinct(table.filter(leaked)["label"]).as_py() == len(counts)
    return paths


def selections(pool_subset: int | None) -> dict[str, str]:
    """Returns {label: predicate} of the three selections, each limited to the planted copies and the first
    `pool_subset` other samples by uid when given (a smaller pool: each leaked pair seen more often)."""
    if pool_subset is None:
        return dict(SELECTIONS)
    part = (f"(starts_with(key, 'planted-') OR uid IN (SELECT uid FROM samples WHERE NOT starts_with(key, "
            f"'planted-') ORDER BY uid LIMIT {int(pool_subset)}))")
    return {label: f"{where} AND {part}" for label, where in SELECTIONS.items()}


def evaluations(run: RunDir, halves: dict[str, Path], pool_subset: int | None, samples_seen: int,
                seeds: list[int]) -> list[dict]:
    """Returns `curate evaluate`'s figures of each selection on each held-out half (printed as they come)."""
    results = []
    for label, where in selections(pool_subset).items():
        for half, path in halves.items():
            out = evaluate_subset(run, where, path, samples_seen, seeds, progress=False)
            results.append(dict(selection=label, predicate=where, heldout=half, subset_size=out["subset_size"],
                                mean={m: out["mean"][m] for m in METRICS}, std={m: out["std"][m] for m in METRICS}))
            print(f"{label:15s} n={out['subset_size']:5d} held-out {half:10s}: "
                  + "  ".join(f"{m} {out['mean'][m]:.3f} ± {out['std'][m]:.3f}" for m in METRICS), flush=True)
    return results


def plot(setups: dict[str, dict], path: Path) -> None:
    """Writes zero-shot top-1 and text-to-image R@1 per selection, leaked half beside the other (seeds' std as
    error bars), one row of panels per pool setup."""
    from curate.plots import save_figure, subplots

    fig, axes = subplots(len(setups), 2, figsize=(12, 3.8 * len(setups)), squeeze=False)
    width = 0.38
    for row, (setup, figures) in zip(axes, setups.items(), strict=True):
        for ax, metric in zip(row, ("zeroshot_top1", "text_to_image_r1"), strict=True):
            for offset, half in ((-width / 2, "leaked"), (width / 2, "not leaked")):
                picked = [r for r in figures["evaluations"] if r["heldout"] == half]
                ax.bar(np.arange(len(picked)) + offset, [r["mean"][metric] for r in picked], width,
                       yerr=[r["std"][metric] for r in picked], label=f"held-out images {half}", capsize=3)
            ax.set_xticks(np.arange(len(SELECTIONS)), list(SELECTIONS))
            ax.set(ylabel=metric, title=f"{setup}: {metric}")
            ax.legend()
    save_figure(fig, path, dpi=110)


def main() -> None:
    """Leaks, decontaminates, evaluates the three selections on both halves; prints and writes the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--leaked-per-class", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.64,
                        help="decontamination threshold (copy_decontam.py's best at <= 0.5 %% of the pool removed)")
    parser.add_argument("--pool-subset", type=int, help="train on the planted copies and this many other samples")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    parser.add_argument("--samples-seen", type=int, default=DEFAULT_SAMPLES_SEEN)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-copy-detection")
    args = parser.parse_args()
    synth, model = args.work / f"synth-detail-{args.samples}", trained_descriptor(args.work, args.samples)
    heldout = synth / "heldout.parquet"
    folder = args.work / f"decontam-eval-{args.samples}-{args.leaked_per_class}-{args.threshold}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = leaked_rows(heldout, args.leaked_per_class)
    planted_shard(heldout, rows, folder / "planted.tar")
    run = RunDir(folder / "run")
    described = described_run(synth, folder / "planted.tar", model, run)
    removal = decontaminate(run, heldout, args.threshold, "pool")
    print(f"decontamination: {removal}")
    results = evaluations(run, split_heldout(heldout, rows, folder), args.pool_subset, args.samples_seen, args.seeds)
    setup = f"pool {args.pool_subset or args.samples} + {len(rows)} leaked"
    path = RESULTS / "copy_decontam_eval.json"
    setups = json.loads(path.read_text()).get("setups", {}) if path.exists() else {}
    setups[setup] = dict(config=vars(args) | {"work": str(args.work)}, heldout_half_size=len(rows),
                         decontamination=removal, evaluations=results, ingest_and_describe_seconds=described)
    RESULTS.mkdir(exist_ok=True)
    plot(setups, RESULTS / "copy_decontam_eval.png")
    print(f"wrote {write_results('copy_decontam_eval', dict(setups=setups))} and {RESULTS / 'copy_decontam_eval.png'}")


if __name__ == "__main__":
    main()
