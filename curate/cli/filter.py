"""Apply a selection method to a run: its scores and keep flag join the catalog's samples view."""

import argparse
import json
import sys

from curate.cli.options import add_runner_arguments, existing_run, runner_from
from curate.filters import FILTERS, filter_class
from curate.options import add_options, options_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares one subcommand per registered method, with the options its dataclass declares."""
    methods = parser.add_subparsers(dest="method", required=True, parser_class=type(parser))
    for name in FILTERS:
        cls = filter_class(name)
        sub = methods.add_parser(name, help=sys.modules[cls.__module__].__doc__.splitlines()[0])
        sub.add_argument("run", help="a run folder")
        add_options(sub, cls)
        if cls.uses_runner:
            add_runner_arguments(sub)
        sub.set_defaults(filter_class=cls)


def run(args: argparse.Namespace) -> int:
    """Runs the chosen method and prints its counts as JSON; returns 0."""
    method = options_from(args.filter_class, args)
    runner = runner_from(args) if args.filter_class.uses_runner else "local"
    print(json.dumps(method.apply(existing_run(args.run), runner)))
    return 0
