"""A cost model for the whole-pool stages at DataComp's sizes, fitted to benchmarks/web_scale.py's measured run.

    python benchmarks/cost_model.py [--measured benchmarks/results/web_scale_10000000.json] [--cores 16]

From the measured run it takes, per stage, the seconds per unit of work on one core, where a stage's work is what
its tasks compute (the units below), and projects wall time on `nodes` x `cores` for DataComp medium (128M) and
large (1.28B) at 768-d (L14) float16, with k = round(sqrt(N)), curate's default (it balances the assignment, which
grows with k, against the within-cluster work, which grows with N / k):

    k-means assignment + partition   N k d      (every embedding against every centroid; then the rows regrouped)
    SemDeDup                         N^2/k d    (each cluster's members against the earlier ones)
    DQ                               N^2/k d    (GraphCut: a matrix-vector product per pick within a cluster)
    DBP                              N          (reads uids and distances; the quotas are per cluster)
    k-means training                 m k d      (m = k x max_points_per_centroid sampled rows, on the driver)

Assumptions, stated so they can be checked: work scales as above and divides evenly over the cores (the measured
tasks were CPU-bound on 2 cores; per-core speed is this machine's); I/O is not the bottleneck (the measured run read
its files from a local disk; a shared filesystem must sustain about N d 2 bytes per pass, 4 passes); a task holds
one bucket (at most CURATE_PARTITION_BYTES, 1 GiB) plus its working set, so memory per worker stays at the measured
per-worker peak whatever N is; the driver holds the training sample (m d 4 bytes) and the centroids. Writes
benchmarks/results/cost_model.json.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_results

POOLS = {"DataComp medium": 128_000_000, "DataComp large": 1_280_000_000}
DIM, BYTES = 768, 2  # L14 embeddings as DataComp ships them, float16


def work_units(n: float, k: float, d: float) -> dict[str, float]:
    """Returns each stage's work for a pool of n samples in k clusters of d-dimensional embeddings."""
    return {"kmeans": n * k * d, "semdedup": n * n / k * d, "dq": n * n / k * d, "dbp": n}


def fitted_rates(measured: dict) -> dict[str, float]:
    """Returns core-seconds per unit of work of each stage in the measured run."""
    n, k, d, workers = measured["samples"], measured["clusters"], measured["dim"], measured["workers"]
    units = work_units(n, k, d)
    return {stage: measured["commands"][stage]["seconds"] * workers / units[stage] for stage in units
            if stage in measured["commands"]}


def project(measured: dict, nodes: int, cores: int) -> dict:
    """Returns, per pool, the projected wall seconds of each stage, the driver's memory and disk per pass."""
    rates, workers = fitted_rates(measured), measured["workers"]
    per_worker = (measured["commands"]["semdedup"]["peak_tree_mib"]
                  - measured["commands"]["semdedup"]["peak_driver_mib"]) / workers
    out = {}
    for name, n in POOLS.items():
        k = round(n ** 0.5)
        seconds = {stage: rates[stage] * units / (nodes * cores)
                   for stage, units in work_units(n, k, DIM).items() if stage in rates}
        train = measured["points_per_centroid"] * k
        out[name] = dict(
            samples=n, clusters=k, hours={stage: round(s / 3600, 2) for stage, s in seconds.items()},
            total_hours=round(sum(seconds.values()) / 3600, 1), worker_mib=round(per_worker),
            node_gib=round(per_worker * cores / 1024, 1),
            driver_gib=round((train * DIM * 4 + k * DIM * 4) / 2**30, 1),
            embeddings_tib=round(n * DIM * BYTES / 2**40, 2),
        )
    return out


def main() -> None:
    """Prints and writes the projection for each cluster shape asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", type=Path, default=RESULTS / "web_scale_10000000.json")
    parser.add_argument("--cores", type=int, default=16, help="cores per node")
    parser.add_argument("--nodes", default="1,8,64", help="node counts to project for")
    args = parser.parse_args()
    measured = json.loads(args.measured.read_text())
    results = dict(measured=str(args.measured.name), rates=fitted_rates(measured), cores_per_node=args.cores,
                   projections={nodes: project(measured, int(nodes), args.cores) for nodes in args.nodes.split(",")})
    print(json.dumps(results, indent=1))
    write_results("cost_model", results)


if __name__ == "__main__":
    main()
