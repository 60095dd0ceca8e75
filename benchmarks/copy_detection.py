"""Copy detection: near-duplicate recall vs false removal of distinct samples, per method, across thresholds.

Pools (benchmarks/copy_detection_tasks.py): the synth pool made with --instance-detail (distinct renderings of a
concept differ like photos; near copies are 1-3 px shifts and/or 86-96 % crops resized back, re-encoded), and
sklearn's real digits upsampled to 64 px with near copies made by the same transform. For each method and
threshold, duplicate groups are the connected components of the pairs past the threshold and each group keeps its
first member in pool order; the figures are near- and exact-duplicate recall (planted copies removed / planted),
false removal (distinct clean samples removed / distinct clean samples) and the best near-duplicate recall at
<= 2 % false removal. Methods (benchmarks/copy_detection_methods.py, one function and one METHODS line each):
pHash-64, raw pixels (all pairs, not k-means), the tiny CLIP (its DFN trained on hq/).

--search-cost: curate.copydetect.search's IndexFlatIP vs its inverted file (IVF) on random unit vectors (dim 128)
with planted near pairs: build and all-pairs-above-threshold time, peak RSS (one subprocess per measurement) and
the planted pairs found.

    python benchmarks/copy_detection.py [--samples 20000] [--methods phash,pixels,tiny-clip] [--tasks synth,digits]
    python benchmarks/copy_detection.py --search-cost [--sizes 100000,1000000] [--threads 2] [--flat-max N]

Writes the "quality" or "search_cost" part of benchmarks/results/copy_detection.json (keeping the other), and
the recall curves to copy_detection.png.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import copy_detection_tasks as tasks
import numpy as np
from common import RESULTS, ensure_synth, timed, write_results
from copy_detection_methods import METHODS, Context, Signatures

from curate.filters.neardup import normalized_links

MAX_FALSE_REMOVAL = 0.02
DIGIT_NEAR, DIGIT_EXACT = 180, 90  # planted among the 1,797 digits: 10 % near and 5 % exact copies
SEARCH_DIM, SEARCH_THRESHOLD, SEARCH_NOISE = 128, 0.9, 0.03  # planted pairs: cosine about 1/sqrt(1+128*0.03^2)=0.95


def sweep(task: tasks.Task, signatures: Signatures) -> dict:
    """Returns the figures (copy_detection_tasks.duplicate_figures) at every threshold of the signatures' grid,
    the best near-duplicate recall at <= MAX_FALSE_REMOVAL (None when no threshold is that strict), the number of
    candidate pairs and the pair-search seconds."""
    thresholds = list(signatures.thresholds)
    start = time.perf_counter()
    pairs = tasks.close_pairs(signatures.data, min(thresholds))
    seconds = time.perf_counter() - start
    if signatures.score_norm:
        removed = [tasks.group_removals(len(task.images), normalized_links(signatures.data, pairs, t), [t])[0]
                   for t in thresholds]
    else:
        removed = tasks.group_removals(len(task.images), pairs, thresholds)
    grid = [tasks.duplicate_figures(task, r, t) for r, t in zip(removed, thresholds, strict=True)]
    return dict(grid=grid, best_under_false_limit=tasks.best_under(grid, "near_dup_recall", MAX_FALSE_REMOVAL),
                candidate_pairs=len(pairs[0]), pair_search_seconds=round(seconds, 2))


def describe(best: dict | None) -> str:
    """Returns one line of a threshold's figures ("none" for None)."""
    if best is None:
        return "none"
    return (f"near {best['near_dup_recall']:.3f} exact {best['exact_dup_recall']:.3f} false {best['false_removal']:.4f}"
            f" at {best['threshold']}")


def quality(args: argparse.Namespace) -> dict:
    """Runs every method on every task; returns {task: {method: sweep figures + signature seconds}}."""
    synth = ensure_synth(args.work / f"synth-detail-{args.samples}", args.samples, hq_samples=args.hq_samples,
                         instance_detail=True)
    context = Context(synth=synth, work=args.work / f"models-{args.samples}")
    makers = {"synth": lambda: tasks.synth_task(synth), "digits": lambda: tasks.digits_task(DIGIT_NEAR, DIGIT_EXACT)}
    results: dict[str, dict] = {}
    for task_name in args.tasks:
        task = makers[task_name]()
        results[task_name] = {}
        for name in args.methods:
            start = time.perf_counter()
            signatures = METHODS[name](task, context)
            seconds = time.perf_counter() - start
            figures = sweep(task, signatures) | {"signature_seconds": round(seconds, 1)}
            results[task_name][name] = figures
            best = describe(figures["best_under_false_limit"])
            print(f"{task_name:6s} {name:10s} best at <= 2% false removal: {best}"
                  f"  ({figures['signature_seconds']}s + {figures['pair_search_seconds']}s pairs)", flush=True)
    return results


def plot(results: dict, path: Path) -> None:
    """Writes near-duplicate recall vs false removal, one curve per method, one panel per task."""
    from curate.plots import save_figure, subplots

    fig, axes = subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (task, methods) in zip(axes[0], results.items(), strict=True):
        for name, figures in methods.items():
            grid = sorted(figures["grid"], key=lambda g: g["false_removal"])
            ax.plot([g["false_removal"] for g in grid], [g["near_dup_recall"] for g in grid], marker="o", label=name)
        ax.axvline(MAX_FALSE_REMOVAL, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="distinct clean samples removed", ylabel="near duplicates removed",
               title=f"copy detection: {task}")
        ax.legend()
    save_figure(fig, path, dpi=110)


def planted_vectors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (n x SEARCH_DIM random unit float32 vectors, planted pairs as P x 2 rows): min(5000, n // 20) rows
    are replaced by noisy copies (cosine about 0.95) of other rows."""
    rng = np.random.default_rng([seed, 1818])
    x = rng.standard_normal((n, SEARCH_DIM), dtype=np.float32)
    picks = rng.choice(n, 2 * min(5000, n // 20), replace=False).reshape(-1, 2)
    x[picks[:, 1]] = x[picks[:, 0]] + rng.standard_normal((len(picks), SEARCH_DIM), dtype=np.float32) * (
        SEARCH_NOISE * np.linalg.norm(x[picks[:, 0]], axis=1, keepdims=True))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.sort(picks, axis=1)


def search_worker(kind: str, n: int, threads: int) -> dict:
    """Returns one search-cost measurement of curate.copydetect.search (kind "flat": IndexFlatIP, "ivf": its
    inverted file) on planted_vectors(n): index build seconds, all-pairs-above-threshold seconds (build included),
    planted-pair recall and this process's peak RSS (run it in a process of its own)."""
    import faiss

    from curate.copydetect.search import NPROBE, build_index, ivf_lists, similar_pairs

    faiss.omp_set_num_threads(threads)
    x, planted = planted_vectors(n)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exact_limit = n if kind == "flat" else 0
    build, index = timed(build_index, x, exact_limit)
    del index
    seconds, (i, j, _) = timed(similar_pairs, x, SEARCH_THRESHOLD, exact_limit=exact_limit)
    recall = float(np.isin(planted[:, 0] * n + planted[:, 1], i * n + j).mean())
    return dict(index=kind, n=n, dim=SEARCH_DIM, threshold=SEARCH_THRESHOLD, threads=threads,
                nlist=None if kind == "flat" else ivf_lists(n), nprobe=None if kind == "flat" else NPROBE,
                planted_pairs=len(planted), pairs_found=len(i), planted_recall=round(recall, 4),
                build_seconds=round(build, 2), pairs_seconds=round(seconds, 2),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                rss_before_index_mb=round(before_mb, 1),
                vectors_mb=round(x.nbytes / 2**20, 1))


def search_cost(sizes: list[int], threads: int, flat_max: int) -> list[dict]:
    """Runs search_worker for flat (up to flat_max vectors: its all-pairs time grows as N^2) and IVF at each size,
    each in a fresh subprocess; returns the rows."""
    rows = []
    for n in sizes:
        for kind in ("flat", "ivf") if n <= flat_max else ("ivf",):
            command = [sys.executable, __file__, "--search-worker", f"{kind}:{n}", "--threads", str(threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True,
                                 env=os.environ | {"OMP_NUM_THREADS": str(threads)}).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def with_earlier_methods(results: dict) -> dict:
    """Returns {task: {method: figures}} with the methods of an earlier results file that this run did not measure
    added (so one method can be rerun alone)."""
    path = RESULTS / "copy_detection.json"
    earlier = json.loads(path.read_text()).get("quality", {}).get("results", {}) if path.exists() else {}
    return {task: earlier.get(task, {}) | methods for task, methods in results.items()}


def write_part(part: str, figures: dict) -> Path:
    """Writes `figures` as the `part` ("quality" or "search_cost") of results/copy_detection.json, keeping the other
    part from an earlier run; returns the path."""
    path = RESULTS / "copy_detection.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    parts = {k: earlier[k] for k in ("quality", "search_cost") if k in earlier}
    return write_results("copy_detection", parts | {part: figures})


def parse_args() -> argparse.Namespace:
    """Returns the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    split = lambda t: [s for s in t.split(",") if s]  # noqa: E731
    parser.add_argument("--samples", type=int, default=20_000, help="synth pool size (default 20000)")
    parser.add_argument("--hq-samples", type=int, default=5_000, help="trusted pairs the tiny CLIP trains on")
    parser.add_argument("--methods", type=split, default=list(METHODS), help=f"of {', '.join(METHODS)}")
    parser.add_argument("--tasks", type=split, default=["synth", "digits"])
    parser.add_argument("--search-cost", action="store_true", help="measure faiss search cost instead")
    parser.add_argument("--sizes", type=lambda t: [int(s) for s in split(t)], default=[100_000, 1_000_000])
    parser.add_argument("--flat-max", type=int, default=1_000_000,
                        help="largest size measured with the exact index too (about 13 s at 50k on 2 cores, x4 per 2x)")
    parser.add_argument("--threads", type=int, default=2, help="faiss/torch threads (default 2)")
    parser.add_argument("--search-worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-copy-detection")
    return parser.parse_args()


def main() -> None:
    """Runs the benchmark part asked for, prints its figures and writes its results."""
    args = parse_args()
    if args.search_worker:
        kind, n = args.search_worker.split(":")
        print(json.dumps(search_worker(kind, int(n), args.threads)))
        return
    if args.search_cost:
        rows = search_cost(args.sizes, args.threads, args.flat_max)
        config = dict(sizes=args.sizes, threads=args.threads, flat_max=args.flat_max)
        print(f"wrote {write_part('search_cost', config | {'rows': rows})}")
        return
    import torch

    torch.set_num_threads(1)
    results = with_earlier_methods(quality(args))
    methods = list(dict.fromkeys([m for figures in results.values() for m in figures]))
    config = dict(samples=args.samples, hq_samples=args.hq_samples, methods=methods, tasks=args.tasks,
                  max_false_removal=MAX_FALSE_REMOVAL)
    path = write_part("quality", dict(config=config, results=results))
    plot(results, RESULTS / "copy_detection.png")
    print(f"wrote {path} and {RESULTS / 'copy_detection.png'}")


if __name__ == "__main__":
    main()
