"""SemDeDup + DBP at scale on synthetic embeddings: wall time and peak memory at 100k, 300k and 1M x 512, and
SemDeDup against a straightforward per-cluster dense implementation (speed ratio, exact agreement).

    python benchmarks/concept_scale.py [--sizes 100000,300000,1000000] [--dim 512]

Each size runs in its own process; its peak RSS is measured from after the data is generated (the mark is reset),
so it covers k-means, SemDeDup and DBP with the embeddings resident. The embeddings are a Gaussian mixture (k = 1000
components with Zipf-distributed sizes) with planted near-duplicates: 5% of the points are copies of another
point of the same component plus noise of norm ~1e-3. Writes benchmarks/results/concept_scale.json and .png.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from common import RESULTS, write_results

COMPONENTS = 1000
DUP_SHARE = 0.05
EPS = 0.01
DBP_FRACTION = 0.5


def mixture(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (normalized float32 n x dim points, index of each planted copy's original or -1).

    Members of a component are about 0.5 similar to each other; a copy is about 1 - 5e-7 similar to its original.
    Generated in chunks so the generator's own memory does not dominate the peak.
    """
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, COMPONENTS + 1) ** 0.8
    component = rng.choice(COMPONENTS, size=n, p=weights / weights.sum())
    centers = rng.standard_normal(size=(COMPONENTS, dim), dtype=np.float32)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        end = min(n, start + 100_000)
        x[start:end] = centers[component[start:end]] + rng.standard_normal(size=(end - start, dim), dtype=np.float32)
    order = np.argsort(component, kind="stable")
    first = np.searchsorted(component[order], np.arange(COMPONENTS))
    copies = rng.choice(n, size=int(n * DUP_SHARE), replace=False)
    sizes = np.bincount(component, minlength=COMPONENTS)[component[copies]]
    sources = order[first[component[copies]] + rng.integers(0, sizes)]
    valid = (sources != copies) & ~np.isin(sources, copies)
    copies, sources = copies[valid], sources[valid]
    noise = rng.standard_normal(size=(len(copies), dim), dtype=np.float32) * np.float32(1e-3)
    x[copies] = x[sources] + noise * np.linalg.norm(x[sources], axis=1, keepdims=True) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    original = np.full(n, -1)
    original[copies] = sources
    return x, original


def dense_semdedup(x: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """Returns each row's max similarity to an earlier cluster member, the straightforward way: one full
    similarity matrix per cluster, its strict upper triangle, the column maxima (as the reference code does)."""
    import torch

    best = np.full(len(x), np.nan, np.float32)
    for rows in members:
        if len(rows) < 2:
            continue
        block = torch.from_numpy(np.ascontiguousarray(x[rows]))
        upper = torch.triu(block @ block.T, diagonal=1)
        column_max = upper.max(dim=0).values.numpy()
        best[rows[1:]] = column_max[1:]
    return best


def peak_rss_gib() -> float:
    """Returns this process's peak resident memory in GiB since the last reset_peak()."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak() -> None:
    """Resets the peak-RSS mark (Linux), so the generator's temporaries don't count in the pruning's peak."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(n: int, dim: int) -> dict:
    """Runs k-means, SemDeDup, DBP and the dense comparison on n points; returns the figures."""
    from curate.concepts.kmeans import KMeansConfig, spherical_kmeans
    from curate.concepts.members import cluster_members
    from curate.concepts.quotas import complexity, keep_in_clusters, quotas
    from curate.concepts.similarity import cluster_similarities, gather_scores

    x, original = mixture(n, dim)
    generation_gib = peak_rss_gib()
    reset_peak()
    times = {}
    start = time.perf_counter()
    clustering = spherical_kmeans(x, KMeansConfig(clusters=COMPONENTS))
    times["kmeans"] = time.perf_counter() - start
    start = time.perf_counter()
    members = cluster_members(clustering.assignment, clustering.distance, "hard", 0)
    scores = gather_scores(n, members, cluster_similarities(x, members))
    kept = scores.keep(EPS)
    times["semdedup"] = time.perf_counter() - start
    start = time.perf_counter()
    rows = np.flatnonzero(kept)
    stats = complexity(clustering.centroids, clustering.assignment[rows], clustering.distance[rows])
    quota = quotas(stats.probability, stats.size, int(n * DBP_FRACTION))
    keep_in_clusters(clustering.assignment[rows], clustering.distance[rows], quota, "hard", 0)
    times["dbp"] = time.perf_counter() - start
    peak = peak_rss_gib()
    start = time.perf_counter()
    dense = dense_semdedup(x, members)
    times["dense_semdedup"] = time.perf_counter() - start
    dense_kept = ~(dense > np.float32(1 - EPS))
    copies = np.flatnonzero(original >= 0)
    one_removed = kept[copies] != kept[original[copies]]
    return dict(n=n, dim=dim, clusters=COMPONENTS, seconds={k: round(v, 2) for k, v in times.items()},
                total_seconds=round(times["kmeans"] + times["semdedup"] + times["dbp"], 2),
                peak_rss_gib=round(peak, 2), embeddings_gib=round(x.nbytes / 2**30, 2),
                generation_peak_gib=round(generation_gib, 2), largest_cluster=int(clustering.sizes.max()),
                semdedup_kept=int(kept.sum()), planted_copies=len(copies),
                planted_recall=round(float(one_removed.mean()), 4),
                dense_agrees=bool(np.array_equal(kept, dense_kept)),
                dense_over_blocked=round(times["dense_semdedup"] / times["semdedup"], 2))


def plot(rows: list[dict], path: Path) -> None:
    """Writes wall time per step and peak memory against N."""
    from curate.plots import save_figure, subplots

    ns = [r["n"] for r in rows]
    fig, (left, right) = subplots(1, 2, figsize=(10, 4))
    for step in ("kmeans", "semdedup", "dbp", "dense_semdedup"):
        left.plot(ns, [r["seconds"][step] for r in rows], marker="o", label=step)
    left.set(xscale="log", yscale="log", xlabel="N embeddings (512-d)", ylabel="seconds", title="Wall time, 2 cores")
    left.legend()
    right.plot(ns, [r["peak_rss_gib"] for r in rows], marker="o", label="peak RSS")
    right.plot(ns, [r["embeddings_gib"] for r in rows], marker="o", label="embeddings alone")
    right.set(xscale="log", xlabel="N embeddings", ylabel="GiB", title="Memory")
    right.legend()
    save_figure(fig, path, dpi=110)


def main() -> None:
    """Runs the benchmark, prints its figures and writes its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.dim)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim)],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"N={n:>8}: total {r['total_seconds']:.1f} s {r['seconds']}  peak {r['peak_rss_gib']:.2f} GiB"
              f"  recall {r['planted_recall']:.4f}  dense agrees {r['dense_agrees']}"
              f"  dense/blocked {r['dense_over_blocked']}")
    RESULTS.mkdir(exist_ok=True)
    plot(rows, RESULTS / "concept_scale.png")
    path = write_results("concept_scale", dict(eps=EPS, dbp_fraction=DBP_FRACTION, dup_share=DUP_SHARE, rows=rows))
    print(f"wrote {path} and {RESULTS / 'concept_scale.png'}")


if __name__ == "__main__":
    main()
