"""Density-based pruning, DBP (Abbas et al. 2024): each concept cluster keeps a share set by its complexity.

Runs on what remains after the earlier steps (by default the SemDeDup survivors when SemDeDup has run; any
SQL predicate with --where, e.g. "semdedup_keep AND dfn_keep"), on the same k-means clusters. The number kept
is int(N_pool * keep_fraction), N_pool being every embedded sample, so fractions compare with the DFN filter's.
Columns in the samples view: dbp_keep (NULL for samples DBP was not given); the `clusters` view gains each
cluster's input size, d_intra, d_inter, complexity, probability and quota.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa

from curate.concepts.clustering import ensure_clusters, reset_stage
from curate.concepts.data import selected_rows, write_clusters_table, write_scores
from curate.concepts.dbp import DEFAULT_NEIGHBORS, DEFAULT_TAU, complexity, keep_in_clusters, quotas
from curate.concepts.kmeans import DEFAULT_KMEANS, KMeansConfig
from curate.concepts.semdedup import MEMBER_ORDERS
from curate.errors import UsageError
from curate.rundir import RunDir
from curate.stages.common import record_stage

STAGE = "dbp"


def default_input(run: RunDir) -> str | None:
    """Returns the predicate DBP prunes by default: the SemDeDup survivors if SemDeDup ran, else everything."""
    return "semdedup_keep" if "semdedup" in run.manifest()["stages"] else None


def apply_dbp(run: RunDir, keep_fraction: float, where: str | None = None, tau: float = DEFAULT_TAU,
              neighbors: int = DEFAULT_NEIGHBORS, keep: str = "hard", seed: int = 0,
              kmeans: KMeansConfig = DEFAULT_KMEANS, kind: str = "image", progress: bool = True) -> dict:
    """Writes scores/dbp/ (the input samples' dbp_keep) and concepts/dbp.parquet; returns counts.

    `where` selects DBP's input (None: default_input). Raises UsageError for a fraction outside (0, 1] or one
    that the input cannot satisfy.
    """
    from curate.catalogs import build_catalog

    if not 0 < keep_fraction <= 1:
        raise UsageError(f"--keep-fraction must be in (0, 1], got {keep_fraction}")
    if keep not in MEMBER_ORDERS:
        raise UsageError(f"unknown --keep {keep!r}; choose one of {', '.join(MEMBER_ORDERS)}")
    where = where if where is not None else default_input(run)
    embeddings, clustering = ensure_clusters(run, kmeans, kind, progress)
    rows = selected_rows(run, embeddings, where)
    target = int(len(embeddings) * keep_fraction)
    stats = complexity(clustering.centroids, clustering.assignment[rows], clustering.distance[rows], neighbors, tau)
    quota = quotas(stats.probability, stats.size, target)
    kept = np.zeros(len(embeddings), dtype=bool)
    kept[np.flatnonzero(rows)] = keep_in_clusters(clustering.assignment[rows], clustering.distance[rows], quota,
                                                  keep, seed)
    reset_stage(run, STAGE)
    write_scores(run, STAGE, embeddings, {"dbp_keep": pa.array(kept)}, rows=rows)
    write_clusters_table(run, STAGE, pa.table({
        "cluster_id": pa.array(np.arange(len(quota), dtype=np.int32)), "dbp_input": pa.array(stats.size),
        "d_intra": pa.array(stats.d_intra), "d_inter": pa.array(stats.d_inter),
        "complexity": pa.array(stats.complexity), "probability": pa.array(stats.probability),
        "quota": pa.array(quota),
    }))
    build_catalog(run)
    counts = dict(input=int(rows.sum()), kept=int(kept.sum()), dropped=int(rows.sum() - kept.sum()),
                  pool=len(embeddings), clusters=len(quota))
    config = dict(keep_fraction=keep_fraction, where=where, tau=tau, neighbors=neighbors, keep=keep, seed=seed)
    record_stage(run, STAGE, config, counts=counts)
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares DBP's options."""
    from curate.filters.semdedup import add_kmeans_arguments

    parser.add_argument("--keep-fraction", type=float, required=True,
                        help="keep int(N * this) samples, N = every embedded sample of the run")
    parser.add_argument("--where", help="SQL predicate choosing DBP's input (default: semdedup_keep if SemDeDup ran)")
    parser.add_argument("--tau", type=float, default=DEFAULT_TAU, help=f"softmax temperature (default {DEFAULT_TAU})")
    parser.add_argument("--neighbors", type=int, default=DEFAULT_NEIGHBORS,
                        help=f"nearest centroids in d_inter (default {DEFAULT_NEIGHBORS})")
    parser.add_argument("--keep", choices=tuple(MEMBER_ORDERS), default="hard",
                        help="which members a cluster keeps: hard (farthest from the centroid), easy, random")
    parser.add_argument("--seed", type=int, default=0, help="seed of keep=random (default 0)")
    add_kmeans_arguments(parser)


def run(run_dir: RunDir, args: argparse.Namespace) -> dict:
    """Runs DBP on the run's embeddings; returns counts."""
    from curate.filters.semdedup import kmeans_config

    return apply_dbp(run_dir, args.keep_fraction, args.where, args.tau, args.neighbors, args.keep, args.seed,
                     kmeans_config(args), args.embedding)
