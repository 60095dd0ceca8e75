"""Command line: python -m curate.synth OUT [--samples N] [--seed S] ...; prints the summary as JSON."""

from __future__ import annotations

import argparse
import json
import time

from curate.synth.pool import generate_pool


def main(argv: list[str] | None = None) -> dict:
    """Parses arguments, writes the pool and prints its summary; returns the summary dict."""
    parser = argparse.ArgumentParser(prog="python -m curate.synth", description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--hq-samples", type=int, default=None)
    parser.add_argument("--heldout-per-concept", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = generate_pool(args.out, samples=args.samples, seed=args.seed, shard_size=args.shard_size,
                            hq_samples=args.hq_samples, heldout_per_concept=args.heldout_per_concept,
                            image_size=args.image_size)
    brief = {k: v for k, v in summary.items() if not k.endswith("_shards")}
    print(json.dumps({**brief, "seconds": round(time.perf_counter() - started, 2)}, indent=2))
    return summary


if __name__ == "__main__":
    main()
