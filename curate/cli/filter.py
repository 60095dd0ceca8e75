"""Apply a selection method to a run: its scores and keep flag join the catalog's samples view."""

import argparse
import importlib
import json

from curate.cli.options import add_runner_arguments, existing_run
from curate.filters import FILTERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares one subcommand per registered filter, each with its own options."""
    methods = parser.add_subparsers(dest="method", required=True, parser_class=type(parser))
    for name, module_name in FILTERS.items():
        module = importlib.import_module(module_name)
        sub = methods.add_parser(name, help=module.__doc__.splitlines()[0])
        sub.add_argument("run", help="a run folder")
        module.add_arguments(sub)
        add_runner_arguments(sub)
        sub.set_defaults(filter_module=module)


def run(args: argparse.Namespace) -> int:
    """Runs the chosen filter and prints its counts as JSON; returns 0."""
    print(json.dumps(args.filter_module.run(existing_run(args.run), args)))
    return 0
