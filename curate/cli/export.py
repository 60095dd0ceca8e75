"""Export the samples matching a SQL predicate as WebDataset, Parquet, a DataComp uid file or a HF dataset."""

import argparse
import json
import sys

from curate.options import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the export command's options."""
    from curate.export import EXPORT_FORMATS

    parser.add_argument("run", help="run folder (or, with --reconstruct, a patch-drop export folder)")
    parser.add_argument("--where", help="SQL predicate on the samples view (default: every sample)")
    parser.add_argument("--distilled", metavar="NAME",
                        help="export the distilled set RUN/distilled/NAME instead (webdataset or hf)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--out", required=True, help="folder to create")
    parser.add_argument("--shard-size", type=positive_int, default=10000, help="samples per output shard")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--patch-drop", type=float, metavar="F",
                        help="webdataset only: drop this fraction [0, 1) of each image's least salient patches "
                             "(ranked by the run's CLIP) and store the kept ones and a mask; needs --mae")
    parser.add_argument("--mae", metavar="MODEL",
                        help="masked autoencoder for --patch-drop/--reconstruct: an MAE .pth or `curate train-mae` "
                             "folder (its input size and patch size decide the patch grid)")
    parser.add_argument("--reconstruct", action="store_true",
                        help="write the MAE's rebuilt images as a plain webdataset: from a run with --patch-drop, "
                             "or from a patch-drop export folder")
    parser.add_argument("--device", default="auto", help="for --patch-drop/--reconstruct: auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    """Exports the selection and prints a summary as JSON; returns 0."""
    from curate.api import open as open_run
    from curate.errors import UsageError
    from curate.export import patch_export_summary, reconstruct_export

    if args.distilled is not None:
        return _export_distilled(args)
    if patch_export_summary(args.run) is not None:
        if not args.reconstruct or args.mae is None or args.patch_drop is not None or args.where is not None:
            raise UsageError(f"{args.run} is a patch-drop export: rebuild it with --reconstruct --mae MODEL "
                             "(without --patch-drop or --where)")
        if args.format != "webdataset":
            raise UsageError(f"--reconstruct writes webdataset tars only, not --format {args.format}")
        summary = reconstruct_export(args.run, args.mae, args.out, args.shard_size, args.overwrite,
                                     device=args.device)
        print(json.dumps(summary, default=str))
        return 0
    samples = open_run(args.run).samples(args.where)
    summary = samples.export(args.out, args.format, args.shard_size, args.overwrite, patch_drop=args.patch_drop,
                             mae=args.mae, reconstruct=args.reconstruct, device=args.device)
    print(json.dumps(summary, default=str))
    for reason, count in summary["skipped_reasons"].items():
        print(f"curate: skipped {count} selected samples: {reason}", file=sys.stderr)
    return 0


def _export_distilled(args: argparse.Namespace) -> int:
    """Exports a distilled set and prints the summary as JSON; returns 0."""
    from curate.cli.options import existing_run
    from curate.distill.output import export_distilled
    from curate.errors import UsageError

    if args.where is not None or args.patch_drop is not None or args.reconstruct:
        raise UsageError("--distilled exports the whole set: it takes no --where, --patch-drop or --reconstruct")
    summary = export_distilled(existing_run(args.run), args.distilled, args.format, args.out, args.overwrite)
    print(json.dumps(summary, default=str))
    return 0
