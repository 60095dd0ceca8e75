"""The partitioned SemDeDup, DBP and DQ against the in-memory oracle (the whole pool's vectors in one matrix, the
algorithm as it ran before the partition), with many buckets; resuming a partition; the budget and broken files."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.catalogs import connect
from curate.concepts.kmeans import Clustering
from curate.concepts.members import cluster_members
from curate.concepts.partition import BUCKET_BYTES_VARIABLE, PARTITION, read_partition
from curate.concepts.quantization import graphcut_bins, group_bin_count, keep_counts, sample_bins
from curate.concepts.quotas import complexity, keep_in_clusters, quotas
from curate.concepts.similarity import cluster_similarities, gather_scores
from curate.errors import UsageError
from curate.filters.dbp import DBP
from curate.filters.dq import DQ
from curate.filters.semdedup import SemDeDup
from curate.rundir import RunDir
from curate.stages.embeddings import load_embeddings
from curate.stages.ingest import ingest
from tests.shards import datacomp_shard

KMEANS = dict(clusters=12, kmeans_seed=0, max_points_per_centroid=20)  # a sample of 240 of the 600 points


@pytest.fixture
def run(tmp_path, monkeypatch):
    """600 samples in 5 DataComp shards (float16 vectors), 12 concepts, with near copies; buckets of ~1 cluster."""
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(12, 24))
    x = centers[rng.integers(0, 12, 600)] + 0.35 * rng.normal(size=(600, 24))
    x[500:] = x[rng.integers(0, 500, 100)] + 0.02 * rng.normal(size=(100, 24))
    for i in range(5):
        datacomp_shard(tmp_path, x[i * 120:(i + 1) * 120], name=f"{i:04d}", seed=i)
    run = RunDir(tmp_path / "run")
    ingest([str(tmp_path / "*.parquet")], run, progress=False)
    monkeypatch.setenv(BUCKET_BYTES_VARIABLE, "20000")
    return run


def catalog(run: RunDir, columns: str) -> dict:
    rows = connect(run).execute(f"SELECT uid, {columns} FROM samples").fetchall()
    return {r[0]: r[1:] for r in rows}


def read_clustering(run: RunDir, embeddings) -> Clustering:
    """Returns the run's k-means as a Clustering in the rows of `embeddings`."""
    table = pa.concat_tables([pq.read_table(p) for p in sorted((run.path / "scores" / "kmeans").glob("*.parquet"))])
    row = pc.index_in(embeddings.uids, value_set=table["uid"].combine_chunks()).to_numpy()
    partition = read_partition(run)
    return Clustering(partition.centroids, table["cluster_id"].to_numpy()[row],
                      table["dist_to_centroid"].to_numpy()[row], partition.seed)


def oracle(run: RunDir, eps: float | None, fraction: float | None) -> tuple:
    """Returns (uids, max similarity, dup_of uid or None, kept, eps) as the in-memory SemDeDup computes them."""
    embeddings = load_embeddings(run)
    clustering = read_clustering(run, embeddings)
    members = cluster_members(clustering.assignment, clustering.distance, "hard", 0)
    scores = gather_scores(len(embeddings), members, cluster_similarities(embeddings.vectors, members))
    if eps is None:
        scored = np.sort(scores.max_similarity[~np.isnan(scores.max_similarity)])
        firsts = len(embeddings) - len(scored)
        eps = 1.0 - float(scored[int(len(embeddings) * fraction) - firsts - 1])
    kept = scores.keep(eps)
    uids = embeddings.uids.to_pylist()
    dup = [None if k else uids[r] for k, r in zip(kept, scores.earlier_row, strict=True)]
    return uids, scores.max_similarity, dup, kept, eps, clustering


def test_semdedup_and_dbp_on_the_partition_decide_as_the_in_memory_oracle(run):
    options = dict(keep_fraction=0.8)  # the eps from an exact rank over the buckets' files, then the same rule as --eps
    counts = SemDeDup(**options, **KMEANS).apply(run, progress=False)
    partition = read_partition(run)
    assert len(partition.bounds) - 1 >= 4  # many buckets, each written once, the parts gone
    assert sorted(p.name for p in (run.path / PARTITION).iterdir()) == [p.name for p in partition.bucket_files(run)]
    uids, similarity, dup, kept, eps, clustering = oracle(run, options.get("eps"), options.get("keep_fraction"))
    assert counts["eps"] == pytest.approx(eps) and counts["kept"] == kept.sum() < 600
    got = catalog(run, "semdedup_keep, semdedup_dup_of, semdedup_max_sim")
    assert [got[u][0] for u in uids] == kept.tolist()
    assert [got[u][1] for u in uids] == dup
    assert np.array_equal([np.nan if got[u][2] is None else got[u][2] for u in uids], similarity, equal_nan=True)

    DBP(keep_fraction=0.5, fraction_of="pool", **KMEANS).apply(run, "local", progress=False)
    stats = complexity(clustering.centroids, clustering.assignment[kept], clustering.distance[kept])
    quota = quotas(stats.probability, stats.size, 300)
    expected = keep_in_clusters(clustering.assignment[kept], clustering.distance[kept], quota, "hard", 0)
    dbp = catalog(run, "dbp_keep")
    assert [dbp[u][0] for u, k in zip(uids, kept, strict=True) if k] == expected.tolist()
    assert all(dbp[u][0] is None for u, k in zip(uids, kept, strict=True) if not k)


def test_an_interrupted_partition_resumes_to_the_same_result(run):
    SemDeDup(eps=0.002, **KMEANS).apply(run, progress=False)
    before = catalog(run, "cluster_id, semdedup_keep, semdedup_dup_of")
    # What a kill during the partition leaves: the stage recorded running, some files assigned, one bucket written.
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["stages"]["kmeans"]["status"] = "running"
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    buckets = read_partition(run).bucket_files(run)
    for path in buckets[1:]:
        path.unlink()
    for marker in sorted((run.path / "_done" / "kmeans").glob("*.json"))[2:]:
        marker.unlink()
    (run.path / "concepts" / "kmeans.parquet").unlink()
    SemDeDup(eps=0.002, **KMEANS).apply(run, progress=False)
    assert catalog(run, "cluster_id, semdedup_keep, semdedup_dup_of") == before
    assert len(pq.read_table(buckets[0])) + sum(len(pq.read_table(p)) for p in buckets[1:]) == 600


def test_a_cluster_over_the_budget_and_broken_embedding_files_are_one_line_errors(run, monkeypatch):
    monkeypatch.setenv(BUCKET_BYTES_VARIABLE, "1000")
    with pytest.raises(UsageError, match=r"^cluster \d+ holds about .* pass a larger --clusters \(now 12\)"):
        SemDeDup(eps=0.01, **KMEANS).apply(run, progress=False)
    assert "kmeans" not in json.loads((run.path / "manifest.json").read_text())["stages"]
    monkeypatch.setenv(BUCKET_BYTES_VARIABLE, "20000")
    shard = sorted((run.path / "embeddings").glob("*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(UsageError, match=r"0001.parquet is unreadable .* rerun the ingest stage"):
        SemDeDup(eps=0.01, **KMEANS).apply(run, progress=False)


def test_dq_per_cluster_on_the_partition_bins_and_draws_as_the_in_memory_oracle(run):
    counts = DQ(keep_fraction=0.3, bins=4, **KMEANS).apply(run, "local", progress=False)
    embeddings = load_embeddings(run)
    clustering = read_clustering(run, embeddings)
    per_group = []
    for cluster in np.unique(clustering.assignment):
        rows = np.flatnonzero(clustering.assignment == cluster)
        count = group_bin_count(len(rows), 4, 0.3)
        per_group.append([rows[b] for b in graphcut_bins(embeddings.vectors[rows], count)])
    bins = [b for group in per_group for b in group]
    kept = sample_bins(bins, keep_counts(np.array([len(b) for b in bins]), int(600 * 0.3), allow_empty=True), 0)
    assert counts["kept"] == len(kept) == int(600 * 0.3) and counts["bins"] == len(bins)
    expected = {}
    for group in per_group:
        for k, members in enumerate(group):
            for rank, row in enumerate(members):
                expected[embeddings.uids[row].as_py()] = (k, rank, bool(np.isin(row, kept)))
    assert catalog(run, "dq_bin, dq_rank, dq_keep") == expected


def tmpfs_works() -> bool:
    """Returns whether this machine lets a test mount a tmpfs in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


CHECK_FILES = """
import sys, pathlib, pyarrow.parquet as pq
run = pathlib.Path(sys.argv[1])
for path in run.rglob("*.parquet"):
    pq.read_metadata(path)  # every file under its final name is whole
print("whole", len(list(run.rglob("*.parquet"))))
"""


@pytest.mark.skipif(not tmpfs_works(), reason="needs unshare and mount (root in a mount namespace)")
def test_a_full_disk_while_partitioning_is_one_line_and_resumes_with_room(run, tmp_path):
    expected = tmp_path / "expected"
    shutil.copytree(run.path, expected)
    SemDeDup(eps=0.002, **KMEANS).apply(RunDir(expected), progress=False)
    used = sum(p.stat().st_size for p in run.path.rglob("*") if p.is_file())
    command = [sys.executable, "-m", "curate.cli.main", "filter", "semdedup", "/mnt/run", "--eps", "0.002",
               *(f"--{k.replace('_', '-')}={v}" for k, v in KMEANS.items())]
    script = (f'mount -t tmpfs -o size={used + 400_000} tmpfs /mnt && cp -a "$1" /mnt/run && shift && '
              f'"$@"; echo "rc=$?"; {sys.executable} -c "$CHECK" /mnt/run && '
              f'mount -o remount,size=64m /mnt && "$@" >/dev/null 2>&1 && cp -a /mnt/run "$RESULT"')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(run.path), *command], capture_output=True,
                          text=True, env=os.environ | {"CHECK": CHECK_FILES, "RESULT": str(tmp_path / "after"),
                                                        "PYTHONPATH": os.getcwd(), BUCKET_BYTES_VARIABLE: "20000"})
    assert "rc=1" in done.stdout and "whole" in done.stdout, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("curate: error")]
    assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    resumed = RunDir(tmp_path / "after")
    assert catalog(resumed, "cluster_id, semdedup_keep, semdedup_dup_of") == catalog(
        RunDir(expected), "cluster_id, semdedup_keep, semdedup_dup_of")
