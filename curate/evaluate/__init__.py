"""Measuring what curation buys: train a CLIP from scratch on a selected subset at a fixed budget of samples
seen (DataComp's fixed compute), then score it on a held-out set (zero-shot accuracy, retrieval recall).

`evaluate_subset(run, where, heldout)` does it all; `load_heldout` and the metric functions stand alone.
"""

from curate.evaluate.metrics import (
    TEMPLATES,
    class_prompts,
    hits_at_k,
    retrieval_recall,
    topk_accuracy,
    zeroshot_weights,
)
from curate.evaluate.run import DEFAULT_SAMPLES_SEEN, evaluate_subset
from curate.models.heldout import HeldOut, load_heldout

__all__ = [
    "DEFAULT_SAMPLES_SEEN", "TEMPLATES", "HeldOut", "class_prompts", "evaluate_subset", "hits_at_k",
    "load_heldout", "retrieval_recall", "topk_accuracy", "zeroshot_weights",
]
