"""Evaluate a selection at fixed compute: train a CLIP from scratch on it and measure it on held-out data."""

import argparse
import json

from curate.cli.options import existing_run
from curate.errors import UsageError
from curate.options import positive_int
from curate.outputs import Output


def seed_list(text: str) -> list[int]:
    """Returns "0,1,2" as [0, 1, 2]; argparse turns the ValueError into a one-line error."""
    seeds = [int(part) for part in text.split(",") if part.strip()]
    if not seeds:
        raise ValueError(text)
    return seeds


def pruner_option(text: str) -> tuple[str, float]:
    """Returns "num_groups=5" as ("num_groups", 5): an int when the value is a whole number, else a float;
    argparse turns the ValueError into a one-line error."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(text)
    number = float(value)
    return name.strip(), int(number) if number.is_integer() and "." not in value else number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the evaluate command's options."""
    from curate.evaluate.run import DEFAULT_BATCH_SIZE, DEFAULT_SAMPLES_SEEN
    from curate.models.loading import DEFAULT_MODEL

    parser.add_argument("run", help="an ingested run folder")
    parser.add_argument("--where", help="SQL predicate on the samples view selecting the subset (default: all)")
    parser.add_argument("--heldout", required=True,
                        help="held-out set: Parquet file (jpg, label, optional caption) or a folder of class folders")
    parser.add_argument("--samples-seen", type=positive_int, default=DEFAULT_SAMPLES_SEEN,
                        help=f"training budget in samples, whatever the subset size (default {DEFAULT_SAMPLES_SEEN})")
    parser.add_argument("--seeds", type=seed_list, default=[0], help="comma-separated seeds (default 0)")
    parser.add_argument("--model-config", default=DEFAULT_MODEL,
                        help=f"open_clip model config to train from scratch (default {DEFAULT_MODEL}; tiny = it)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"pairs per step (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--dynamic", choices=("seta", "infobatch", "random"),
                        help="prune dynamically while training (ceil(samples-seen / subset size) pruned epochs)")
    parser.add_argument("--prune-ratio", type=float, default=0.5, help="with --dynamic: share pruned (default 0.5)")
    parser.add_argument("--pruner-option", type=pruner_option, action="append", default=[], metavar="NAME=VALUE",
                        help="with --dynamic: a pruner option, repeatable; SeTa's CIFAR setting is "
                             "--pruner-option num_groups=5 --pruner-option window_scale=0.9")
    parser.add_argument("--out", help="JSON result file (default RUN/evaluations/eval-<hash>.json)")
    parser.add_argument("--baselines", action="store_true",
                        help="evaluate the full pool, every keep flag and their conjunctions, and same-size random "
                             "subsets; prints a table and writes RUN/evaluations/baselines.json and .png")


def run(args: argparse.Namespace) -> int:
    """Runs the evaluation and prints the mean metrics and output paths as JSON; returns 0."""
    from curate.evaluate.run import DynamicPruning, evaluate_subset

    if args.pruner_option and not args.dynamic:
        raise UsageError("--pruner-option needs --dynamic seta|infobatch|random")
    if args.baselines:
        return _run_baselines(args)
    if args.out is not None and not args.out.endswith(".json"):
        raise UsageError(f"--out {args.out} must be a .json file")
    out = None if args.out is None else Output(folder=False).check_place(args.out)
    result = evaluate_subset(
        existing_run(args.run), args.where, args.heldout, samples_seen=args.samples_seen, seeds=args.seeds,
        model_config=args.model_config, out=out, batch_size=args.batch_size,
        dynamic=DynamicPruning(args.dynamic, args.prune_ratio, tuple(args.pruner_option)) if args.dynamic else None,
    )
    keys = ("evaluation", "predicate", "subset_size", "samples_seen", "model_config", "seeds", "dynamic", "mean",
            "std", "json", "parquet")
    print(json.dumps({k: result[k] for k in keys}))
    return 0


def _run_baselines(args: argparse.Namespace) -> int:
    from curate.evaluate.baselines import format_table, run_baselines

    if args.where is not None or args.out is not None or args.dynamic is not None:
        raise UsageError("--baselines chooses its own subsets, training and outputs: drop --where, --out, --dynamic")
    summary = run_baselines(existing_run(args.run), args.heldout, args.samples_seen, args.seeds, args.model_config,
                            args.batch_size)
    print(format_table(summary["rows"]))
    print(f"chart: {summary['chart']}")
    return 0
