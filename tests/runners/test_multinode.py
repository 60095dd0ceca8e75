"""The whole-pool stages on a real two-node Ray cluster (ray.cluster_utils.Cluster, in its own process): tasks on
both nodes, the local runner's decisions, and a worker SIGKILLed mid-stage retried to the same decisions."""

import json
import os
import subprocess
import sys

from curate.concepts.partition import BUCKET_BYTES_VARIABLE
from tests.benchmarks import BENCHMARKS


def test_two_nodes_share_the_tasks_and_decide_as_the_local_runner(tmp_path, own_ray_tmpdir):
    out = tmp_path / "multinode.json"
    # The cluster's address file in a Ray folder of its own: no later ray.init() of this test process finds it,
    # even when the benchmark dies before it shuts its cluster down.
    ray_tmpdir = os.path.join(own_ray_tmpdir, "multinode")
    os.makedirs(ray_tmpdir, exist_ok=True)
    done = subprocess.run([sys.executable, str(BENCHMARKS / "multinode.py"), "--samples", "1200", "--dim", "16",
                           "--shard-size", "300", "--clusters", "8", "--nodes", "2", "--kill-first", "--work",
                           str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True,
                          env=os.environ | {BUCKET_BYTES_VARIABLE: "12000",  # buckets of a few clusters each
                                            "RAY_TMPDIR": ray_tmpdir})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["same_decisions"] and result["decided"] == 1200
    assert all(len(result["tasks_per_node"][desc]) == 2 for desc in ("kmeans", "semdedup", "dbp", "dq",
                                                                       "neardup lists", "neardup keep"))
    assert result["cluster"]["neardup"]["counts"]["dropped"] > 0
    assert result["killed_workers"] == 1 and result["same_decisions_after_kill"]
