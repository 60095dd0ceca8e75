"""Remove pool samples that are copies of evaluation images (decontam_keep, decontam_match, decontam_sim,
decontam_score)."""

import argparse
import json

from curate.cli.options import add_runner_arguments, add_trust_argument, existing_run, runner_from
from curate.options import add_options, options_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the run, the method's options, --trust-torchscript and --runner/--workers."""
    from curate.filters.decontaminate import Decontaminate

    parser.add_argument("run", help="a run folder with a descriptor set (curate embed RUN --model DIR --as copy)")
    add_options(parser, Decontaminate)
    add_trust_argument(parser)
    add_runner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Decontaminates the run and prints the counts as JSON; returns 0."""
    from curate.filters.decontaminate import Decontaminate

    method = options_from(Decontaminate, args, trust_torchscript=args.trust_torchscript)
    print(json.dumps(method.apply(existing_run(args.run), runner_from(args))))
    return 0
