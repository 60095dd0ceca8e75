"""Export the samples matching a SQL predicate as WebDataset, Parquet, a DataComp uid file or a HF dataset."""

import argparse
import json
import sys

from curate.options import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the export command's options."""
    from curate.export import EXPORT_FORMATS

    parser.add_argument("run", help="run folder")
    parser.add_argument("--where", help="SQL predicate on the samples view (default: every sample)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--out", required=True, help="folder to create")
    parser.add_argument("--shard-size", type=positive_int, default=10000, help="samples per output shard")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    """Exports the selection and prints a summary as JSON; returns 0."""
    from curate.api import open as open_run

    summary = open_run(args.run).samples(args.where).export(args.out, args.format, args.shard_size, args.overwrite)
    print(json.dumps(summary, default=str))
    for reason, count in summary["skipped_reasons"].items():
        print(f"curate: skipped {count} selected samples: {reason}", file=sys.stderr)
    return 0
