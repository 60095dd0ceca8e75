"""DQ at scale: per-cluster GraphCut bins and bin sampling on synthetic 512-d embeddings, 2 CPU cores.

    python benchmarks/dq_scale.py [--sizes 100000,300000,1000000] [--dim 512] [--bins 10]

The embeddings are concept_scale.py's Gaussian mixture (1,000 Zipf-sized components); k-means with k = 1,000
(faiss, as SemDeDup and DBP use it), then DQ within every cluster: K GraphCut bins, 30% kept. Each size runs in
its own process; peak RSS is measured from after the data is generated. A cluster too small for K bins that each
keep a sample at 30% gets fewer bins, as `curate filter dq --per cluster` does. The straightforward
implementation (a similarity matrix per bin, as the reference computes it) runs on the five largest clusters
beside the fast one, for the speed ratio and to check both pick the same samples. Writes results/dq_scale.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from common import write_results
from concept_scale import COMPONENTS, mixture, peak_rss_gib, reset_peak

KEEP = 0.3


def measure(n: int, dim: int, bins: int) -> dict:
    """Runs k-means and DQ on n points; returns the figures."""
    from curate.concepts.kmeans import KMeansConfig, spherical_kmeans
    from curate.concepts.quantization import (
        graphcut_bins,
        graphcut_bins_dense,
        group_bin_count,
        keep_counts,
        sample_bins,
    )

    x, _ = mixture(n, dim)
    reset_peak()
    start = time.perf_counter()
    clustering = spherical_kmeans(x, KMeansConfig(clusters=COMPONENTS))
    kmeans = time.perf_counter() - start
    start = time.perf_counter()
    groups = [np.flatnonzero(clustering.assignment == c) for c in range(COMPONENTS)]
    all_bins = [rows[b] for rows in groups if len(rows)
                for b in graphcut_bins(x[rows], group_bin_count(len(rows), bins, KEEP))]
    counts = keep_counts(np.array([len(b) for b in all_bins]), int(len(x) * KEEP), allow_empty=True)
    kept = sample_bins(all_bins, counts, seed=0)
    dq = time.perf_counter() - start
    peak = peak_rss_gib()
    largest = sorted(groups, key=len)[-5:]
    start = time.perf_counter()
    fast = [graphcut_bins(x[rows], bins) for rows in largest]
    fast_seconds = time.perf_counter() - start
    start = time.perf_counter()
    dense = [graphcut_bins_dense(x[rows], bins) for rows in largest]
    dense_seconds = time.perf_counter() - start
    same = all(np.array_equal(a, b) for f, d in zip(fast, dense, strict=True) for a, b in zip(f, d, strict=True))
    return dict(n=n, dim=dim, bins=bins, seconds=dict(kmeans=round(kmeans, 2), dq=round(dq, 2)),
                total_seconds=round(kmeans + dq, 2), peak_rss_gib=round(peak, 2), kept=len(kept),
                binned=int(sum(len(b) for b in all_bins)), largest_cluster=int(max(len(g) for g in groups)),
                dense_check=dict(clusters=[len(g) for g in largest], fast_seconds=round(fast_seconds, 2),
                                 dense_seconds=round(dense_seconds, 2), same_picks=same,
                                 dense_over_fast=round(dense_seconds / fast_seconds, 2)))


def main() -> None:
    """Runs each size in its own process, prints the figures and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # run one size in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.dim, args.bins)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim), "--bins",
                               str(args.bins)], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.splitlines()[-1]))
        r = rows[-1]
        print(f"N={n:>9,}: total {r['total_seconds']} s {r['seconds']}  peak {r['peak_rss_gib']} GiB  largest "
              f"cluster {r['largest_cluster']}  dense/fast {r['dense_check']['dense_over_fast']}x  same picks "
              f"{r['dense_check']['same_picks']}")
    print(f"wrote {write_results('dq_scale', dict(rows=rows))}")


if __name__ == "__main__":
    main()
