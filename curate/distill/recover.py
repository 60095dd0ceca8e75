"""CDA and SRe2L as methods of `curate distill` (--method cda | sre2l; SRe2L is CDA without the curriculum):
squeeze a teacher, recover the slices through the runner's map, gather them into the set.

    RUN/distilled/<name>/
      teacher.safetensors    the batch-norm teacher (trained on the selection, or a --teacher-checkpoint's weights;
                             a rerun reuses it)
      slices/<i>.safetensors slice i's images and losses, written by its task as it finishes (a rerun recovers
                             only the slices it lacks)

Slice i is (IPC index i // groups, the classes of group i % groups), groups being the classes in order,
`class_batch` at a time (curate.distill.cda). With --runner ray each missing slice is a Ray task, which loads the
teacher from the set's folder and writes its slice there (the folder must be shared with the workers, as the run
folder is). The set has hard labels and no learned lr (distill-eval trains it at the protocol's default lr); its
seconds are the teacher's training plus every slice's recovery (compute, not wall time).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from curate.errors import UsageError
from curate.rundir import RunDir

if TYPE_CHECKING:
    import torch

    from curate.distill.cda import CDAConfig
    from curate.distill.source import LabelledImages
    from curate.distill.teacher import TeacherConfig
    from curate.distill.tesla import DistillResult

TEACHER = "teacher.safetensors"
SLICES = "slices"


def teacher_config(options: Any) -> TeacherConfig:
    """Returns the TeacherConfig of a set's DistillOptions."""
    from curate.distill.teacher import TeacherConfig

    return TeacherConfig(arch=options.teacher, epochs=options.teacher_epochs, lr=options.teacher_lr,
                         batch_size=options.teacher_batch, width=options.width, depth=options.depth)


def cda_config(options: Any) -> CDAConfig:
    """Returns the CDAConfig of a set's DistillOptions (curriculum 'none' for sre2l)."""
    from curate.distill.cda import CDAConfig

    return CDAConfig(iterations=options.iterations, lr=options.recover_lr, r_bn=options.r_bn,
                     first_bn_multiplier=options.first_bn_multiplier, jitter=options.jitter,
                     curriculum=options.curriculum, milestone=options.milestone, min_scale=options.min_scale,
                     class_batch=options.class_batch)


def check_options(options: Any) -> None:
    """Raises UsageError (one line) for CDA/SRe2L settings no recovery or teacher can run with."""
    if options.method == "sre2l" and options.curriculum != "none":
        raise UsageError(f"--method sre2l has no curriculum (it is CDA with --curriculum none), got --curriculum "
                         f"{options.curriculum}; use --method cda")
    try:
        cda_config(options).check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_teacher(options)


def check_teacher(options: Any) -> None:
    """Raises UsageError (one line) for teacher settings no teacher can be trained or loaded with, or TESLA's soft
    labels asked of a method whose labels are the teacher's."""
    from curate.distill.teacher import ARCHS

    if options.teacher not in ARCHS:
        raise UsageError(f"unknown --teacher {options.teacher!r}; choose one of {', '.join(ARCHS)}")
    if not options.teacher_lr > 0:
        raise UsageError(f"--teacher-lr must be positive, got {options.teacher_lr}")
    if options.teacher_checkpoint is not None and not Path(options.teacher_checkpoint).is_file():
        raise UsageError(f"--teacher-checkpoint {options.teacher_checkpoint} is not a file")
    if options.soft_labels:
        raise UsageError(f"--soft-labels is TESLA's; --method {options.method} relabels by the teacher on stored crops "
                         "(--relabel-epochs, 0 for hard labels only)")
    if not options.relabel_temperature > 0:
        raise UsageError(f"--relabel-temperature must be positive, got {options.relabel_temperature}")


def plan_slices(classes: int, ipc: int, class_batch: int) -> list[tuple[int, tuple[int, ...]]]:
    """Returns the slices in order: (IPC index, classes), every group of `class_batch` classes of IPC index 0, then
    of 1, ..."""
    groups = [tuple(range(start, min(start + class_batch, classes))) for start in range(0, classes, class_batch)]
    return [(index, group) for index in range(ipc) for group in groups]


def checkpoint_teacher(data: LabelledImages, options: Any) -> torch.nn.Module:
    """Returns the --teacher-checkpoint's teacher for the selection's shape; raises UsageError for a file that is not
    a checkpoint of that shape (what `curate distill` checks before it writes anything)."""
    from curate.distill.teacher import load_checkpoint

    config = teacher_config(options)
    return load_checkpoint(options.teacher_checkpoint, config.arch, data.images.shape[1], len(data.classnames),
                           data.images.shape[-1], config.width, config.depth)


def squeeze(data: LabelledImages, options: Any, folder: Path) -> Path:
    """Returns the path of the set's teacher, folder/teacher.safetensors: the one there when it fits the
    selection's shape and the options' architecture, else one trained now (or read from --teacher-checkpoint)."""
    from curate.distill.teacher import save_teacher, shape_meta, teacher_meta, train_teacher

    config, path = teacher_config(options), folder / TEACHER
    channels, classes, size = data.images.shape[1], len(data.classnames), data.images.shape[-1]
    meta = shape_meta(config, channels, classes, size) | {"seed": str(options.seed),
                                                           "checkpoint": str(options.teacher_checkpoint)}
    if path.exists() and all(teacher_meta(path).get(k) == v for k, v in meta.items()):
        return path
    began = time.perf_counter()
    if options.teacher_checkpoint is not None:
        model = checkpoint_teacher(data, options)
    else:
        black = [-m / s for m, s in zip(data.mean, data.std, strict=True)]
        model = train_teacher(data.images, data.labels, classes, config, options.seed, pad_value=black)
    seconds = time.perf_counter() - began
    return save_teacher(path, model, meta | {"seconds": str(seconds),
                                             "train_accuracy": str(train_accuracy(model, data))})


def train_accuracy(model: torch.nn.Module, data: LabelledImages, batch: int = 512) -> float:
    """Returns the teacher's top-1 accuracy on the selection's own (unaugmented) images."""
    import torch

    with torch.no_grad():
        predicted = torch.cat([model(data.images[i:i + batch]).argmax(1) for i in range(0, len(data.images), batch)])
    return float((predicted == data.labels).float().mean())


def slice_path(folder: Path, index: int) -> Path:
    """Returns the file of slice `index` of the set in `folder`."""
    return folder / SLICES / f"{index}.safetensors"


def _slice_meta(item: tuple[int, int, tuple[int, ...]], config: CDAConfig) -> dict[str, str]:
    index, ipc_index, classes = item
    return {"index": str(index), "ipc_index": str(ipc_index), "classes": json.dumps(list(classes)),
            "iterations": str(config.iterations)}


def is_complete(path: Path, meta: dict[str, str]) -> bool:
    """Returns whether `path` holds a finished slice whose metadata includes `meta`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stored = f.metadata() or {}
    except Exception:  # missing or unreadable: recover it again
        return False
    return all(stored.get(k) == v for k, v in meta.items())


def recover_saved(teacher_path: str, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                  config: CDAConfig, seed: int, folder: str, item: tuple[int, int, tuple[int, ...]]) -> str:
    """Recovers one slice, item = (slice index, IPC index, classes), with the teacher at `teacher_path`, and writes
    it atomically to its slice file in `folder`; returns that file's path. Picklable, for a Ray task."""
    import torch
    from safetensors.torch import save

    from curate.distill.cda import recover_slice
    from curate.distill.teacher import load_teacher

    index, ipc_index, classes = item
    result = recover_slice(load_teacher(teacher_path), classes, ipc_index, image_size, mean, std, config, seed)
    path = slice_path(Path(folder), index)
    tensors = {"images": result.images.contiguous(), "losses": torch.tensor(result.losses, dtype=torch.float64)}
    data = save(tensors, metadata=_slice_meta(item, config) | {"seconds": str(result.seconds)})
    return str(RunDir(path.parent).write_bytes(path.name, data))


def distill_cda(data: LabelledImages, options: Any, folder: Path, map_fn: Callable = map, progress: bool = False,
                checkpoint_every: int = 100) -> DistillResult:
    """Squeezes (or reuses) the teacher and recovers the slices the folder lacks through `map_fn(fn, items)` (the
    builtin map, or a runner's); returns the set's DistillResult: images in class order (each class's IPC indices in
    order), hard labels, lr None, the mean loss over slices of every iteration. Slices are the checkpoints:
    `checkpoint_every` is not used."""
    import torch
    from safetensors import safe_open

    from curate.distill.tesla import DistillResult

    config, classes = cda_config(options), len(data.classnames)
    teacher = squeeze(data, options, folder)
    items = [(i, index, group) for i, (index, group) in enumerate(plan_slices(classes, options.ipc,
                                                                            config.class_batch))]
    missing = [item for item in items if not is_complete(slice_path(folder, item[0]), _slice_meta(item, config))]
    work = functools.partial(recover_saved, str(teacher), data.images.shape[-1], tuple(data.mean), tuple(data.std),
                             config, options.seed, str(folder))
    for _ in tqdm(map_fn(work, missing), total=len(missing), desc="recover", disable=not progress):
        pass
    images = torch.empty(classes, options.ipc, *data.images.shape[1:])
    losses, seconds = torch.zeros(config.iterations, dtype=torch.float64), float(teacher_seconds(teacher))
    for i, index, group in items:
        with safe_open(str(slice_path(folder, i)), framework="pt") as f:
            images[list(group), index] = f.get_tensor("images")
            losses += f.get_tensor("losses") / len(items)
            seconds += float((f.metadata() or {}).get("seconds", 0))
    labels = torch.arange(classes).repeat_interleave(options.ipc)
    if options.relabel_epochs:
        seconds += relabel_set(teacher, images.flatten(0, 1), options, folder)
    return DistillResult(images.flatten(0, 1), labels, None, losses.tolist(), seconds)


def relabel_set(teacher: Path, images: torch.Tensor, options: Any, folder: Path) -> float:
    """Writes folder/relabel.safetensors: FKD soft labels of the recovered images by the teacher at `teacher`
    (curate.distill.relabel) for options.relabel_epochs student epochs; returns the seconds it took."""
    from curate.distill.relabel import RelabelConfig, relabel, write_relabel
    from curate.distill.teacher import load_teacher

    began = time.perf_counter()
    config = RelabelConfig(epochs=options.relabel_epochs, temperature=options.relabel_temperature, seed=options.seed)
    write_relabel(folder, relabel(load_teacher(teacher), images, config))
    return time.perf_counter() - began


def teacher_seconds(path: Path) -> float:
    """Returns the seconds the teacher at `path` took to train (or load), as its metadata records."""
    from curate.distill.teacher import teacher_meta

    return float(teacher_meta(path).get("seconds", 0))
