"""Write a run's report: score histograms (kept and dropped stacked), concept clusters, distilled sets' grids."""

import argparse
import json
from pathlib import Path

from curate.cli.options import existing_run
from curate.outputs import Output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the report command's options."""
    parser.add_argument("run", help="a run folder")
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default RUN/report)")


def run(args: argparse.Namespace) -> int:
    """Writes the report and prints the accounting and the PNG paths as JSON; returns 0."""
    from curate.report import write_report
    from curate.stages.ingest import accounting

    run_dir = existing_run(args.run)
    out = None if args.out is None else Output().check_place(args.out)
    paths = write_report(run_dir, out)
    print(json.dumps({"accounting": accounting(run_dir), "plots": [str(p) for p in paths]}, indent=2))
    return 0
