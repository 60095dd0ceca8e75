"""Evaluate a distilled set by the papers' protocol: fresh ConvNets trained on it alone, tested on held-out images."""

import argparse
import json

from curate.cli.evaluate import seed_list
from curate.cli.options import add_runner_arguments, existing_run, runner_from
from curate.options import positive_int


def name_list(text: str) -> tuple[str, ...]:
    """Returns "random,herding" as ("random", "herding"); the names are checked by the evaluation."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the distill-eval command's options."""
    from curate.distill.eval_set import BASELINES, STORED, SetEvalOptions

    defaults = SetEvalOptions(test="")
    parser.add_argument("run", help="a run folder holding the distilled set")
    parser.add_argument("--name", required=True, help="the distilled set (RUN/distilled/NAME)")
    parser.add_argument("--test", required=True,
                        help="held-out images: a Parquet file (jpg, label), a folder of class folders, or labelled "
                             "inputs ingest reads (WebDataset shards with .cls, Hugging Face Parquet or folders)")
    parser.add_argument("--test-label-column", metavar="COLUMN",
                        help="with labelled inputs: the column holding the class (default: cls, else label); classes "
                             "are matched to the set's by name")
    parser.add_argument("--seeds", type=seed_list, default=list(defaults.seeds),
                        help="comma-separated seeds, one network each (default 0)")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs,
                        help=f"training epochs per network (default {defaults.epochs}; the papers use 1000)")
    parser.add_argument("--stored", choices=STORED, default=defaults.stored,
                        help="train on the learned float images (the papers' protocol, default) or on the PNGs an "
                             "export holds (clipped to 0-255)")
    parser.add_argument("--baselines", type=name_list, default=(), metavar=",".join(BASELINES),
                        help="also evaluate, on the same protocol and the set's source selection: random real images "
                             "at the set's IPC, herding on the run's image embeddings, the full selection")
    parser.add_argument("--no-relabel", dest="relabel", action="store_false",
                        help="train the set's networks on its labels even when the set holds soft crops "
                             "(relabel.safetensors: SRe2L/CDA's relabelling), which it otherwise trains on")
    add_runner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluates the set, prints one line per trained set and the result as JSON; returns 0."""
    from curate.distill.eval_set import SetEvalOptions, evaluate_distilled

    options = SetEvalOptions(test=args.test, seeds=tuple(args.seeds), epochs=args.epochs, stored=args.stored,
                             baselines=args.baselines, relabel=args.relabel,
                             test_label_column=args.test_label_column)
    result = evaluate_distilled(existing_run(args.run), args.name, options, runner_from(args, progress=True))
    for row in result["summary"]:
        print(f"{row['method']:10s} n={row['size']:<7d} top-1 {row['mean']:.4f} ± {row['std']:.4f} "
              f"({row['seeds']} seeds)")
    print(json.dumps(result))
    return 0
