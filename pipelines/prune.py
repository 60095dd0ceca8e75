"""Concept-cluster pruning on the embeddings a run already has: SemDeDup, then DBP on what remains.

    python pipelines/prune.py --run runs/dfn --method semdedup --eps 0.03
    python pipelines/prune.py --run runs/dfn --method semdedup --keep-fraction 0.8
    python pipelines/prune.py --run runs/dfn --method dbp --keep-fraction 0.3 --where "semdedup_keep AND dfn_keep"
    ray submit ray_cluster.yaml pipelines/prune.py -- --run /mnt/efs/runs/dfn --method semdedup --eps 0.03

The embeddings come from pipelines/dfn.py (or `curate embed`) or from ingested DataComp .npz files. k-means runs
once per run and options (--clusters, --niter, --kmeans-seed, --embedding) and is shared by both methods;
SemDeDup's per-cluster similarity search is spread over Ray tasks. `ray submit` copies only this file: it
imports the installed curate package and nothing beside it.
"""

import argparse
import json
import sys

from curate.cli.main import OneLineArgumentParser, guarded
from curate.cli.options import existing_run, positive_int, runner_options
from curate.filters.dbp import apply_dbp
from curate.filters.semdedup import add_arguments as add_semdedup_arguments
from curate.filters.semdedup import apply_semdedup, kmeans_config

METHODS = ("semdedup", "dbp")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Returns the command-line options."""
    parser = OneLineArgumentParser(prog="pipelines/prune.py", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run folder with embeddings")
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--runner", choices=("ray", "local"), default="ray")
    parser.add_argument("--workers", type=positive_int, help="Ray: concurrent SemDeDup tasks (default: all CPUs)")
    method = parser.parse_known_args(argv)[0].method
    if method == "semdedup":
        add_semdedup_arguments(parser)
    else:
        from curate.filters.dbp import add_arguments as add_dbp_arguments

        add_dbp_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the pipeline and prints its summary as JSON; returns 0 (bad arguments raise UsageError)."""
    args = parse_args(argv)
    run = existing_run(args.run)
    options = runner_options(args)
    if args.method == "semdedup":
        counts = apply_semdedup(run, args.eps, args.keep_fraction, args.keep, args.seed, kmeans_config(args),
                                args.embedding, args.runner, **options)
    else:
        counts = apply_dbp(run, args.keep_fraction, args.where, args.tau, args.neighbors, args.keep, args.seed,
                           kmeans_config(args), args.embedding)
    print(json.dumps({args.method: counts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
