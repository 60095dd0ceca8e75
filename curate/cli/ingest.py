"""Ingest WebDataset tars, Parquet image shards or DataComp metadata into a run folder and its catalog."""

import argparse
import json

from curate.cli.options import add_runner_arguments, runner_from
from curate.io.images import DEFAULT_MAX_ASPECT, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from curate.io.inputs import INPUT_FORMATS
from curate.io.samples import DEFAULT_MAX_CAPTION_BYTES, DEFAULT_MAX_MEMBER_BYTES, ReadOptions
from curate.io.schema import EMBEDDING_DTYPES
from curate.options import add_options, options_from, positive_float, positive_int
from curate.rundir import RunDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the ingest command's options."""
    parser.add_argument("inputs", nargs="+", help="shards: paths, globs, brace ranges, folders or fsspec URLs")
    parser.add_argument("--run", required=True, help="run folder to write (reruns resume it)")
    add_runner_arguments(parser)
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default="auto")
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help=f"larger images are quarantined as decompression bombs (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--max-image-side", type=positive_int, default=DEFAULT_MAX_SIDE,
                        help=f"images with a longer side are quarantined (default {DEFAULT_MAX_SIDE})")
    parser.add_argument("--max-aspect-ratio", type=positive_float, default=DEFAULT_MAX_ASPECT,
                        help=f"images more elongated are quarantined (default {DEFAULT_MAX_ASPECT:g})")
    parser.add_argument("--max-member-bytes", type=positive_int, default=DEFAULT_MAX_MEMBER_BYTES,
                        help=f"larger tar members are quarantined unread (default {DEFAULT_MAX_MEMBER_BYTES})")
    parser.add_argument("--max-caption-bytes", type=positive_int, default=DEFAULT_MAX_CAPTION_BYTES,
                        help="longer captions (UTF-8 bytes) are quarantined, a tar's .txt member unread (default "
                             f"{DEFAULT_MAX_CAPTION_BYTES}: web alt-texts run to a few kB, DataComp's longest too)")
    parser.add_argument("--image-column", help="Parquet shards: column of image bytes (default: detect)")
    parser.add_argument("--caption-column", help="Parquet shards: caption column (default: detect)")
    parser.add_argument("--key-column", help="Parquet shards: key column (default: key, else row index)")
    parser.add_argument("--datacomp-embeddings", choices=("l14", "b32"), default="l14",
                        help="which DataComp .npz embeddings to ingest (default l14)")
    parser.add_argument("--dtype", choices=tuple(EMBEDDING_DTYPES), default="float32",
                        help="how DataComp .npz embeddings are stored in the run: float32, or float16 (the .npz's "
                             "own type: half the disk and reads for the whole-pool stages, values within 1e-3)")
    add_options(parser, ReadOptions)  # the shards' own columns: --columns, --json-columns, --rename


def run(args: argparse.Namespace) -> int:
    """Ingests the inputs and prints the accounting counts as JSON; returns 0."""
    from curate.stages.ingest import ingest

    options = options_from(
        ReadOptions, args, max_pixels=args.max_pixels, max_side=args.max_image_side, max_aspect=args.max_aspect_ratio,
        max_member_bytes=args.max_member_bytes, max_caption_bytes=args.max_caption_bytes,
        image_column=args.image_column, caption_column=args.caption_column,
        key_column=args.key_column, datacomp_embeddings=args.datacomp_embeddings, embedding_dtype=args.dtype,
    )
    counts = ingest(args.inputs, RunDir(args.run), runner_from(args), options, args.input_format)
    print(json.dumps(counts))
    return 0
