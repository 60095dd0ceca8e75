"""The tasks of benchmarks/distill.py: scikit-learn's digits and labelled synth images, standardized per channel
by the training split's statistics, and the way back to uint8 pixels for the image grids."""

import argparse
from pathlib import Path

import numpy as np
import torch
from common import ensure_synth

TASKS = ("digits", "synth")


def standardized(train: np.ndarray, test: np.ndarray) -> dict:
    """Returns uint8 N x S x S x 3 pixels as float N x 3 x S x S tensors standardized per channel by the training
    split's statistics, with those statistics (for the image grids)."""
    x, t = (torch.from_numpy(p).permute(0, 3, 1, 2).float().div(255) for p in (train, test))
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return dict(images=(x - mean) / std, test_images=(t - mean) / std, mean=mean, std=std)


def zca_whitened(task: dict, eps: float) -> dict:
    """Returns the task with its images ZCA-whitened as the MTT/TESLA reference's --zca (kornia's ZCAWhitening,
    eps 0.1 there): pixels in [0, 1], centred by the training mean, times U diag(1 / sqrt(S + eps)) U^T of the
    training split's (unbiased) pixel covariance; the mean, matrix and inverse kept in task["zca"]."""
    unit = [(task[key] * task["std"] + task["mean"]).flatten(1).double() for key in ("images", "test_images")]
    centre = unit[0].mean(0)
    values, vectors = torch.linalg.eigh(torch.cov((unit[0] - centre).T))
    values = values.clamp_min(0)
    matrix = vectors @ torch.diag((values + eps).rsqrt()) @ vectors.T
    inverse = vectors @ torch.diag((values + eps).sqrt()) @ vectors.T
    shape = task["images"].shape[1:]
    whitened = [((x - centre) @ matrix).float().reshape(-1, *shape) for x in unit]
    return task | dict(images=whitened[0], test_images=whitened[1], zca=(centre, inverse))


def to_pixels(images: torch.Tensor, task: dict) -> np.ndarray:
    """Returns standardized (or ZCA-whitened) N x 3 x S x S images as uint8 N x S x S x 3 pixels (un-standardized
    by the task's statistics, clipped to [0, 255])."""
    images = images.detach().cpu()
    if "zca" in task:
        centre, inverse = task["zca"]
        unit = (images.flatten(1).double() @ inverse + centre).float().reshape(images.shape)
    else:
        unit = images * task["std"] + task["mean"]
    return unit.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def digits_task(args: argparse.Namespace) -> dict:
    """Returns the digits task: standardized train/test tensors, labels, classes, class names, statistics."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    factor = args.size // 8
    pixels = np.repeat((digits.images * (255 / 16)).round().astype(np.uint8)[..., None], 3, axis=3)
    pixels = pixels.repeat(factor, axis=1).repeat(factor, axis=2)
    rng = np.random.default_rng(0)
    test = np.zeros(len(pixels), dtype=bool)
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(digits.target == c))
        test[rows[: len(rows) // 3]] = True
    return standardized(pixels[~test], pixels[test]) | dict(
        labels=torch.as_tensor(digits.target[~test]), test_labels=torch.as_tensor(digits.target[test]), classes=10,
        classnames=[str(c) for c in range(10)])


def synth_task(args: argparse.Namespace) -> dict:
    """Returns the synth task (as digits_task), generated into args.work the first time."""
    from curate.models.heldout import load_heldout

    train = load_heldout(ensure_synth(args.work / f"synth-train-{args.per_class}", 4, hq_samples=0, seed=1,
                                      heldout_per_concept=args.per_class) / "heldout.parquet", args.synth_size)
    test = load_heldout(ensure_synth(args.work / "synth-test-50", 4, hq_samples=0, seed=2,
                                     heldout_per_concept=50) / "heldout.parquet", args.synth_size)
    position = {name: i for i, name in enumerate(train.classnames)}
    test_labels = np.array([position[test.classnames[label]] for label in test.labels])
    keep, keep_test = train.labels < args.classes, test_labels < args.classes
    return standardized(train.pixels[keep], test.pixels[keep_test]) | dict(
        labels=torch.as_tensor(train.labels[keep]), test_labels=torch.as_tensor(test_labels[keep_test]),
        classes=args.classes, classnames=list(train.classnames[:args.classes]))


def expert_embedding(task: dict, path: Path) -> np.ndarray:
    """Returns the penultimate (flattened last-block) features of the expert at `path` after its last epoch."""
    from curate.distill.convnet import ConvNetSpec, convnet, load_flat
    from curate.distill.experts import load_trajectory

    images = task["images"]
    spec = ConvNetSpec(images.shape[1], task["classes"], images.shape[-1])
    model = load_flat(convnet(spec), load_trajectory(path)[-1]).eval()
    with torch.inference_mode():
        return torch.cat([model[:-1](images[i:i + 512]) for i in range(0, len(images), 512)]).numpy()


def load_task(name: str, args: argparse.Namespace) -> dict:
    """Returns the task `name` (one of TASKS) at the options' sizes, ZCA-whitened when args.zca is set."""
    task = digits_task(args) if name == "digits" else synth_task(args)
    return zca_whitened(task, args.zca) if getattr(args, "zca", None) is not None else task
