"""Join a table of your own (Parquet, CSV or JSON lines) to a run's samples as a stage: its columns become columns
of `samples`, named NAME_<column>."""

import argparse
import json

from curate.io.columns import name_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the annotate command's options."""
    from curate.stages.annotate import KEYS

    parser.add_argument("run", help="an ingested run folder")
    parser.add_argument("--from", dest="source", required=True, metavar="FILE",
                        help="the table: .parquet, .csv, .tsv, .jsonl (JSON lines) or .json")
    parser.add_argument("--on", choices=KEYS, default="uid",
                        help="the samples column the table's column of the same name matches (default uid); each "
                             "value may appear once in the table")
    parser.add_argument("--name", required=True,
                        help="the stage's name (lowercase letters, digits, _), and the prefix of its columns")
    parser.add_argument("--columns", type=name_list, metavar="A,B",
                        help="the table's columns to keep (default: all but the key)")
    parser.add_argument("--no-prefix", dest="prefix", action="store_false",
                        help="name the columns as the table does, not NAME_<column>")


def run(args: argparse.Namespace) -> int:
    """Annotates the run and prints the counts as JSON; returns 0."""
    from curate.cli.options import existing_run
    from curate.stages.annotate import Annotation, annotate

    annotation = Annotation(args.name, args.on, args.columns, args.prefix)
    print(json.dumps(annotate(existing_run(args.run), args.source, annotation)))
    return 0
