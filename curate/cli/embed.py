"""Compute L2-normalized CLIP image and text embeddings of a run's samples (GPU actors on Ray when there are GPUs)."""

import argparse
import json

from curate.cli.options import add_model_arguments, add_runner_arguments, existing_run, model_spec, runner_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the embed command's options."""
    parser.add_argument("run", help="an ingested run folder")
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=256, help="samples per model batch (default 256)")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu or cuda")
    add_runner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Embeds the run and prints the count as JSON; returns 0."""
    from curate.stages.embed import embed

    counts = embed(existing_run(args.run), model_spec(args), runner_from(args), args.batch_size, args.device)
    print(json.dumps(counts))
    return 0
