"""Evaluation metrics as pure functions on NumPy arrays: a zero-shot classifier from prompt templates,
top-k accuracy and retrieval recall@k.

Ties are counted against the model: a query is a hit at k when fewer than k wrong candidates score at
least as high as its best right one. A model that scores everything equally therefore gets 0, never a
lucky ordering, and the result does not depend on how a sort breaks ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# CLIP-style prompts (a subset of the ImageNet ensemble of Radford et al. 2021) that suit any object class.
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a photo of the {}.",
    "a rendering of a {}.",
    "a drawing of a {}.",
)


def class_prompts(classnames: Sequence[str], templates: Sequence[str] = TEMPLATES) -> list[str]:
    """Returns the prompts class-major: classnames[0] in every template, then classnames[1], ..."""
    return [template.format(name) for name in classnames for template in templates]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def zeroshot_weights(text_embeddings: np.ndarray, templates: int) -> np.ndarray:
    """Returns the C x D zero-shot classifier from (C * templates) x D prompt embeddings in class-major order.

    Each prompt embedding is L2-normalized, the templates of a class are averaged, and the mean is
    L2-normalized again (CLIP's prompt ensembling).
    """
    emb = np.asarray(text_embeddings, dtype=np.float64)
    if templates < 1 or emb.ndim != 2 or emb.shape[0] % templates:
        raise ValueError(f"expected (classes * {templates}) x D embeddings, got shape {emb.shape}")
    per_class = _unit(emb).reshape(emb.shape[0] // templates, templates, emb.shape[1])
    return _unit(per_class.mean(axis=1))


def hits_at_k(scores: np.ndarray, positives: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Returns {k: fraction of queries (rows) with a positive among their top k candidates (columns)}.

    `scores` and `positives` (bool) are Q x M; every row needs at least one positive. Ties count against
    the query: its rank is the number of negatives scoring >= its best positive. k above M is capped at M.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.shape != positives.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} must be the same Q x M shape")
    if not positives.any(axis=1).all():
        raise ValueError("every query needs at least one positive")
    best = np.where(positives, scores, -np.inf).max(axis=1, keepdims=True)
    rank = ((scores >= best) & ~positives).sum(axis=1)
    return {k: float((rank < min(k, scores.shape[1])).mean()) for k in ks}


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Returns {k: top-k accuracy} of N x C class scores against N integer labels (ties count as wrong)."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    positives = np.zeros(logits.shape, dtype=bool)
    positives[np.arange(len(labels)), labels] = True
    return hits_at_k(logits, positives, ks)


def retrieval_recall(
    image: np.ndarray, text: np.ndarray, captions: Sequence[str], ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Returns image->text and text->image recall@k of N paired, L2-normalized embeddings.

    Keys: image_to_text_r{k}, text_to_image_r{k}. Pair i is image i with caption i; a caption whose text is
    identical to pair i's also counts as right for image i (identical texts embed identically, so they
    could only tie), and likewise every image paired with that text is right for the caption.
    """
    similarity = np.asarray(image, dtype=np.float64) @ np.asarray(text, dtype=np.float64).T
    _, ids = np.unique(np.asarray(list(captions), dtype=object), return_inverse=True)
    positives = ids[:, None] == ids[None, :]
    i2t = hits_at_k(similarity, positives, ks)
    t2i = hits_at_k(similarity.T, positives.T, ks)
    return {f"image_to_text_r{k}": i2t[k] for k in ks} | {f"text_to_image_r{k}": t2i[k] for k in ks}
