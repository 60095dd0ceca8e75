"""Train a small masked autoencoder (MAE) from scratch on shards' images, for patch-drop exports."""

import argparse
import json

from curate.options import positive_float, positive_int
from curate.outputs import Output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the train-mae command's options."""
    from curate.models.mae_config import MAEConfig, MAETrainConfig

    model, train = MAEConfig(), MAETrainConfig()
    parser.add_argument("inputs", nargs="+", help="shards with images: paths, globs, brace ranges, folders or URLs")
    parser.add_argument("--out", required=True, help="folder to write mae.pth and train_info.json (reruns resume "
                                                     "the ingest)")
    parser.add_argument("--image-size", type=positive_int, default=model.img_size,
                        help=f"square input side in pixels (default {model.img_size})")
    parser.add_argument("--patch-size", type=positive_int, default=model.patch_size,
                        help=f"patch side in pixels, dividing --image-size (default {model.patch_size})")
    parser.add_argument("--width", type=positive_int, default=model.embed_dim,
                        help=f"encoder width, a multiple of 64 (default {model.embed_dim}; decoder: half)")
    parser.add_argument("--depth", type=positive_int, default=model.depth,
                        help=f"encoder blocks (default {model.depth})")
    parser.add_argument("--steps", type=positive_int, default=train.steps, help=f"steps (default {train.steps})")
    parser.add_argument("--batch-size", type=positive_int, default=train.batch_size,
                        help=f"images per step (default {train.batch_size})")
    parser.add_argument("--lr", type=positive_float, default=train.lr, help=f"peak learning rate (default {train.lr})")
    parser.add_argument("--mask-ratio", type=float, default=train.mask_ratio,
                        help=f"fraction of patches hidden per image, in (0, 1) (default {train.mask_ratio})")
    parser.add_argument("--norm-pix-loss", action="store_true",
                        help="MAE's per-patch normalized target (better features, approximate colours on rebuild)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, order, masks, augmentation (default 0)")
    parser.add_argument("--where", help="SQL predicate on the ingested samples (default: all of them)")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu or cuda")


def run(args: argparse.Namespace) -> int:
    """Trains the MAE and prints a summary as JSON; returns 0."""

    from curate.errors import UsageError
    from curate.models.mae_config import MAEConfig, MAETrainConfig
    from curate.models.mae_io import default_heads
    from curate.stages.training import train_mae

    if args.image_size % args.patch_size:
        raise UsageError(f"--patch-size {args.patch_size} must divide --image-size {args.image_size}")
    if args.width % 64:
        raise UsageError(f"--width must be a multiple of 64, got {args.width}")
    if not 0 < args.mask_ratio < 1:
        raise UsageError(f"--mask-ratio must be in (0, 1), got {args.mask_ratio}")
    decoder = args.width // 2
    model = MAEConfig(img_size=args.image_size, patch_size=args.patch_size, embed_dim=args.width, depth=args.depth,
                      num_heads=default_heads(args.width, False), decoder_embed_dim=decoder,
                      decoder_num_heads=default_heads(decoder, True), norm_pix_loss=args.norm_pix_loss)
    config = MAETrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, mask_ratio=args.mask_ratio,
                            seed=args.seed)
    out = Output().check_place(args.out)
    summary = train_mae(args.inputs, out, model, config, where=args.where, device=args.device)
    print(json.dumps(summary))
    return 0
