"""Train a copy-detection descriptor on a run's own images (self-supervised: no labels, no captions)."""

import argparse
import json

from curate.options import positive_float, positive_int
from curate.outputs import Output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the train-copy-detector command's options."""
    from curate.copydetect.config import CopyTrainConfig
    from curate.copydetect.model import ARCHS

    d = CopyTrainConfig()
    add = parser.add_argument
    add("run", help="an ingested run folder")
    add("--out", required=True, help="folder for the model (copy_detector.json, model.safetensors); reruns resume")
    add("--epochs", type=positive_int, default=d.epochs, help=f"passes over the images (default {d.epochs})")
    add("--batch-size", type=positive_int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    add("--lr", type=positive_float, default=d.lr, help=f"peak AdamW learning rate (default {d.lr})")
    add("--temperature", type=positive_float, default=d.temperature, help=f"InfoNCE temperature ({d.temperature})")
    add("--koleo-weight", type=float, default=d.koleo_weight, help=f"KoLeo entropy weight (SSCD: {d.koleo_weight})")
    add("--image-size", type=positive_int, default=d.image_size, help=f"input side in px (default {d.image_size})")
    add("--dim", type=positive_int, default=d.dim, help=f"descriptor dimension (default {d.dim})")
    add("--arch", default=d.arch, choices=tuple(ARCHS), help=f"network (default {d.arch})")
    add("--width", type=positive_int, default=d.width, help=f"the tiny CNN's base width (default {d.width})")
    add("--max-images", type=positive_int, help="train on a random subset of this many images")
    add("--seed", type=int, default=d.seed, help="initialisation, order and augmentations (default 0)")
    add("--where", help="SQL predicate on the samples view choosing the training images (default: all)")
    add("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    add("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")


def run(args: argparse.Namespace) -> int:
    """Trains the descriptor and prints its summary as JSON; returns 0."""

    import torch

    from curate.cli.options import existing_run
    from curate.copydetect.config import CopyTrainConfig
    from curate.copydetect.train import train_copy_detector

    if args.threads:
        torch.set_num_threads(args.threads)
    config = CopyTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, temperature=args.temperature,
                             koleo_weight=args.koleo_weight, seed=args.seed, image_size=args.image_size, dim=args.dim,
                             arch=args.arch, width=args.width, max_images=args.max_images)
    run = existing_run(args.run)
    out = Output(protected=(run.path,)).check_place(args.out)
    summary = train_copy_detector(run, out, config, args.where, device=args.device)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return 0
