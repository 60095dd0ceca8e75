"""Generate a synthetic benchmark pool (img2dataset-layout shards, truth, trusted set, held-out set)."""

import argparse
import json

from curate.cli.options import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the synth command's options."""
    parser.add_argument("--out", required=True, help="folder to write pool/, hq/, truth.parquet, heldout.parquet")
    parser.add_argument("--samples", type=positive_int, default=4000, help="pool size (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--shard-size", type=positive_int, default=500, help="samples per tar (default 500)")


def run(args: argparse.Namespace) -> int:
    """Writes the pool and prints its summary as JSON; returns 0."""
    from curate.synth import generate_pool

    summary = generate_pool(args.out, samples=args.samples, seed=args.seed, shard_size=args.shard_size)
    print(json.dumps(summary, indent=2, default=str))
    return 0
