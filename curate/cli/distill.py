"""Distill a run's labelled selection into a few synthetic images per class (TESLA, CDA or SRe2L), in
RUN/distilled/<name>/."""

import argparse
import json
import sys

from curate.cli.options import add_runner_arguments, existing_run, runner_from
from curate.options import add_options, options_from, positive_int


def add_arguments(parser: argparse.ArgumentParser, positional_run: bool = True) -> None:
    """Declares the distill command's options (the run folder as a positional argument unless told not to)."""
    from curate.distill.run import METHODS, DistillOptions

    if positional_run:
        parser.add_argument("run", help="a run folder")
    parser.add_argument("--name", required=True, help="the set's folder name under RUN/distilled/")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--label-column", help="the samples column holding each sample's class")
    labels.add_argument("--labels", metavar="zeroshot:FILE",
                        help="label each sample by zero-shot classification of its image embedding with the run's "
                             "embedding model over FILE's class names (one a line; '#' lines are comments)")
    parser.add_argument("--where", help="SQL predicate on the samples view (default: every sample)")
    parser.add_argument("--method", default="tesla", help=f"one of {', '.join(METHODS)} (default tesla)")
    add_options(parser, DistillOptions)  # the method's settings, each saying which methods take it
    parser.add_argument("--checkpoint-every", type=positive_int, default=100,
                        help="iterations between checkpoints, from which a rerun resumes (default 100)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    add_runner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Distills (or resumes) the set and prints its distilled.json as JSON; returns 0."""
    from curate.distill.run import DistillOptions, distill_run
    from curate.distill.zeroshot import read_classes

    classes = None if args.labels is None else read_classes(args.labels)
    options = options_from(DistillOptions, args, label_column=args.label_column, zeroshot_classes=classes,
                           where=args.where, method=args.method)
    runner = runner_from(args, progress=args.progress)
    summary = distill_run(existing_run(args.run), args.name, options, runner, progress=args.progress,
                          checkpoint_every=args.checkpoint_every)
    print(json.dumps(summary, default=str))
    for warning in summary.get("warnings", []):
        print(f"curate distill: warning: {warning}", file=sys.stderr)
    return 0

