"""`curate distill --method relabel`: real images, relabelled by a teacher. For each class, --ipc of the selection's
own images are kept, chosen by herding on their pixels (the images whose running mean stays closest to the class
mean) or at random (`--pick`); a teacher trained on the whole selection (as CDA's and SRe2L's) labels them with its
FKD soft crops (curate.distill.relabel), which distill-eval trains on. Nothing is synthesized: the set is the
baseline a distillation must beat, made with the same teacher and evaluated by the same protocol."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from curate.distill.source import LabelledImages
    from curate.distill.tesla import DistillResult


def _herding(data: LabelledImages, options: Any) -> np.ndarray:
    from curate.distill.baselines import herding

    return herding(data.images.flatten(1).numpy(), data.labels.numpy(), options.ipc)


def _random(data: LabelledImages, options: Any) -> np.ndarray:
    from curate.distill.baselines import random_real

    return random_real(data.labels.numpy(), options.ipc, options.seed)


# --pick: how a class's real images are chosen -> (selection, options) -> their rows, classes ascending.
PICKS: dict[str, Callable[[LabelledImages, Any], np.ndarray]] = {"herding": _herding, "random": _random}


def check_options(options: Any) -> None:
    """Raises UsageError (one line) for relabel settings no set can be made with."""
    from curate.distill.recover import check_teacher

    if options.pick not in PICKS:
        raise UsageError(f"unknown --pick {options.pick!r}; choose one of {', '.join(PICKS)}")
    check_teacher(options)


def distill_real(data: LabelledImages, options: Any, folder: Path, map_fn: Callable = map, progress: bool = False,
                 checkpoint_every: int = 100) -> DistillResult:
    """Trains (or reuses) the teacher, keeps --ipc real images per class and writes their soft crops; returns the
    set's DistillResult: the images in class order, hard labels, lr None, no losses. `map_fn`, `progress` and
    `checkpoint_every` are not used (one teacher, then one relabelling)."""
    import torch

    from curate.distill.recover import relabel_set, squeeze, teacher_seconds
    from curate.distill.tesla import DistillResult

    teacher = squeeze(data, options, folder)
    rows = torch.from_numpy(PICKS[options.pick](data, options))
    images, labels = data.images[rows].clone(), data.labels[rows].clone()
    seconds = teacher_seconds(teacher)
    if options.relabel_epochs:
        seconds += relabel_set(teacher, images, options, folder)
    return DistillResult(images, labels, None, [], seconds)
