"""A cost model of the whole-pool stages at DataComp's sizes, fitted to benchmarks/web_scale.py's measured runs.

    python benchmarks/cost_model.py [--cores 16] [--bandwidth-gbs 1] [--ppc 32] [--rows-per-file 200000]

Reads results/web_scale_1000000_after.json (k-means, SemDeDup, DBP, DQ at 1M x 512, k 1,000), _packed.json (DFN,
disk per folder), web_scale_10000000.json and _lists.json (k-means at 10M, k 5,000), and projects wall time, bytes
moved, disk and memory for DataComp small, medium and large (12.8M, 128M, 1.28B) at 768-d (ViT-L/14, float16 as
DataComp ships it) and 512-d on 1, 4, 16 and 64 nodes. Writes results/cost_model.json with every assumption.

Work per stage (n samples, d dims, k clusters, clusters of c = n / k, m = k x ppc training rows, niter = 20):
    k-means training     (niter + 2) m k d multiply-adds, on the driver's node only (faiss on its cores)
    assignment+partition n k d multiply-adds + n d elements decoded, written as parts, regrouped into buckets
    SemDeDup             n c d / 2 multiply-adds (each member against the earlier ones) + n d elements read
    DQ                   0.55 n c d multiply-adds at 10 bins (each GraphCut pick a matrix-vector product over the
                         cluster's unbinned rows) + n d elements read; its catalog query and routing as DBP's
    DBP                  n (catalog aggregate and routing of uids on the driver, then a keep task per bucket)
    DFN                  n d elements (image and text vectors of every file, a dot product), 2 rank passes
The k-means multiply-add rate and its per-element rate are solved from the 1M and 10M runs (two sizes, two
unknowns); SemDeDup's and DQ's per-element share is what their 1M time leaves after their multiply-adds at that
rate (low), or none of it (high: all their time grows with c).

Assumptions:
- per-core speed is this 2-core AMD EPYC VM's; a measured stage's core-seconds are its wall seconds x 2 (both cores
  busy: 2 worker tasks, or faiss training with 2 threads on the driver)
- tasks are independent and spread evenly: a map of T tasks on S cores takes ceil(T / S) rounds of its mean task;
  one task per core (Ray num_cpus=1, or --workers = cores); no Ray scheduling or object-store overhead
- the driver is one process on the head node: k-means training there uses that node's cores only, and DBP's catalog
  aggregate and routing (taken as all of DBP's measured time, and as DQ's serial part) run there, serially
- the run folder is on shared storage every node mounts at the same path, with --bandwidth-gbs (1 GB/s) for all
  nodes together; a stage takes at least its bytes read + written / that bandwidth (the measured runs read a local disk,
  so their time holds the CPU cost of Parquet, not a network's)
- clusters of equal size n / k (the synthetic runs' Gaussian mixture); web data is skewed, and the largest cluster
  sets a bucket's and a DQ task's peak
- bytes on disk per stored element as measured at 1M x 512 float16 (embeddings/, partitions/kmeans/)
- a task's memory grows linearly with its bucket (high) or not at all (low) from the 1M figure at 61 MiB buckets;
  k-means tasks as measured at 10M (200,000-row files, 205 MiB buckets), scaled by file or bucket bytes
- nodes of --cores cores (16), the driver's among them; embedding files of --rows-per-file rows (200,000, the 10M
  run's: DataComp's own file sizes not checked here)
- the driver's memory is the measured base plus what the code gathers before reducing: k-means' training sample
  twice (its blocks and their concatenation) and k counts and distance sums per embedding file; SemDeDup's k kept
  counts per bucket (with --keep-fraction also a 65,536-bin histogram per bucket); DFN's histogram per file; DQ's d
  float64 sum per bin: these grow with files or buckets x k, not as O(k x d)
- each measured time includes the command's start (imports, worker pool), counted as work that scales; DBP and DQ
  are projected over the whole pool, though after SemDeDup they would run on what it keeps

Not measured, so not in the figures:
- SemDeDup, DBP, DQ and DFN at 10M (only k-means was run at 10M): their growth with n and cluster size is the
  model's, not checked; the 1M times are noisy (the 1M runs differ by up to 1.9x per stage on a shared machine)
- DQ at clusters whose float64 rows leave the CPU cache (c x d x 8 bytes: 4 MB at 1M, 70 MB medium, 220 MB large):
  its matrix-vector products then run at memory bandwidth, so its projection is likely optimistic
- growth of the driver's DuckDB queries with n (DBP 381 MiB, DQ 447 MiB at 1M), Ray's per-task overhead at scale, a
  real filesystem's throughput, k-means on a GPU, and DFN's embedding pass (a model on every image); DFN's task
  memory was measured before tasks decoded files 32,768 rows at a time
"""

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np
from common import RESULTS, write_results

from curate.concepts.kmeans import DEFAULT_NITER
from curate.concepts.partition import DEFAULT_BUCKET_BYTES, MIN_BUCKET_BYTES, MIN_BUCKETS, bucket_bytes
from curate.concepts.similarity import BLOCK_ENTRIES

POOLS = {"small": 12_800_000, "medium": 128_000_000, "large": 1_280_000_000}
DIMS, NODES, BINS = (768, 512), (1, 4, 16, 64), 10
K_RULES = {"sqrt(N)": None, "50,000 (SemDeDup paper, LAION-440M)": 50_000, "100,000 (DataComp image-based)": 100_000}
MEASURED_FILE_ROWS = {1_000_000: 100_000, 10_000_000: 200_000}  # --shard-size of the runs (benchmarks/README.md)
GIB, MIB = 2**30, 2**20
ASSUMPTIONS, NOT_MEASURED = ([" ".join(line.strip() for line in item.splitlines()) for item in part.split("\n- ")[1:]]
                             for part in __doc__.split("\nAssumptions:")[1].split("\nNot measured"))


def load_runs(folder: Path) -> dict:
    """Returns the measured runs by name: after, packed (1M x 512), ten and ten_lists (10M x 512)."""
    names = dict(after="web_scale_1000000_after", packed="web_scale_1000000_packed", ten="web_scale_10000000",
                 ten_lists="web_scale_10000000_lists")
    return {key: json.loads((folder / f"{name}.json").read_text()) for key, name in names.items()}


def core_seconds(run: dict, stage: str) -> float:
    """Returns a measured stage's core-seconds: its wall seconds x the run's workers (cores)."""
    return run["commands"][stage]["seconds"] * run["workers"]


def kmeans_work(n: float, k: float, d: int, ppc: int) -> tuple[float, float, float]:
    """Returns (assignment multiply-adds, training multiply-adds, elements) of k-means and the partition."""
    train_rows = min(n, k * ppc)
    return n * k * d, (DEFAULT_NITER + 2) * train_rows * k * d, n * d


def fit_kmeans(small: dict, large: dict) -> dict:
    """Returns core-seconds per multiply-add (`mac`) and per stored element (`element`) solving the two runs'
    k-means times, with each run's share of multiply-adds."""
    rows, times = [], []
    for run in (small, large):
        assign, train, elements = kmeans_work(run["samples"], run["clusters"], run["dim"], run["points_per_centroid"])
        rows.append([assign + train, elements])
        times.append(core_seconds(run, "kmeans"))
    mac, element = np.linalg.solve(np.array(rows), np.array(times))
    shares = [round(mac * r[0] / t, 2) for r, t in zip(rows, times, strict=True)]
    return dict(mac=float(mac), element=float(element), mac_share_1m=shares[0], mac_share_10m=shares[1])


def pair_work(n: float, k: float, d: int) -> dict[str, float]:
    """Returns SemDeDup's and DQ's within-cluster multiply-adds for n samples in k equal clusters."""
    c = n / k
    return dict(semdedup=n * c * d / 2, dq=(BINS + 1) / (2 * BINS) * n * c * d)


def fit_within(run: dict, packed: dict, mac: float) -> dict:
    """Returns the 1M-fitted rates: per stage (SemDeDup, DQ) core-seconds per pair multiply-add, low and high, and
    per element (low); DBP's driver seconds per sample; DFN's core-seconds per element."""
    n, k, d = run["samples"], run["clusters"], run["dim"]
    dbp = run["commands"]["dbp"]["seconds"] / n
    rates = dict(dbp_seconds_per_sample=dbp, dfn_per_element=core_seconds(packed, "dfn") / (n * d))
    for stage, pairs in pair_work(n, k, d).items():
        total = core_seconds(run, stage) - (dbp * n * run["workers"] if stage == "dq" else 0)
        low_pair = mac if stage == "semdedup" else (total - rates["semdedup"]["element"] * n * d) / pairs
        rates[stage] = dict(pair_high=total / pairs, pair_low=low_pair, element=(total - low_pair * pairs) / (n * d))
    return rates


def linearity(runs: dict, fit: dict) -> dict:
    """Returns how k-means' core-seconds grew from 1M to 10M against what per-sample and per-(n k d) scaling and
    the fit predict, and how far the two 1M runs' stages differ (noise)."""
    one, out = runs["after"], {}
    for key in ("ten", "ten_lists"):
        ten = runs[key]
        assign, train, elements = kmeans_work(ten["samples"], ten["clusters"], ten["dim"], ten["points_per_centroid"])
        measured = core_seconds(ten, "kmeans")
        out[f"kmeans 1M -> 10M ({key})"] = dict(
            measured_ratio=round(measured / core_seconds(one, "kmeans"), 1), if_linear_in_n=10.0,
            if_linear_in_nkd=round(ten["samples"] * ten["clusters"] / (one["samples"] * one["clusters"]), 1),
            fit_over_measured=round((fit["mac"] * (assign + train) + fit["element"] * elements) / measured, 2))
    out["1M runs, packed over after (same sizes, shared machine)"] = {
        stage: round(runs["packed"]["commands"][stage]["seconds"] / one["commands"][stage]["seconds"], 2)
        for stage in one["commands"]}
    return out


def bucket_target(vector_bytes: int, budget: int) -> int:
    """Returns the bytes of vectors a bucket is filled to, as partition.bucket_bounds plans it."""
    return min(budget * 4 // 5, max(MIN_BUCKET_BYTES, vector_bytes // MIN_BUCKETS))


def pool_shape(n: int, d: int, k: int | None, rows_per_file: int) -> dict:
    """Returns a pool's k, cluster size, files, bucket bytes and buckets (as partition.bucket_bounds plans them)."""
    k = k or round(math.sqrt(n))
    vector_bytes = n * d * 2
    target = bucket_target(vector_bytes, bucket_bytes())
    return dict(samples=n, dim=d, k=k, cluster_size=round(n / k), files=math.ceil(n / rows_per_file),
                bucket_mib=round(target / MIB), buckets=math.ceil(vector_bytes / target),
                largest_cluster_allowed=bucket_bytes() // (d * 2))


def spread(core_s: float, tasks: int, slots: int) -> float:
    """Returns the wall seconds of `tasks` equal tasks totalling core_s on `slots` cores (whole rounds)."""
    return math.ceil(tasks / slots) * core_s / max(tasks, 1)


def stage_seconds(shape: dict, rates: dict, ppc: int, nodes: int, cores: int) -> dict:
    """Returns each stage's compute wall seconds as [low, high] on nodes x cores."""
    n, d, k, slots = shape["samples"], shape["dim"], shape["k"], nodes * cores
    assign, train, elements = kmeans_work(n, k, d, ppc)
    serial_dbp = rates["dbp_seconds_per_sample"] * n
    out = {"k-means training": [rates["mac"] * train / cores] * 2,
           "assignment + partition": [spread(rates["mac"] * assign + rates["element"] * elements, shape["files"],
                                             slots)] * 2,
           "DBP": [serial_dbp] * 2,
           "DFN": [spread(rates["dfn_per_element"] * elements, shape["files"], slots)] * 2}
    for stage, pairs in pair_work(n, k, d).items():
        fitted = rates[stage]
        low = spread(fitted["pair_low"] * pairs + fitted["element"] * elements, shape["buckets"], slots)
        high = spread(fitted["pair_high"] * pairs, shape["buckets"], slots)
        serial = serial_dbp if stage == "dq" else 0.0
        out["SemDeDup" if stage == "semdedup" else "DQ"] = [low + serial, high + serial]
    return out


def stage_bytes(shape: dict, disk: dict) -> dict:
    """Returns each stage's bytes read and written on the run's storage, and the disk it holds."""
    elements, n = shape["samples"] * shape["dim"], shape["samples"]
    emb, part, scores = disk["embeddings"] * elements, disk["partitions"] * elements, disk["scores"] * n
    stages = {"assignment + partition": dict(read=2 * emb + part, write=2 * part + scores),  # sample, assign, parts
              "SemDeDup": dict(read=part + scores, write=2 * scores), "DQ": dict(read=part, write=scores),
              "DBP": dict(read=3 * scores, write=2 * scores), "DFN": dict(read=2 * emb + 3 * scores, write=2 * scores)}
    return dict(stages=stages, disk=dict(embeddings_image=emb, embeddings_text=emb, partition=part,
                                         peak_while_partitioning=2 * emb + 2 * part))


def memory(shape: dict, runs: dict, ppc: int, cores: int) -> dict:
    """Returns bytes per task [low, high] by stage, per node (cores tasks), and the driver's by stage."""
    one, ten = runs["after"], runs["ten"]
    k, d, files, buckets = shape["k"], shape["dim"], shape["files"], shape["buckets"]
    bucket, file_bytes = shape["bucket_mib"] * MIB, shape["samples"] / files * d * 2
    measured_bucket = bucket_target(one["samples"] * one["dim"] * 2, DEFAULT_BUCKET_BYTES)

    def worker(run: dict, stage: str) -> float:
        """Returns one worker's measured peak bytes: all processes' peak less the driver's, over 2 workers."""
        return (run["commands"][stage]["peak_tree_mib"] - run["commands"][stage]["peak_driver_mib"]) * MIB / 2

    kmeans = worker(ten, "kmeans") * max(file_bytes, bucket) / (MEASURED_FILE_ROWS[ten["samples"]] * ten["dim"] * 2)
    dq_cluster = 2 * shape["cluster_size"] * d * 8  # a cluster's float64 rows and its unbinned copy
    blocks = [min(c * c, BLOCK_ENTRIES) * 4 for c in (shape["cluster_size"], one["samples"] / one["clusters"])]
    block = max(0.0, blocks[0] - blocks[1])
    semdedup = worker(one, "semdedup") + block  # similarity blocks grow to BLOCK_ENTRIES floats with the cluster
    task = {"assignment + partition": [kmeans] * 2,
            "SemDeDup": [semdedup, semdedup + worker(one, "semdedup") * (bucket / measured_bucket - 1)],
            "DQ": [worker(one, "dq") + dq_cluster, worker(one, "dq") * bucket / measured_bucket + dq_cluster],
            "DFN": [worker(runs["packed"], "dfn") * file_bytes / (MEASURED_FILE_ROWS[one["samples"]] * one["dim"] * 2)]
            * 2}
    sample = k * ppc * d * 4
    base = np.mean([r["commands"]["kmeans"]["peak_driver_mib"] * MIB - 2 * r["clusters"] * r["points_per_centroid"]
                    * r["dim"] * 4 for r in (one, ten)])
    driver = {"k-means": base + 2 * sample + files * k * 16,  # sample blocks and their concatenation; per-file sums
              "SemDeDup": base + buckets * k * 8,  # kept per cluster, from every bucket
              "SemDeDup --keep-fraction": base + buckets * k * 8 + buckets * 65536 * 8,  # and a histogram per bucket
              "DQ": one["commands"]["dq"]["peak_driver_mib"] * MIB + k * BINS * (d * 8 + 400),
              "DBP": one["commands"]["dbp"]["peak_driver_mib"] * MIB, "DFN": base + files * 65536 * 8}
    return dict(task=task, node={stage: [v * cores for v in lh] for stage, lh in task.items()}, driver=driver)


def project(shape: dict, runs: dict, rates: dict, disk: dict, args: argparse.Namespace, nodes: int) -> dict:
    """Returns one projection: the pool's shape, hours per stage [low, high] (compute, or the storage floor when
    longer), bytes, disk and memory in GiB."""
    compute = stage_seconds(shape, rates, args.ppc, nodes, args.cores)
    moved = stage_bytes(shape, disk)
    floor = {s: (b["read"] + b["write"]) / (args.bandwidth_gbs * 1e9) for s, b in moved["stages"].items()}
    hours = {s: [round(max(v, floor.get(s, 0)) / 3600, 2) for v in lh] for s, lh in compute.items()}
    mem = memory(shape, runs, args.ppc, args.cores)
    pipeline = ("k-means training", "assignment + partition", "SemDeDup", "DBP")  # pipelines/prune.py's order
    prune = [sum(hours[s][i] for s in pipeline) for i in (0, 1)]
    return dict(shape, nodes=nodes, cores_per_node=args.cores, hours=hours,
                storage_floor_hours={s: round(v / 3600, 2) for s, v in floor.items()},
                kmeans_semdedup_dbp_hours=[round(h, 1) for h in prune],
                tib_moved={s: {rw: round(v / 2**40, 3) for rw, v in b.items()} for s, b in moved["stages"].items()},
                disk_tib={key: round(v / 2**40, 3) for key, v in moved["disk"].items()},
                task_gib={s: [round(v / GIB, 2) for v in lh] for s, lh in mem["task"].items()},
                node_gib={s: [round(v / GIB, 1) for v in lh] for s, lh in mem["node"].items()},
                driver_gib={s: round(v / GIB, 2) for s, v in mem["driver"].items()})


def span(low_high: list[float]) -> str:
    """Returns a [low, high] pair as one figure when they agree, else as low-high."""
    low, high = low_high
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def summary_line(p: dict) -> str:
    """Returns one printed Markdown row of a projection: hours per stage, GiB per node (the pruning stages' highest
    task x cores; DFN's beside it) and the driver's highest."""
    h, node = p["hours"], p["node_gib"]
    prune_node = [max(node[s][i] for s in ("assignment + partition", "SemDeDup", "DQ")) for i in (0, 1)]
    stages = ("k-means training", "assignment + partition", "SemDeDup", "DBP")
    return (f"| {p['samples'] / 1e6:g}M | {p['dim']} | {p['k']:,} | {p['nodes']} x {p['cores_per_node']} | "
            + " | ".join(span(h[s]) for s in stages) + f" | **{span(p['kmeans_semdedup_dbp_hours'])}** | "
            f"{span(h['DQ'])} | "
            f"{span(h['DFN'])} | {span(prune_node)} ({span(node['DFN'])}) | {max(p['driver_gib'].values()):g} |")


def main() -> None:
    """Prints the rates, the linearity check and a row per projection; writes results/cost_model.json; returns
    nothing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=16, help="cores per node (one task each)")
    parser.add_argument("--bandwidth-gbs", type=float, default=1.0, help="shared storage, GB/s for all nodes")
    parser.add_argument("--ppc", type=int, default=32, help="--max-points-per-centroid (curate's default is 256)")
    parser.add_argument("--rows-per-file", type=int, default=200_000, help="rows per embedding file")
    args = parser.parse_args()
    runs = load_runs(RESULTS)
    fit = fit_kmeans(runs["after"], runs["ten"])
    rates = fit | fit_within(runs["after"], runs["packed"], fit["mac"])
    one = runs["after"]
    disk = {key: one["disk_mib"][key] * MIB / (one["samples"] * one["dim"]) for key in ("embeddings", "partitions")}
    disk["scores"] = one["disk_mib"]["scores"] * MIB / one["samples"] / 4  # four stages' score files at 1M
    table = [project(pool_shape(n, d, None, args.rows_per_file), runs, rates, disk, args, nodes)
             for d in DIMS for n in POOLS.values() for nodes in NODES]
    sweep = [project(pool_shape(n, 768, k, args.rows_per_file), runs, rates, disk, argparse.Namespace(
        **vars(args) | dict(ppc=ppc)), 16) | dict(k_rule=rule, ppc=ppc)
             for n in list(POOLS.values())[1:] for rule, k in K_RULES.items() for ppc in (args.ppc, 256)]
    results = dict(command=" ".join(["python benchmarks/cost_model.py", *sys.argv[1:]]), options=vars(args),
                   bucket_budget_bytes=bucket_bytes(), assumptions=ASSUMPTIONS, not_measured=NOT_MEASURED,
                   rates=rates, disk_bytes_per_element=disk, linearity=linearity(runs, fit), projections=table,
                   k_sweep_16_nodes=sweep)
    print(json.dumps(dict(rates=rates, linearity=results["linearity"]), indent=1))
    print("| pool | d | k | nodes x cores | train | assign + partition | SemDeDup | DBP | k-means + SemDeDup + DBP | DQ"
          " | DFN | GiB per node (DFN's) | driver GiB |")
    for p in table + sweep:
        print(summary_line(p) + (f" {p['k_rule']}, ppc {p['ppc']}" if "k_rule" in p else ""))
    write_results("cost_model", results)


if __name__ == "__main__":
    main()
