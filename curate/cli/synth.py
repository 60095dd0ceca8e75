"""Generate a synthetic benchmark pool (img2dataset-layout shards, truth, trusted set, held-out set)."""

import argparse
import json

from curate.options import non_negative_int, positive_int
from curate.outputs import Output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the synth command's options."""
    parser.add_argument("--out", required=True, help="folder to write pool/, hq/, truth.parquet, heldout.parquet")
    parser.add_argument("--samples", type=positive_int, default=4000, help="pool size (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--shard-size", type=positive_int, default=500, help="samples per tar (default 500)")
    parser.add_argument("--hq-samples", type=non_negative_int, help="trusted hq/ pairs (default: half of --samples)")
    parser.add_argument("--heldout-per-concept", type=non_negative_int, default=10,
                        help="labelled held-out images per concept (default 10)")
    parser.add_argument("--image-size", type=positive_int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--broken-samples", type=non_negative_int, default=0,
                        help="broken samples (bad images, a decompression bomb, bad captions) in extra pool shards, "
                             "for ingest to quarantine (default 0)")
    parser.add_argument("--instance-detail", action="store_true",
                        help="give every rendering its own clutter, object texture, lighting and sensor noise, so "
                             "distinct renderings of one concept differ the way photos do (default off)")


def run(args: argparse.Namespace) -> int:
    """Writes the pool and prints its summary (without the shard lists) as JSON; returns 0."""
    from curate.synth import generate_pool

    out = Output().check_place(args.out)
    summary = generate_pool(out, samples=args.samples, seed=args.seed, shard_size=args.shard_size,
                            hq_samples=args.hq_samples, heldout_per_concept=args.heldout_per_concept,
                            image_size=args.image_size, broken_samples=args.broken_samples,
                            instance_detail=args.instance_detail)
    brief = {k: v for k, v in summary.items() if not k.endswith("_shards")}
    print(json.dumps(brief, indent=2, default=str))
    return 0
