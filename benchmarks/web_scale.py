"""Whole-pool stages past one machine's memory: SemDeDup, DBP, DQ, neardup (and DFN with --text) through `curate
filter` on a run of N x d float16 embeddings, with the peak memory of every curate process together and of the
driver.

    python benchmarks/web_scale.py --samples 10000000 --clusters 3000          # the memory bound at 10M
    python benchmarks/web_scale.py --samples 1000000 --clusters 1000 --compare --text   # decisions vs in memory

The run is written as an ingest of a DataComp pool leaves it (samples/ and float16 embeddings/ files, one per
shard of --shard-size, their markers and the manifest of a real `curate ingest` of the first shard), so the
commands measured are the product's own. The embeddings are a Gaussian mixture of --components concepts of about
equal size with 5% planted near copies. Memory is the proportional set size (PSS) of the command's process and all
its descendants (workers, Ray's processes and object store) summed, sampled every 0.5 s; the driver's alone beside
it. With --compare each decision is also computed the pre-partition way, in memory (the whole pool's vectors in one
matrix, the algorithm as it ran before), in its own process, and the keep flags compared; neardup's groups (at
cosine 0.9 on the image embeddings) are checked against the exact pairs of 20,000 seeded rows. Writes
benchmarks/results/web_scale_<N>.json.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import RESULTS, machine, write_results

DUP_SHARE = 0.05
NEARDUP_THRESHOLD = 0.9  # the planted near copies are at ~0.999; other pairs of the mixture below 0.6
RECALL_QUERIES = 20_000  # rows whose exact pairs the oracle finds, to estimate neardup's recall


def _descendants(root: int) -> list[int]:
    """Returns root and every process below it (from each thread's /proc children list: no scan of /proc)."""
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for thread in threads:
            with contextlib.suppress(OSError):
                stack.extend(int(c) for c in Path(f"/proc/{pid}/task/{thread}/children").read_text().split())
    return found


def _pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measured(argv: list[str], kill_after: float | None = None) -> dict:
    """Runs `python ARGV` and returns its wall seconds, last stdout line, and the peak PSS in MiB of its whole
    process tree and of itself. With kill_after, SIGKILLs the whole process tree after that many seconds (a lost
    machine: nothing gets to clean up) and returns the same figures for the killed run."""
    process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    killer = threading.Timer(kill_after or 0, os.killpg, (process.pid, signal.SIGKILL))
    if kill_after:
        killer.start()
    peaks = {"tree": 0.0, "driver": 0.0}

    def sample():
        while process.poll() is None:
            tree = sum(_pss_mib(pid) for pid in _descendants(process.pid))
            peaks["tree"], peaks["driver"] = max(peaks["tree"], tree), max(peaks["driver"], _pss_mib(process.pid))
            time.sleep(0.5)

    start = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    killer.cancel()
    if kill_after and process.returncode == -signal.SIGKILL:
        return dict(killed_after=round(seconds, 1), peak_tree_mib=round(peaks["tree"]),
                    peak_driver_mib=round(peaks["driver"]))
    if process.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {err.strip().splitlines()[-1:]}")
    return dict(seconds=round(seconds, 1), peak_tree_mib=round(peaks["tree"]), peak_driver_mib=round(peaks["driver"]),
                output=(out.strip().splitlines() or [""])[-1])


def mixture_shard(index: int, rows: int, centers: np.ndarray, seed: int) -> np.ndarray:
    """Returns one shard's rows: unit vectors around uniformly chosen centres, 5% near copies of other rows."""
    rng = np.random.default_rng([seed, index])
    x = centers[rng.integers(0, len(centers), rows)] + rng.standard_normal((rows, centers.shape[1]), np.float32)
    copies = rng.choice(rows, int(rows * DUP_SHARE), replace=False)
    x[copies] = x[rng.integers(0, rows, len(copies))] + 1e-3 * rng.standard_normal((len(copies), x.shape[1]),
                                                                                 np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_run(folder: Path, samples: int, dim: int, shard_size: int, components: int, text: bool, seed: int = 0):
    """Returns the RunDir of a DataComp-style ingested run of `samples` float16 embeddings in `folder`/run."""
    from curate.catalogs import build_catalog
    from curate.rundir import RunDir, parquet_bytes
    from curate.stages.ingest import ingest

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tests.shards import datacomp_shard

    folder.mkdir(parents=True, exist_ok=True)
    centers = np.random.default_rng(seed).standard_normal((components, dim), np.float32) * 1.2
    shards = (samples + shard_size - 1) // shard_size
    datacomp_shard(folder, mixture_shard(0, min(samples, shard_size), centers, seed), name="0000", seed=seed)
    run = RunDir(folder / "run")
    ingest([str(folder / "0000.parquet")], run, progress=False)
    template = pq.read_table(run.path / "samples" / "0000.parquet").slice(0, 0)
    vector_type = pa.list_(pa.float16(), dim)
    for index in range(shards):
        shard_id, rows = f"{index:06d}", min(shard_size, samples - index * shard_size)
        x = mixture_shard(index, rows, centers, seed)
        uids = pa.array([f"{index:08x}{i:024x}" for i in range(rows)])
        columns = {c: pa.nulls(rows, template.schema.field(c).type) for c in template.column_names}
        columns |= dict(uid=uids, shard=pa.array([shard_id] * rows), key=uids)
        run.write_bytes(f"samples/{shard_id}.parquet", parquet_bytes(pa.table(columns, schema=template.schema)))
        flat = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1).astype(np.float16)), dim)
        other = pa.FixedSizeListArray.from_arrays(pa.array(np.roll(x, 1, axis=1).reshape(-1).astype(np.float16)),
                                                  dim) if text else pa.nulls(rows, vector_type)
        run.write_bytes(f"embeddings/{shard_id}.parquet", parquet_bytes(pa.table(
            {"uid": uids, "image_embedding": flat, "text_embedding": other})))
        run.write_json(run.marker("ingest", shard_id), dict(shard_id=shard_id, accepted=rows, read=rows, quarantined=0,
                                                            shard_errors=0, kind="parquet", shard=shard_id))
    for stale in ("0000",):
        for sub in ("samples", "embeddings", "quarantine", "scores/datacomp"):
            (run.path / sub / f"{stale}.parquet").unlink(missing_ok=True)
        (run.path / run.marker("ingest", stale)).unlink(missing_ok=True)
    stages = run.manifest()["stages"]
    stages["ingest"]["counts"] |= dict(read=samples, kept=samples)
    stages["ingest"]["score_folders"] = []
    run.update_manifest(stages=stages)
    build_catalog(run)
    return run


def commands(run: Path, clusters: int, points: int, workers: int, text: bool) -> dict[str, list[str]]:
    """Returns the measured `curate filter` command lines, by method (k-means first, on its own)."""
    common = ["--clusters", str(clusters), "--max-points-per-centroid", str(points), "--runner", "local",
              "--workers", str(workers)]
    filters = {"semdedup": ["--eps", "0.01", *common],
               "dbp": ["--keep-fraction", "0.5", "--fraction-of", "pool", *common],
               "dq": ["--keep-fraction", "0.3", "--bins", "10", *common],
               "neardup": ["--descriptor", "image", "--threshold", str(NEARDUP_THRESHOLD), "--score-norm", "none",
                           "--runner", "local", "--workers", str(workers)]}
    if text:
        filters["dfn"] = ["--keep-fraction", "0.3", "--runner", "local", "--workers", str(workers)]
    kmeans = ("from curate.concepts.kmeans import KMeansConfig; from curate.concepts.partition import "
              "ensure_partition; from curate.rundir import RunDir; from curate.runners import make_runner; "
              f"ensure_partition(RunDir({str(run)!r}), KMeansConfig({clusters}, max_points_per_centroid={points}), "
              f"'image', make_runner('local', {workers}))")
    return {"kmeans": ["-c", kmeans]} | {
        name: ["-m", "curate.cli.main", "filter", name, str(run), *args] for name, args in filters.items()}


def in_memory_decisions(run_path: str, out: str) -> None:
    """Writes the keep flags the pre-partition algorithms give on the run's current k-means and DBP's input
    (SemDeDup eps 0.01, DBP 0.5 on its survivors, DQ 0.3 in 10 bins, DFN 0.3 when the run has text), keyed by
    uid, to `out` (run in its own process, to measure its memory)."""
    from curate.concepts.members import cluster_members
    from curate.concepts.quantization import graphcut_bins, group_bin_count, keep_counts, sample_bins
    from curate.concepts.quotas import complexity, keep_in_clusters, quotas
    from curate.concepts.similarity import cluster_similarities, gather_scores
    from curate.rundir import RunDir
    from curate.stages.embeddings import load_embeddings

    run = RunDir(run_path)
    embeddings = load_embeddings(run, progress=False)
    uids = embeddings.uids
    table = pa.concat_tables([pq.read_table(p) for p in sorted((run.path / "scores/kmeans").glob("*.parquet"))])
    row = pa.compute.index_in(uids, value_set=table["uid"].combine_chunks()).to_numpy()
    assignment, distance = table["cluster_id"].to_numpy()[row], table["dist_to_centroid"].to_numpy()[row]
    centroids_table = pq.read_table(run.path / "concepts/kmeans_centroids.parquet")["centroid"].combine_chunks()
    centroids = centroids_table.flatten().to_numpy().reshape(len(centroids_table), -1)
    members = cluster_members(assignment, distance, "hard", 0)
    semdedup = gather_scores(len(uids), members, cluster_similarities(embeddings.vectors, members)).keep(0.01)
    stats = complexity(centroids, assignment[semdedup], distance[semdedup])
    dbp = np.zeros(len(uids), bool)
    dbp[np.flatnonzero(semdedup)] = keep_in_clusters(
        assignment[semdedup], distance[semdedup], quotas(stats.probability, stats.size, int(len(uids) * 0.5)),
        "hard", 0)
    bins = []
    for cluster in np.unique(assignment):
        rows = np.flatnonzero(assignment == cluster)
        bins += [rows[b] for b in graphcut_bins(embeddings.vectors[rows], group_bin_count(len(rows), 10, 0.3))]
    dq = np.zeros(len(uids), bool)
    counts = keep_counts(np.array([len(b) for b in bins]), int(len(uids) * 0.3), allow_empty=True)
    dq[sample_bins(bins, counts, 0)] = True
    columns = dict(uid=uids, semdedup_keep=semdedup, dbp_keep=dbp, dq_keep=dq)
    if pq.read_table(run.path / "embeddings" / "000000.parquet", columns=["text_embedding"])[0].null_count == 0:
        from curate.filters.dfn import DFNFilter

        scores = np.concatenate([DFNFilter(threshold=0).file_scores(str(p))[1]
                                 for p in sorted((run.path / "embeddings").glob("*.parquet"))])
        cut = -np.sort(-scores)[int(len(scores) * 0.3) - 1]  # the int(N x F)-th best, as the product's rule
        columns["dfn_keep"] = scores >= cut
    pq.write_table(pa.table(columns), out)
    exact_pairs(embeddings, out + ".pairs.parquet")


def exact_pairs(embeddings, out: str) -> None:
    """Writes the exact pairs (uid, other uid, similarity) at NEARDUP_THRESHOLD or above of a seeded sample of
    RECALL_QUERIES rows against the whole pool."""
    x, uids = embeddings.vectors, embeddings.uids
    queries = np.sort(np.random.default_rng(1).choice(len(x), min(len(x), RECALL_QUERIES), replace=False))
    found = []
    for start in range(0, len(queries), 256):
        rows = queries[start:start + 256]
        r, c = np.nonzero(x[rows] @ x.T >= np.float32(NEARDUP_THRESHOLD - 1e-6))
        other = rows[r] != c
        found.append((rows[r][other], c[other]))
    a, b = (np.concatenate(p) for p in zip(*found, strict=True))
    pq.write_table(pa.table({"uid": uids.take(pa.array(a)), "other": uids.take(pa.array(b)),
                             "queries": pa.array(np.full(len(a), len(queries)))}), out)


def neardup_recall(run, pairs_path: Path) -> dict:
    """Returns how many of the oracle's exact pairs the run's neardup stage linked (both in one group)."""
    from curate.catalogs import connect

    con = connect(run)
    con.register("exact_pairs", pq.read_table(pairs_path))
    linked, total = con.execute(
        "SELECT count(*) FILTER (a.neardup_group = b.neardup_group), count(*) FROM exact_pairs AS p "
        "JOIN samples AS a ON a.uid = p.uid JOIN samples AS b ON b.uid = p.other").fetchone()
    return dict(queries=RECALL_QUERIES, exact_pairs=total, linked=linked, recall=round(linked / max(total, 1), 5),
                threshold=NEARDUP_THRESHOLD)


def compare(run, work: Path) -> dict:
    """Returns, per method, how many keep flags differ between the command and the in-memory algorithm, and the
    in-memory run's time and memory."""
    from curate.catalogs import connect
    from curate.graph import entries

    out = work / "in_memory.parquet"
    figures = measured([__file__, "--oracle", str(run.path), str(out)])
    expected = pq.read_table(out).to_pandas().set_index("uid")
    con = connect(run)
    expected = expected[[c for c in expected.columns if c in con.execute("SELECT * FROM samples LIMIT 0").df()]]
    got = con.execute(f"SELECT {', '.join(['uid', *expected.columns])} FROM samples").df().set_index("uid")
    got = got.loc[expected.index]
    result = dict(in_memory=figures, differing={c: int((got[c].fillna(False).astype(bool) != expected[c]).sum())
                                                for c in expected.columns})
    if "neardup" in entries(run):
        result["neardup"] = neardup_recall(run, Path(str(out) + ".pairs.parquet"))
    return result


def main() -> None:
    """Builds the run, measures each command, optionally compares; prints and writes the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--components", type=int, default=3000)
    parser.add_argument("--clusters", type=int, default=3000)
    parser.add_argument("--points-per-centroid", type=int, default=64, help="k-means's training sample per cluster")
    parser.add_argument("--methods", default="semdedup,dbp,dq,dfn,neardup",
                        help="which commands to measure after k-means")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate_web_scale"))
    parser.add_argument("--compare", action="store_true", help="also compute the decisions in memory and compare")
    parser.add_argument("--text", action="store_true", help="write text embeddings too, and measure DFN")
    parser.add_argument("--reuse", action="store_true", help="measure on the run --work already holds (built before)")
    parser.add_argument("--kill", metavar="COMMAND=SECONDS",
                        help="SIGKILL that command's process tree after SECONDS, then rerun it to resume")
    parser.add_argument("--oracle", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.oracle:
        return in_memory_decisions(*args.oracle)
    start = time.perf_counter()
    if args.reuse:
        from curate.rundir import RunDir

        run = RunDir(args.work / "run")
    else:
        shutil.rmtree(args.work, ignore_errors=True)
        args.work.mkdir(parents=True)
        run = build_run(args.work, args.samples, args.dim, args.shard_size, args.components, args.text)
    previous = RESULTS / f"web_scale_{args.samples}.json"
    results = dict(machine=machine(), samples=args.samples, dim=args.dim, dtype="float16", clusters=args.clusters,
                   points_per_centroid=args.points_per_centroid, workers=args.workers,
                   build_seconds=round(time.perf_counter() - start, 1), commands={})
    if args.reuse and previous.exists():  # keep what the run's earlier measurements found
        results = json.loads(previous.read_text()) | {"machine": results["machine"]}
    chosen = {*args.methods.split(","), *({"kmeans"} - set(results["commands"]))}  # k-means once per run
    for name, argv in commands(run.path, args.clusters, args.points_per_centroid, args.workers, args.text).items():
        if name not in chosen:
            continue
        command = "k-means and the partition (what the first ClusterMethod runs)" if name == "kmeans" else \
            "curate " + " ".join(argv[2:])
        killed = measured(argv, kill_after=float(args.kill.split("=")[1])) \
            if args.kill and args.kill.split("=")[0] == name else None
        results["commands"][name] = measured(argv) | dict(command=command) | (dict(killed=killed) if killed else {})
        print(name, json.dumps(results["commands"][name]), flush=True)
        write_results(f"web_scale_{args.samples}", results)  # what is measured so far survives a stop
    results["disk_mib"] = {sub: round(sum(p.stat().st_size for p in (run.path / sub).rglob("*") if p.is_file())
                                      / 2**20) for sub in ("embeddings", "partitions", "scores")}
    if args.compare:
        results["compare"] = compare(run, args.work)
    print(json.dumps({k: v for k, v in results.items() if k != "commands"}, indent=1))
    write_results(f"web_scale_{args.samples}", results)


if __name__ == "__main__":
    main()
