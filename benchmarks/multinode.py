"""The whole-pool stages on a Ray cluster of several nodes on this machine: the same decisions as the local runner,
tasks on every node, and a worker process killed mid-stage retried to the same result.

    python benchmarks/multinode.py [--samples 200000] [--nodes 3] [--kill | --kill-first]

The nodes are raylets of a `ray.cluster_utils.Cluster`, each with its own CPUs (--cpus per node) and object store.
The run (written as benchmarks/web_scale.py writes it) is copied before any stage, so the local runner and the
cluster start from the same files; SemDeDup, DBP, DQ (k-means first), neardup (image embeddings, threshold 0.9)
and the random baseline run through the Python API, and every sample's keep flags (and neardup's groups) are
compared. With --kill, a third copy runs on the cluster while a worker process executing one of its tasks is
SIGKILLed; with --kill-first, a worker is killed in the last stage (the random baseline) of the first and only run
on the cluster instead, whose decisions and task placements then stand for both (the test suite's cheaper form).
Prints and writes benchmarks/results/multinode.json (--out to write elsewhere).
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_results
from web_scale import build_run

KEEP_COLUMNS = ("cluster_id", "semdedup_keep", "dbp_keep", "dq_keep", "random_keep", "neardup_keep", "neardup_group")


def stages(run, runner: str, clusters: int, during: dict | None = None) -> dict:
    """Runs the measured stages on the run, each inside the context manager `during` maps its name to, if any;
    returns (counts, seconds) per stage."""
    from curate.filters.dbp import DBP
    from curate.filters.dq import DQ
    from curate.filters.neardup import NearDup
    from curate.filters.random_baseline import RandomBaseline
    from curate.filters.semdedup import SemDeDup

    kmeans = dict(clusters=clusters, max_points_per_centroid=64)
    out = {}
    for method in (SemDeDup(eps=0.01, **kmeans), DBP(keep_fraction=0.5, **kmeans),
                   DQ(keep_fraction=0.3, bins=4, **kmeans), NearDup(descriptor="image", threshold=0.9),
                   RandomBaseline(keep_fraction=0.3)):
        start = time.perf_counter()
        with (during or {}).get(method.name, contextlib.nullcontext)():
            counts = method.apply(run, runner, progress=False)
        out[method.name] = dict(counts=counts, seconds=round(time.perf_counter() - start, 1))
    return out


def decisions(run) -> list:
    """Returns every sample's keep flags, by uid."""
    from curate.catalogs import connect

    return connect(run).execute(f"SELECT uid, {', '.join(KEEP_COLUMNS)} FROM samples ORDER BY uid").fetchall()


def _kill_one_task(stop: threading.Event, killed: list, raylets: set[int]) -> None:
    """SIGKILLs the first worker process of one of the `raylets` (this cluster's: no other Ray on the machine, a
    test run's beside it) found executing a map task (its title is ray::_placed)."""
    while not stop.is_set() and not killed:
        for entry in os.scandir("/proc"):
            try:
                title = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")[0]
                if not (entry.name.isdigit() and title.startswith(b"ray::_placed")):
                    continue
                parent = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if parent in raylets:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
                return
        time.sleep(0.005)


@contextlib.contextmanager
def one_task_killed(cluster, killed: list) -> Iterator[None]:
    """While the block runs, SIGKILLs the first worker process of the `cluster`'s found executing a map task, and
    appends its pid to `killed`."""
    from ray._private import ray_constants

    raylets = {n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid for n in cluster.list_all_nodes()}
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_one_task, args=(stop, killed, raylets), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()


def on_cluster(copies: list[Path], nodes: int, cpus: int, clusters: int, kill: bool, kill_first: bool = False) -> dict:
    """Starts the cluster, runs the stages on the first copy (and, killing a worker, on the second; with
    `kill_first`, killing a worker of the first run's last stage, the random baseline, whose placements the
    earlier stages' do not depend on); returns the figures, with the tasks each map ran per node."""
    import ray
    from ray.cluster_utils import Cluster

    from curate.rundir import RunDir
    from curate.runners.ray import PLACEMENTS

    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=cpus))
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        killed: list[int] = []
        during = {"random": lambda: one_task_killed(cluster, killed)} if kill_first else None
        result = dict(stages=stages(RunDir(copies[0]), "ray", clusters, during))
        names = {n["NodeID"]: f"node{i}" for i, n in enumerate(ray.nodes())}
        result["tasks_per_node"] = {desc: {names.get(k, k): v for k, v in placed.items()}
                                    for desc, placed in PLACEMENTS.items()}
        result["decisions"] = decisions(RunDir(copies[0]))
        if kill_first:
            result |= dict(killed_workers=len(killed), killed_decisions=result["decisions"])
        if kill:
            with one_task_killed(cluster, killed):
                stages(RunDir(copies[1]), "ray", clusters)
            result["killed_workers"] = len(killed)
            result["killed_decisions"] = decisions(RunDir(copies[1]))
        return result
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.pop("RAY_ADDRESS", None)


def main() -> None:
    """Builds the run, runs it locally and on the cluster; prints and writes the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=20_000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each node")
    kill = parser.add_mutually_exclusive_group()
    kill.add_argument("--kill", action="store_true", help="also kill a worker mid-stage on a third copy")
    kill.add_argument("--kill-first", action="store_true", help="kill a worker mid-stage of the first cluster run")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate_multinode"))
    parser.add_argument("--out", type=Path, help="write the results here instead of benchmarks/results/")
    args = parser.parse_args()
    from curate.rundir import RunDir

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    components = max(1, args.clusters // 2)
    base = build_run(args.work / "base", args.samples, args.dim, args.shard_size, components, text=False).path
    copies = [args.work / name for name in ("local", "cluster", "killed")[:2 if args.kill_first else 3]]
    for copy in copies:
        shutil.copytree(base, copy)
    local = stages(RunDir(copies[0]), "local", args.clusters)
    cluster = on_cluster(copies[1:], args.nodes, args.cpus, args.clusters, args.kill, args.kill_first)
    expected = decisions(RunDir(copies[0]))
    results = dict(machine=machine(), samples=args.samples, dim=args.dim, nodes=args.nodes, cpus_per_node=args.cpus,
                   local=local, cluster=cluster["stages"], tasks_per_node=cluster["tasks_per_node"],
                   same_decisions=cluster["decisions"] == expected, decided=len(expected))
    if args.kill or args.kill_first:
        results |= dict(killed_workers=cluster["killed_workers"],
                        same_decisions_after_kill=cluster["killed_decisions"] == expected)
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results))
    else:
        write_results("multinode", results)


if __name__ == "__main__":
    main()
