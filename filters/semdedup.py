"""SemDeDup (Abbas et al. 2023): drop semantic duplicates within concept clusters of the run's embeddings.

Columns in the samples view: cluster_id and dist_to_centroid (the shared k-means), semdedup_max_sim (highest
cosine similarity to an earlier member of the cluster in SemDeDup's order; NULL for the first), semdedup_dup_of
(the uid of that member, for removed samples) and semdedup_keep. `--keep-fraction` finds the eps that keeps
that share of the embedded pool, exactly, from the similarities (no trial runs).
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa

from curate.concepts.clustering import ensure_clusters, reset_stage
from curate.concepts.data import write_clusters_table, write_scores
from curate.concepts.kmeans import DEFAULT_KMEANS, KMeansConfig
from curate.concepts.semdedup import (
    MEMBER_ORDERS,
    cluster_members,
    cluster_similarities,
    eps_for_fraction,
    gather_scores,
    task_groups,
)
from curate.errors import UsageError
from curate.rundir import RunDir
from curate.stages.common import record_stage

STAGE = "semdedup"


def duplicate_scores(run: RunDir, kmeans: KMeansConfig, keep: str, seed: int, kind: str, runner: str,
                     progress: bool, **runner_options):
    """Returns (embeddings, clustering, DuplicateScores), the per-cluster work spread over the runner's tasks."""
    from curate.runners.base import map_tasks

    embeddings, clustering = ensure_clusters(run, kmeans, kind, progress)
    members = cluster_members(clustering.assignment, clustering.distance, keep, seed)
    groups = task_groups(members, 64)
    results = map_tasks(cluster_similarities, embeddings.vectors, groups, runner, progress, desc="semdedup",
                        **runner_options)
    flat_members = [rows for group in groups for rows in group]
    flat_results = [result for group in results for result in group]
    return embeddings, clustering, gather_scores(len(embeddings), flat_members, flat_results)


def apply_semdedup(run: RunDir, eps: float | None = None, keep_fraction: float | None = None, keep: str = "hard",
                   seed: int = 0, kmeans: KMeansConfig = DEFAULT_KMEANS, kind: str = "image", runner: str = "local",
                   progress: bool = True, **runner_options) -> dict:
    """Writes scores/semdedup/ for every embedded sample and rebuilds the catalog; returns eps and counts.

    Give exactly one of eps (remove j iff max similarity to an earlier member > 1 - eps) or keep_fraction.
    """
    from curate.catalogs import build_catalog

    if (eps is None) == (keep_fraction is None):
        raise UsageError("give exactly one of --eps or --keep-fraction")
    if eps is not None and not 0 <= eps <= 2:
        raise UsageError(f"--eps must be in [0, 2] (1 - cosine similarity), got {eps}")
    if keep not in MEMBER_ORDERS:
        raise UsageError(f"unknown --keep {keep!r}; choose one of {', '.join(MEMBER_ORDERS)}")
    embeddings, clustering, scores = duplicate_scores(run, kmeans, keep, seed, kind, runner, progress,
                                                      **runner_options)
    config = dict(eps=eps if keep_fraction is None else None, keep_fraction=keep_fraction, keep=keep, seed=seed)
    previous = run.manifest()["stages"].get(STAGE)
    for stage in (STAGE, "dbp") if previous is not None and previous["config"] != config else (STAGE,):
        reset_stage(run, stage)  # DBP's input was chosen with the old decisions
    eps = eps if eps is not None else eps_for_fraction(scores.max_similarity, keep_fraction)
    kept = scores.keep(eps)
    dup_rows = np.where(kept, -1, scores.earlier_row)
    dup_of = embeddings.uids.take(pa.array(np.maximum(dup_rows, 0))).to_numpy(zero_copy_only=False)
    write_scores(run, STAGE, embeddings, {
        "semdedup_max_sim": pa.array(scores.max_similarity, mask=np.isnan(scores.max_similarity)),
        "semdedup_dup_of": pa.array(dup_of, pa.string(), mask=dup_rows < 0),
        "semdedup_keep": pa.array(kept),
    })
    k = len(clustering.centroids)
    per_cluster = np.bincount(clustering.assignment, weights=kept, minlength=k).astype(np.int64)
    write_clusters_table(run, STAGE, pa.table({"cluster_id": pa.array(np.arange(k, dtype=np.int32)),
                                               "semdedup_kept": pa.array(per_cluster)}))
    build_catalog(run)
    counts = dict(scored=len(kept), kept=int(kept.sum()), dropped=int((~kept).sum()), eps=eps, clusters=k)
    record_stage(run, STAGE, config, counts=counts)
    return counts


def add_kmeans_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the k-means options SemDeDup and DBP share."""
    from curate.cli.options import positive_int

    parser.add_argument("--clusters", type=positive_int, help="k (default: round(sqrt(N)))")
    parser.add_argument("--niter", type=positive_int, default=20, help="k-means iterations (default 20)")
    parser.add_argument("--max-points-per-centroid", type=positive_int, default=256,
                        help="k-means trains on at most k times this many points (default 256)")
    parser.add_argument("--kmeans-seed", type=int, default=0, help="k-means seed (default 0)")
    parser.add_argument("--embedding", choices=("image", "text"), default="image", help="which embedding to cluster")


def kmeans_config(args: argparse.Namespace) -> KMeansConfig:
    """Returns the KMeansConfig the arguments name."""
    return KMeansConfig(args.clusters, args.niter, args.max_points_per_centroid, args.kmeans_seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares SemDeDup's options."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--eps", type=float, help="remove a sample whose similarity to an earlier one is > 1 - eps")
    group.add_argument("--keep-fraction", type=float, help="find the eps that keeps this share of the pool")
    parser.add_argument("--keep", choices=tuple(MEMBER_ORDERS), default="hard",
                        help="which member of a duplicate group stays: hard (farthest from the centroid), easy, random")
    parser.add_argument("--seed", type=int, default=0, help="seed of keep=random (default 0)")
    add_kmeans_arguments(parser)


def run(run_dir: RunDir, args: argparse.Namespace) -> dict:
    """Runs SemDeDup on the run's embeddings; returns eps and counts."""
    from curate.cli.options import runner_options

    return apply_semdedup(run_dir, args.eps, args.keep_fraction, args.keep, args.seed, kmeans_config(args),
                          args.embedding, args.runner, **runner_options(args))
