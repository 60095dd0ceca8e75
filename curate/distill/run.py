"""Distilling a run's labelled selection into RUN/distilled/<name>/: check the options, run the method (TESLA: train
the expert trajectories, then distill from a checkpoint; CDA and SRe2L: train a teacher, then recover slices,
curate.distill.recover; each resumable) and write the set (curate.distill.output).

    RUN/distilled/<name>/
      options.json     the options, once the request is checked (a rerun with others is refused)
      source.json      the versions of the stages its selection reads (a resume on changed ones is refused)
      experts/         TESLA: expert_<i>.safetensors trajectories (a rerun skips the complete ones)
      checkpoint.pt    TESLA: the distillation's own checkpoint (a rerun resumes from it)
      teacher.safetensors, slices/  CDA, SRe2L: the teacher and the recovered slices (a rerun reuses them)
      shards/*.tar     the synthetic images as WebDataset: <key>.png, <key>.cls, <key>.json
      labels.parquet   name, key, class, classname, soft_label, path (tar, relative to RUN), member
      images.safetensors  the learned images as floats, unclipped (what `curate distill-eval` trains on)
      distilled.json   options, method, learned lr, source selection, classnames, seconds (written last: done)

A distilled set is not a stage of the run's stage graph: it adds no column to `samples`, and rerunning a filter
its --where read must not delete hours of distillation. It records the versions of the stages its predicate read
instead, and the catalog's `distilled` view lists every finished set.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.distill.layout import OPTIONS, RESULT, SOURCE, distilled_sets, set_folder
from curate.distill.realset import PICKS
from curate.errors import UsageError
from curate.options import non_negative_int, option, option_fields, option_methods, positive_int
from curate.rundir import RunDir

if TYPE_CHECKING:
    from curate.distill.source import LabelledImages
    from curate.distill.tesla import DistillResult
    from curate.runners import Runner

__all__ = ["METHODS", "DistillOptions", "distill_run", "distilled_sets", "expert_map", "label_stages", "set_folder",
           "stage_versions"]


# The methods that take a setting: TESLA's, the recovering ones' (curate.distill.recover), those with a teacher
# (the recovering ones and relabel, curate.distill.realset), those that iterate.
TESLA, RECOVERY = ("tesla",), ("cda", "sre2l")
TEACHER, ITERATING = (*RECOVERY, "relabel"), (*TESLA, *RECOVERY)


@dataclass(frozen=True)
class DistillOptions:
    """Everything that decides a distilled set: the source (predicate, image size, and the labels: a samples
    column, or the class names of zero-shot labels by the run's embedding model, curate.distill.zeroshot), the
    method and its settings, each an `option` naming the methods that take it: TESLA's and its experts' (reference
    defaults, curate.distill.tesla), or CDA's and SRe2L's teacher and recovery (curate.distill.teacher,
    curate.distill.cda). The `curate distill` flags, pipelines/distill.py's and the refusal of another method's
    settings come from these fields. `iterations` and `curriculum` left None take the method's default."""

    label_column: str | None = None
    zeroshot_classes: tuple[str, ...] | None = None
    where: str | None = None
    method: str = "tesla"
    ipc: int = option(10, "synthetic images per class", type=positive_int)
    image_size: int = option(32, "side the real images are decoded to (center crop)", type=positive_int)
    experts: int = option(5, "expert trajectories to train", type=positive_int, methods=TESLA)
    expert_epochs: int = option(50, "epochs each expert trains", type=positive_int, methods=TESLA)
    iterations: int | None = option(None, "distillation iterations; for cda and sre2l, recovery iterations of each "
                                    "image (default 5000 for tesla, 1000 for cda and sre2l)", type=positive_int,
                                    methods=ITERATING)
    syn_steps: int = option(20, "student steps on the synthetic images per iteration", type=positive_int,
                            methods=TESLA)
    expert_epochs_match: int = option(3, "expert epochs the student steps must match", type=positive_int,
                                      methods=TESLA)
    max_start_epoch: int = option(25, "start epochs are drawn below this", type=positive_int, methods=TESLA)
    lr_img: float = option(1000.0, "learning rate of the synthetic pixels", methods=TESLA)
    lr_lr: float = option(1e-5, "learning rate of the learned student learning rate", methods=TESLA)
    lr_teacher: float = option(0.01, "initial student learning rate", methods=TESLA)
    batch_syn: int | None = option(None, "synthetic images per student step (default: all)", type=positive_int,
                                   methods=TESLA)
    soft_labels: bool = option(False, "learn against the experts' soft labels")
    width: int = option(128, "ConvNet width of the experts and the student", type=positive_int)
    depth: int = option(3, "ConvNet depth", type=positive_int)
    seed: int = option(0, "seed of every random choice")
    teacher: str = option("resnet18", "the batch-norm teacher, resnet18 (small-image) or convnet (ConvNet with BN, "
                          "--width/--depth)", methods=TEACHER)
    teacher_epochs: int = option(200, "epochs the teacher trains", type=positive_int, methods=TEACHER)
    teacher_lr: float = option(0.1, "the teacher's SGD learning rate (cosine)", methods=TEACHER)
    teacher_batch: int = option(128, "the teacher's batch", type=positive_int, methods=TEACHER)
    teacher_checkpoint: str | None = option(None, "a PyTorch state_dict FILE of the --teacher architecture over the "
                                            "selection's classes, used instead of training one", methods=TEACHER)
    recover_lr: float = option(0.25, "Adam learning rate of the pixels (cosine)", methods=RECOVERY)
    r_bn: float = option(0.01, "weight of the BN-statistics matching loss", methods=RECOVERY)
    first_bn_multiplier: float = option(10.0, "extra weight of the first BN layer", methods=RECOVERY)
    jitter: int = option(4, "largest random roll, in pixels", methods=RECOVERY)
    curriculum: str | None = option(None, "how the crop's lower scale bound falls from 1 to --min-scale: cosine, "
                                    "linear, step or none (default cosine for cda, none for sre2l)",
                                    methods=RECOVERY)
    milestone: float = option(1.0, "share of the iterations by which the curriculum reaches --min-scale",
                              methods=RECOVERY)
    min_scale: float = option(0.08, "the crop's lowest scale bound", methods=RECOVERY)
    class_batch: int = option(100, "classes recovered together (sharing BN statistics) in one slice",
                              type=positive_int, methods=RECOVERY)
    relabel_epochs: int = option(300, "student epochs of FKD soft labels (the teacher's logits on stored crops; 0: "
                                 "hard labels only)", type=non_negative_int, methods=TEACHER)
    relabel_temperature: float = option(20.0, "the soft labels' KD temperature", methods=TEACHER)
    pick: str = option("herding", "how each class's real images are chosen: herding on their pixels, or random",
                       choices=tuple(PICKS), methods=("relabel",))

    def __post_init__(self) -> None:
        if self.iterations is None:
            object.__setattr__(self, "iterations", ITERATIONS.get(self.method))
        if self.curriculum is None and self.method in RECOVERY:
            object.__setattr__(self, "curriculum", "none" if self.method == "sre2l" else "cosine")

    def check(self) -> None:
        """Raises UsageError for options no distillation can run with."""
        from curate.distill.source import ONE_LABEL_SOURCE
        from curate.distill.zeroshot import check_classes

        if (self.label_column is None) == (self.zeroshot_classes is None):
            raise UsageError(ONE_LABEL_SOURCE)
        if self.zeroshot_classes is not None:
            if isinstance(self.zeroshot_classes, str):
                raise UsageError("zeroshot_classes must be a sequence of class names, not one string")
            check_classes(self.zeroshot_classes)
        if self.method not in METHODS:
            raise UsageError(f"unknown --method {self.method!r}; choose one of {', '.join(METHODS)}")
        for field in option_fields(DistillOptions):  # the command line's parsers check them; Python's callers not
            value, flag = getattr(self, field.name), f"--{field.name.replace('_', '-')}"
            if field.metadata["type"] is positive_int and value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        defaults = DistillOptions(method=self.method)  # a None default resolved for the method, as this one's
        for field in self._others():
            if getattr(self, field.name) != getattr(defaults, field.name):
                methods = option_methods(field)
                named = " and ".join([", ".join(methods[:-1]), methods[-1]] if len(methods) > 1 else methods)
                raise UsageError(f"--{field.name.replace('_', '-')} is a setting of --method {named}, not "
                                 f"{self.method}")
        if self.method in CHECKS:
            importlib.import_module(CHECKS[self.method]).check_options(self)
            return
        if self.max_start_epoch + self.expert_epochs_match > self.expert_epochs:
            raise UsageError(f"--max-start-epoch {self.max_start_epoch} + --expert-epochs-match "
                             f"{self.expert_epochs_match} exceeds the experts' --expert-epochs {self.expert_epochs}")

    def _others(self) -> list[dataclasses.Field]:
        """Returns the option fields that are other methods' settings."""
        return [f for f in option_fields(DistillOptions) if option_methods(f) and self.method not in option_methods(f)]

    def as_dict(self) -> dict[str, Any]:
        """Returns the options as a JSON-ready dict without the other methods' settings (so a TESLA set's is what
        it was before CDA) and without zeroshot_classes when the labels are a column (as sets made before zero-shot
        labels recorded them)."""
        others = {f.name for f in self._others()}
        options = {k: v for k, v in dataclasses.asdict(self).items() if k not in others}
        classes = options.pop("zeroshot_classes")
        return options if classes is None else options | {"zeroshot_classes": list(classes)}


ITERATIONS = {"tesla": 5000, "cda": 1000, "sre2l": 1000}  # --iterations when not given


def _tesla(data: LabelledImages, options: DistillOptions, folder: Path, map_fn: Callable = map,
           progress: bool = False, checkpoint_every: int = 100) -> DistillResult:
    """Trains the experts (folder/experts) and runs TESLA against them; returns its DistillResult."""
    from curate.distill.experts import ExpertConfig, train_experts
    from curate.distill.tesla import TeslaConfig, distill

    classes = len(data.classnames)
    expert_config = ExpertConfig(epochs=options.expert_epochs, width=options.width, depth=options.depth)
    paths = train_experts(data.images, data.labels, classes, expert_config, folder / "experts", options.experts,
                          options.seed, map_fn)
    config = TeslaConfig(ipc=options.ipc, iterations=options.iterations, syn_steps=options.syn_steps,
                         expert_epochs=options.expert_epochs_match, max_start_epoch=options.max_start_epoch,
                         lr_img=options.lr_img, lr_lr=options.lr_lr, lr_teacher=options.lr_teacher,
                         batch_syn=options.batch_syn, soft_labels=options.soft_labels, width=options.width,
                         depth=options.depth, seed=options.seed, progress=progress,
                         checkpoint_every=checkpoint_every)
    return distill(data.images, data.labels, classes, paths, config, folder=folder)


def _recover(data: LabelledImages, options: DistillOptions, folder: Path, map_fn: Callable = map,
             progress: bool = False, checkpoint_every: int = 100) -> DistillResult:
    """Squeezes a teacher and recovers the set from it (CDA, or SRe2L without the curriculum); returns its
    DistillResult."""
    from curate.distill.recover import distill_cda

    return distill_cda(data, options, folder, map_fn, progress, checkpoint_every)


def _real(data: LabelledImages, options: DistillOptions, folder: Path, map_fn: Callable = map,
          progress: bool = False, checkpoint_every: int = 100) -> DistillResult:
    """Keeps real images relabelled by the teacher (curate.distill.realset); returns its DistillResult."""
    from curate.distill.realset import distill_real

    return distill_real(data, options, folder, map_fn, progress, checkpoint_every)


# A method: (labelled images, options, set folder, map_fn for parallel work, progress, checkpoint_every) ->
# DistillResult, resuming from what the folder holds.
METHODS: dict[str, Callable[..., DistillResult]] = {"tesla": _tesla, "cda": _recover, "sre2l": _recover,
                                                    "relabel": _real}
# method -> the module whose check_options(options) checks its own settings (TESLA's are checked here).
CHECKS = {"cda": "curate.distill.recover", "sre2l": "curate.distill.recover", "relabel": "curate.distill.realset"}


def expert_map(runner: str | Runner, desc: str = "experts") -> Callable:
    """Returns the map_fn of a method's parallel work (experts, recovered slices): the builtin map (one after
    another, each saved as it finishes) for the local runner, else the runner's map (Ray tasks), whose results
    arrive together."""
    from curate.runners import as_runner

    if runner == "local" or getattr(runner, "name", None) == "local":
        return map
    chosen = as_runner(runner)
    return lambda fn, items: chosen.map(_apply, fn, list(items), desc=desc)


def _apply(fn: Callable, item: Any) -> Any:
    return fn(item)


def distill_run(run: RunDir, name: str, options: DistillOptions, runner: str | Runner = "local",
                progress: bool = False, checkpoint_every: int = 100) -> dict:
    """Distills the run's selection into RUN/distilled/<name>/ (resuming an interrupted one with the same options)
    and rebuilds the catalog; returns the set's distilled.json contents, plus `folder`. Raises UsageError for bad
    options, other options than the set was made with, a class with fewer than ipc images, no labelled images or
    a teacher checkpoint that does not fit (such a refusal writes nothing). `checkpoint_every` (iterations) decides
    only how much an interruption loses, not the result."""
    from curate.distill.output import write_set

    options.check()
    folder = set_folder(run, name)
    if not (run.path / "manifest.json").exists():
        raise UsageError(f"{run.path} is not a run folder; run `curate ingest INPUTS --run RUN` first")
    finished = _finished(run, folder, options)
    if finished is not None:
        return finished
    data = _selection(run, options, progress)  # before the set's folder exists: a refusal leaves no file behind
    with RunDir(folder).writing():
        finished = _finished(run, folder, options)  # another process may have finished it meanwhile
        if finished is not None:
            return finished
        _check_source(run, folder, options)
        RunDir(folder).write_json(OPTIONS, options.as_dict())
        work = expert_map(runner, "experts" if options.method == "tesla" else "slices")
        result = METHODS[options.method](data, options, folder, work, progress, checkpoint_every)
        summary = write_set(run, folder, name, data, result, options.as_dict(), _source(run, options, data))
    return summary | {"folder": str(folder)}


def _finished(run: RunDir, folder: Path, options: DistillOptions) -> dict | None:
    """Returns the finished set's distilled.json plus `folder` when the folder holds one made with `options`, after
    rebuilding the catalog so it lists the set (its last build may have failed); else None. Raises UsageError when
    the folder's set was made with other options."""
    from curate.catalogs import build_catalog

    if not (folder / OPTIONS).exists():
        return None
    before, now = json.loads((folder / OPTIONS).read_text()), options.as_dict()
    if before != now:
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        raise UsageError(f"{folder} was distilled with other options ({', '.join(changed)} differ); pick another "
                         "--name, or remove the folder to redo it")
    if not (folder / RESULT).exists():
        return None
    with run.writing():
        build_catalog(run)
    return json.loads((folder / RESULT).read_text()) | {"folder": str(folder)}


def _selection(run: RunDir, options: DistillOptions, progress: bool) -> LabelledImages:
    """Returns the labelled selection once the method can start from it: at least --ipc images in every class and a
    --teacher-checkpoint that fits it; raises UsageError otherwise, having written nothing."""
    from curate.distill.source import labelled_selection

    data = labelled_selection(run, options.where, options.label_column, options.image_size, progress,
                              options.zeroshot_classes)
    small = {c: n for c, n in data.class_counts().items() if n < options.ipc}
    if small:
        cls, count = next(iter(small.items()))
        raise UsageError(f"class {cls!r} has {count} images, fewer than --ipc {options.ipc}"
                         + (f" ({len(small)} classes do)" if len(small) > 1 else ""))
    if options.teacher_checkpoint is not None:  # a setting of cda and sre2l only (check)
        from curate.distill.recover import checkpoint_teacher

        checkpoint_teacher(data, options)
    return data


def stage_versions(run: RunDir, where: str | None, reads: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Returns the versions of the stages a set's selection reads: ingest, those whose columns `where` names, and
    `reads` (embed, for zero-shot labels: label_stages)."""
    from curate.graph import current_versions, entries
    from curate.stages.step import predicate_stages

    versions = current_versions(entries(run))
    return {s: versions.get(s) for s in ("ingest", *predicate_stages(run, where), *reads)}


def label_stages(options: DistillOptions | dict) -> tuple[str, ...]:
    """Returns the stages a set's labels read beyond its predicate's (embed for zero-shot labels), from its
    options or their recorded dict."""
    classes = options.get("zeroshot_classes") if isinstance(options, dict) else options.zeroshot_classes
    return ("embed",) if classes is not None else ()


def _check_source(run: RunDir, folder: Path, options: DistillOptions) -> None:
    """Records the versions of the stages the selection reads when a set starts (SOURCE); raises UsageError when an
    interrupted set would resume on a selection those stages have changed since."""
    now = stage_versions(run, options.where, label_stages(options))
    path = folder / SOURCE
    if path.exists() and json.loads(path.read_text()) != now:
        raise UsageError(f"{folder} was started on another version of the stages its --where reads "
                         f"({', '.join(sorted(now))}); pick another --name, or remove the folder to redo it")
    RunDir(folder).write_json(SOURCE, now)


def _source(run: RunDir, options: DistillOptions, data: LabelledImages) -> dict:
    """Returns what the set was distilled from: the predicate, the labels (a column, or how zero-shot labels were
    made: classes, model, prompt templates), the versions of the stages it read, the counts."""
    from curate.distill.zeroshot import describe

    source = dict(where=options.where, label_column=options.label_column,
                  stage_versions=stage_versions(run, options.where, label_stages(options)), selected=data.selected,
                  used=len(data.uids), unlabelled=data.unlabelled, skipped=data.skipped,
                  undecodable_uids=data.undecodable, class_counts=data.class_counts())
    if options.zeroshot_classes is not None:
        source["zeroshot"] = describe(run, options.zeroshot_classes)
    return source
