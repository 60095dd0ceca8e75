"""Subset selections the DQ benchmark compares, per class at equal per-class budgets, and the features they use.

Every method takes features (N x d), class labels and per-class budgets, and returns sorted row indices:
DQ (GraphCut bins, then the same share of each bin at random), one plain GraphCut coreset, k-center greedy, and a
uniform random draw. Features: image embeddings of a tiny CLIP trained from scratch on the training split (its
captions name the class), and the reference's gradient features (the last-layer gradient of the loss of a small
CNN trained briefly on the full training split: bias part softmax - onehot, weight part its outer product with
the penultimate activations).
"""

from __future__ import annotations

import numpy as np
import torch

from curate.concepts.quantization import graphcut_bins, graphcut_coreset, keep_counts, sample_bins


def class_budgets(labels: np.ndarray, fraction: float) -> dict[int, int]:
    """Returns per class how many samples every method keeps: int(N * fraction) in all, shared as DQ shares its
    bins (the same share of each class, largest remainders rounding up)."""
    classes, sizes = np.unique(labels, return_counts=True)
    return dict(zip(classes.tolist(), keep_counts(sizes, int(len(labels) * fraction)).tolist(), strict=True))


def dq(x: np.ndarray, labels: np.ndarray, budgets: dict[int, int], seed: int, bins: int = 10) -> np.ndarray:
    """Returns DQ's selection: GraphCut bins within each class, then the class's budget drawn evenly over them."""
    chosen = []
    for c, budget in budgets.items():
        rows = np.flatnonzero(labels == c)
        class_bins = [rows[b] for b in graphcut_bins(x[rows], bins)]
        counts = keep_counts(np.array([len(b) for b in class_bins]), budget, allow_empty=True)
        chosen.append(sample_bins(class_bins, counts, seed * 1000 + c))
    return np.sort(np.concatenate(chosen))


def graphcut(x: np.ndarray, labels: np.ndarray, budgets: dict[int, int], seed: int) -> np.ndarray:
    """Returns one GraphCut coreset of each class's budget (deterministic: the seed is unused)."""
    del seed
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[graphcut_coreset(x[labels == c], budget)]
                                   for c, budget in budgets.items()]))


def kcenter(x: np.ndarray, labels: np.ndarray, budgets: dict[int, int], seed: int) -> np.ndarray:
    """Returns k-center greedy per class on unit-normalized features: a random first center, then each time the
    sample farthest (Euclidean) from every center chosen so far."""
    rng = np.random.default_rng(seed)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    chosen = []
    for c, budget in budgets.items():
        rows = np.flatnonzero(labels == c)
        picks = [int(rng.integers(len(rows)))]
        distance = np.linalg.norm(x[rows] - x[rows[picks[0]]], axis=1)
        while len(picks) < budget:
            picks.append(int(np.argmax(distance)))
            distance = np.minimum(distance, np.linalg.norm(x[rows] - x[rows[picks[-1]]], axis=1))
        chosen.append(rows[picks])
    return np.sort(np.concatenate(chosen))


def uniform(x: np.ndarray, labels: np.ndarray, budgets: dict[int, int], seed: int) -> np.ndarray:
    """Returns each class's budget drawn uniformly at random."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), budget, replace=False)
                                   for c, budget in budgets.items()]))


SELECTIONS = {"dq": dq, "graphcut": graphcut, "kcenter": kcenter}  # the ones that read features


def gradient_features(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Returns the last-layer gradient features of a trained small CNN (a Sequential ending in its linear head)."""
    body, head = model[:-1], model[-1]
    with torch.inference_mode():
        hidden = torch.cat([body(images[i:i + 512]) for i in range(0, len(images), 512)])
        error = torch.softmax(head(hidden), dim=1) - torch.nn.functional.one_hot(labels, head.out_features).float()
    return torch.cat([error, (error[:, :, None] * hidden[:, None, :]).flatten(1)], dim=1).numpy()


def clip_features(pixels: np.ndarray, captions: list[str], seed: int, epochs: int = 10) -> np.ndarray:
    """Returns the image embeddings of the project's tiny CLIP trained from scratch on (pixels, captions)."""
    from curate.models.encode import encode_batch
    from curate.models.loading import DEFAULT_MODEL, scratch_model
    from curate.models.pairs import PairDataset
    from curate.models.train import TrainConfig, train_clip

    loaded = scratch_model(DEFAULT_MODEL, seed, "cpu")
    pairs = PairDataset([str(i) for i in range(len(pixels))], captions,
                        torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())
    train_clip(loaded, pairs, TrainConfig(epochs=epochs, batch_size=128, seed=seed, progress=False))
    return np.concatenate([encode_batch(loaded, pixels[i:i + 256], captions[i:i + 256])[0]
                           for i in range(0, len(pixels), 256)])
