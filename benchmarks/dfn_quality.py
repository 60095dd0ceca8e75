"""DFN filtering quality: a tiny DFN trained on the synth trusted set (hq/) scores the synth pool, measured against
the pool's ground truth; beside it the same model trained the same way on as many random raw pool pairs.

    python benchmarks/dfn_quality.py [--samples N] [--epochs E] [--batch-size B] [--lr LR] [--work DIR]

Prints a table and writes benchmarks/results/dfn_quality.json and dfn_quality.png (score histograms per truth
kind for both models). dfn_score is cosine(image, text) from the run's `embeddings` view; keeping the top
fraction uses `curate filter dfn`'s stage (curate.filters.dfn.DFNFilter: DataComp's rule, threshold =
descending scores[int(N * F)], keep score >= threshold, over the whole pool).
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from common import ALIGNED, RESULTS, timed, truth_connection, write_results

from curate.filters.dfn import DFNFilter
from curate.models import ModelSpec
from curate.models.dfn import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS
from curate.rundir import RunDir
from curate.stages.embed import embed
from curate.stages.ingest import ingest
from curate.stages.training import train_dfn

FRACTIONS = (0.3, 0.5, 0.7)
NEGATIVES = ("misaligned", "junk_caption")


def pool_scores(run: RunDir, truth: Path, fraction: float) -> dict[str, np.ndarray]:
    """Applies the DFN filter at `fraction`; returns score, keep and truth kind of every pool sample."""
    DFNFilter(keep_fraction=fraction).apply(run, progress=False)
    con = truth_connection(run, truth)
    try:
        rows = con.execute(
            "SELECT list_dot_product(e.image_embedding, e.text_embedding) AS score, s.dfn_keep AS keep, t.kind"
            " FROM embeddings e JOIN samples s USING (uid) JOIN truth t USING (uid) ORDER BY uid").fetchnumpy()
    finally:
        con.close()
    return {"score": rows["score"].astype(np.float64), "keep": rows["keep"].astype(bool),
            "kind": np.asarray(rows["kind"], dtype=object)}


def auc(scores: np.ndarray, kinds: np.ndarray, positives: tuple[str, ...]) -> float:
    """Returns the ROC AUC of scores separating `positives` from misaligned + junk_caption pairs."""
    from sklearn.metrics import roc_auc_score

    mask = np.isin(kinds, positives + NEGATIVES)
    return float(roc_auc_score(np.isin(kinds[mask], positives), scores[mask]))


def evaluate(run: RunDir, truth: Path) -> dict:
    """Returns AUCs, per-kind mean scores, and precision/recall/per-kind keep rates at each keep fraction."""
    result: dict = {"keep": {}}
    for fraction in FRACTIONS:
        rows = pool_scores(run, truth, fraction)
        kinds, keep = rows["kind"], rows["keep"]
        good = np.isin(kinds, ALIGNED)
        clean = kinds == "clean"
        result["keep"][str(fraction)] = dict(
            kept=int(keep.sum()),
            precision_aligned=float(good[keep].mean()), recall_aligned=float(keep[good].mean()),
            precision_clean=float(clean[keep].mean()), recall_clean=float(keep[clean].mean()),
            kept_by_kind={k: round(float(keep[kinds == k].mean()), 4) for k in sorted(set(kinds))},
        )
    scores = rows["score"]
    result["auc_clean_vs_misaligned_junk_caption"] = auc(scores, kinds, ("clean",))
    result["auc_aligned_vs_misaligned_junk_caption"] = auc(scores, kinds, ALIGNED)
    result["mean_score_by_kind"] = {k: round(float(scores[kinds == k].mean()), 4) for k in sorted(set(kinds))}
    result["_scores"] = (scores, kinds)
    return result


def train_and_score(name: str, trusted: list[str], where: str | None, pool: Path, truth: Path, work: Path,
                    args: argparse.Namespace) -> dict:
    """Trains a DFN on the trusted inputs, embeds a fresh ingest of the pool with it; returns its figures."""
    model_dir, run = work / f"dfn-{name}", RunDir(work / f"pool-{name}")
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.rmtree(run.path, ignore_errors=True)
    train_seconds, summary = timed(train_dfn, trusted, model_dir, epochs=args.epochs, seed=args.seed,
                                   batch_size=args.batch_size, lr=args.lr, samples_seen=args.samples_seen,
                                   where=where, progress=False)
    ingest([str(pool)], run, progress=False)
    embed_seconds, _ = timed(embed, run, ModelSpec(model=str(model_dir)), progress=False)
    figures = evaluate(run, truth)
    figures.update(train_seconds=round(train_seconds, 1), embed_seconds=round(embed_seconds, 1),
                   pairs=summary["pairs"], samples_seen=summary["samples_seen"], steps=summary["steps"],
                   final_loss=round(summary["final_loss"], 4))
    return figures


def plot(results: dict[str, dict], path: Path) -> None:
    """Writes a PNG of score histograms per truth kind, one panel per model."""
    from curate.plots import save_figure, subplots

    fig, axes = subplots(1, len(results), figsize=(6 * len(results), 4), sharey=True)
    for ax, (name, figures) in zip(np.atleast_1d(axes), results.items(), strict=True):
        scores, kinds = figures["_scores"]
        bins = np.linspace(scores.min(), scores.max(), 50)
        for kind in ("clean", "exact_dup", "near_dup", "misaligned", "junk_caption", "junk_image"):
            ax.hist(scores[kinds == kind], bins=bins, histtype="step", linewidth=1.5, label=kind, density=True)
        ax.set_title(f"DFN trained on {name}: AUC {figures['auc_clean_vs_misaligned_junk_caption']:.3f}")
        ax.set_xlabel("dfn_score = cosine(image, text)")
    np.atleast_1d(axes)[0].set_ylabel("density")
    np.atleast_1d(axes)[0].legend()
    save_figure(fig, path, dpi=110)


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8000, help="pool size; hq/ gets half as many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--samples-seen", type=int)
    parser.add_argument("--models", default="hq,raw", help="which DFNs to train: hq, raw or both")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-dfn")
    args = parser.parse_args()
    synth = args.work / f"synth-{args.samples}-{args.seed}"
    if not (synth / "truth.parquet").exists():
        from curate.synth import generate_pool

        generate_pool(synth, samples=args.samples, seed=args.seed)
    hq_count = connect_count(synth / "hq")
    # The raw baseline: as many random pool pairs as hq holds, drawn by a seeded hash of the uid.
    raw_where = f"uid IN (SELECT uid FROM samples ORDER BY hash(uid || 'raw-{args.seed}') LIMIT {hq_count})"
    trusted = {"hq": ([str(synth / "hq")], None), "raw": ([str(synth / "pool")], raw_where)}
    results = {}
    for name in args.models.split(","):
        inputs, where = trusted[name]
        results[name] = train_and_score(name, inputs, where, synth / "pool", synth / "truth.parquet", args.work, args)
        r = results[name]
        print(f"{name:4s} AUC clean {r['auc_clean_vs_misaligned_junk_caption']:.4f}"
              f"  aligned {r['auc_aligned_vs_misaligned_junk_caption']:.4f}  train {r['train_seconds']:.0f} s"
              f"  embed {r['embed_seconds']:.0f} s  loss {r['final_loss']:.3f}")
        for fraction, k in r["keep"].items():
            print(f"     keep {fraction}: precision {k['precision_aligned']:.3f} recall {k['recall_aligned']:.3f}"
                  f" (aligned)  precision {k['precision_clean']:.3f} recall {k['recall_clean']:.3f} (clean)")
    RESULTS.mkdir(exist_ok=True)
    plot(results, RESULTS / "dfn_quality.png")
    config = dict(pool_samples=args.samples, hq_samples=hq_count, seed=args.seed, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, samples_seen=args.samples_seen)
    clean = {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()}
    path = write_results("dfn_quality", dict(config=config, results=clean))
    print(f"wrote {path} and {RESULTS / 'dfn_quality.png'}")


def connect_count(folder: Path) -> int:
    """Returns how many samples the img2dataset shards in `folder` hold (from their _stats.json files)."""
    return sum(json.loads(p.read_text())["successes"] for p in sorted(folder.glob("*_stats.json")))


if __name__ == "__main__":
    main()
