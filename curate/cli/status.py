"""Show a run's stage graph: each stage's status (current, stale or incomplete), options, input and counts."""

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the status command's options."""
    parser.add_argument("run", help="a run folder")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    """Prints the stages, inputs first, as a table or JSON; returns 0."""
    from curate.api import open as open_run

    stages = open_run(args.run).stages()
    if args.format == "json":
        print(json.dumps(stages.to_dicts(), indent=2))
        return 0
    for row in stages.iter_rows(named=True):
        reads = f" reads {', '.join(row['inputs'])}" if row["inputs"] else ""
        where = f" where {row['input_predicate']}" if row["input_predicate"] else ""
        print(f"{row['stage']:<10} {row['status']:<10}{reads}{where}")
        print(f"{'':<10} options {row['options']}")
        print(f"{'':<10} counts  {row['counts']}")
        if row["stale_because"]:
            print(f"{'':<10} stale because {row['stale_because']}")
    return 0
