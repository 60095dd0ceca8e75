"""Compute L2-normalized CLIP image and text embeddings of a run's samples (GPU actors on Ray when there are GPUs),
or with --as NAME copy-detection descriptors beside them."""

import argparse
import json

from curate.cli.options import (
    add_model_arguments,
    add_runner_arguments,
    add_trust_argument,
    existing_run,
    model_spec,
    runner_from,
)
from curate.io.schema import EMBEDDING_DTYPES
from curate.options import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the embed command's options."""
    parser.add_argument("run", help="an ingested run folder")
    add_model_arguments(parser)
    parser.add_argument("--as", dest="as_name", metavar="NAME",
                        help="--model is a copy-descriptor model (a train-copy-detector folder, an SSCD state-dict "
                             "file, or a TorchScript file with --trust-torchscript): write descriptor set NAME (e.g. "
                             "copy) beside the CLIP embeddings")
    add_trust_argument(parser)
    parser.add_argument("--image-size", type=positive_int,
                        help="with --as: the descriptor's input side (default: the model's; SSCD files 288)")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per model batch (default 256)")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu or cuda")
    parser.add_argument("--dtype", choices=tuple(EMBEDDING_DTYPES), default="float32",
                        help="how the embeddings are stored: float32, or float16 (half the disk and reads for the "
                             "whole-pool stages, values within 1e-3)")
    add_runner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Embeds (or describes) the run and prints the count as JSON; returns 0."""
    from curate.errors import UsageError

    run_dir = existing_run(args.run)
    if args.as_name is not None:
        from curate.stages.describe import describe

        if args.pretrained is not None:
            raise UsageError("--pretrained is for CLIP models; with --as give the descriptor's folder or file as "
                             "--model")
        if args.dtype != "float32":
            raise UsageError("--dtype applies to CLIP embeddings; descriptor sets are stored as float32")
        counts = describe(run_dir, args.model, args.as_name, runner_from(args), args.batch_size, args.device,
                          args.image_size, args.trust_torchscript)
    else:
        from curate.stages.embed import embed

        if args.image_size is not None:
            raise UsageError("--image-size applies to descriptors (--as NAME); a CLIP model's input size is its own")
        if args.trust_torchscript:
            raise UsageError("--trust-torchscript applies to descriptors (--as NAME); CLIP checkpoints load as "
                             "weights only")
        counts = embed(run_dir, model_spec(args), runner_from(args), args.batch_size, args.device, args.dtype)
    print(json.dumps(counts))
    return 0
