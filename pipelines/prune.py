"""Concept-cluster pruning on the embeddings a run already has: SemDeDup, then DBP or DQ on what remains.

    python pipelines/prune.py --run runs/dfn --method semdedup --eps 0.03
    python pipelines/prune.py --run runs/dfn --method semdedup --keep-fraction 0.8
    python pipelines/prune.py --run runs/dfn --method dbp --keep-fraction 0.3 --where "semdedup_keep AND dfn_keep"
    python pipelines/prune.py --run runs/dfn --method dq --keep-fraction 0.3 --bins 10 --where "dfn_keep"
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
from curate.cli.options import add_runner_arguments, existing_run, runner_from
from curate.concepts.clustering import ClusterMethod
from curate.filters import FILTERS, filter_class
from curate.options import add_options, options_from

METHODS = tuple(name for name in FILTERS if issubclass(filter_class(name), ClusterMethod))  # those within clusters


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Returns the command-line options: the method's own, and --runner/--workers for a method that uses them."""
    parser = OneLineArgumentParser(prog="pipelines/prune.py", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run folder with embeddings")
    parser.add_argument("--method", choices=METHODS, required=True)
    chosen = OneLineArgumentParser(add_help=False)  # --help comes after the method's options are added
    chosen.add_argument("--method", choices=METHODS)
    method = filter_class(chosen.parse_known_args(argv)[0].method or METHODS[0])
    add_options(parser, method)
    if method.uses_runner:
        add_runner_arguments(parser, default="ray")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the pipeline and prints its summary as JSON; returns 0 (bad arguments raise UsageError)."""
    args = parse_args(argv)
    cls = filter_class(args.method)
    runner = runner_from(args) if cls.uses_runner else "local"
    counts = options_from(cls, args).apply(existing_run(args.run), runner)
    print(json.dumps({args.method: counts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
