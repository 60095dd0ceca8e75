"""Train a data filtering network (DFN) on trusted image-text shards and write it as a model folder."""

import argparse
import json

from curate.errors import UsageError
from curate.options import positive_float, positive_int
from curate.outputs import Output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the train-dfn command's options."""
    from curate.models.dfn import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS

    parser.add_argument("inputs", nargs="+", help="trusted shards: paths, globs, brace ranges, folders or URLs")
    parser.add_argument("--out", required=True, help="model folder to write (holds trusted_run/; reruns resume)")
    parser.add_argument("--init", help="CLIP to fine-tune: open_clip name, hf-hub:org/repo or model folder "
                                       "(default: the tiny model from scratch)")
    parser.add_argument("--pretrained", help="with --init NAME: pretrained tag or checkpoint file")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS,
                        help=f"passes over the trusted pairs (default {DEFAULT_EPOCHS})")
    parser.add_argument("--samples-seen", type=positive_int,
                        help="train on exactly this many samples instead of --epochs passes")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, order and augmentation (default 0)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"pairs per step (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--lr", type=positive_float, help="peak learning rate (default 1e-3 scratch, 1e-5 --init)")
    parser.add_argument("--where", help="SQL predicate on the trusted samples (default: all of them)")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu or cuda")


def run(args: argparse.Namespace) -> int:
    """Trains the DFN and prints a summary as JSON; returns 0."""
    from curate.models import ModelSpec
    from curate.stages.training import train_dfn

    if args.pretrained is not None and args.init is None:
        raise UsageError("--pretrained needs --init MODEL (the tiny default trains from scratch)")
    init = None if args.init is None else ModelSpec(args.init, args.pretrained)
    out = Output().check_place(args.out)
    summary = train_dfn(
        args.inputs, out, init, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
        lr=args.lr, samples_seen=args.samples_seen, where=args.where, device=args.device,
    )
    print(json.dumps(summary))
    return 0
