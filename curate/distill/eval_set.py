"""Evaluating a run's distilled set by the papers' protocol (curate.distill.evaluate): fresh ConvNets trained on the
set alone, one per seed, tested on real held-out images; the rows go to RUN/evaluations/<evaluation>.parquet, which
the catalog's `evaluations` view reads next to the CLIP evaluations' rows (union by column name).

The set is read as its learned float images (images.safetensors, the papers' protocol) or as the PNGs an export
holds (`stored="png"`: clipped to [0, 255] and rounded). Baselines on the same protocol come from the set's own
source selection: random real images at the set's IPC (a fresh draw per seed), herding on the run's image
embeddings (curate.distill.baselines), and the full selection.

A set whose folder holds relabel.safetensors (SRe2L/CDA's soft crops; curate.distill.relabel) trains its networks on
them unless the options say `relabel=False` (`--no-relabel`); the rows record it (`relabelled`). The baselines
always train on the plain protocol.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from curate.distill.layout import IMAGES, set_folder
from curate.errors import UsageError
from curate.rundir import RunDir, parquet_bytes

if TYPE_CHECKING:
    import torch

    from curate.distill.relabel import SoftCrops
    from curate.runners import Runner

STORED = ("float", "png")
BASELINES = ("random", "herding", "full")
ROW_SCHEMA = pa.schema([
    ("evaluation", pa.string()), ("distilled", pa.string()), ("method", pa.string()), ("ipc", pa.int64()),
    ("stored", pa.string()), ("soft_labels", pa.bool_()), ("relabelled", pa.bool_()),
    ("predicate", pa.string()), ("subset_size", pa.int64()),
    ("seed", pa.int64()), ("epochs", pa.int64()), ("lr", pa.float64()), ("heldout", pa.string()),
    ("heldout_size", pa.int64()), ("top1", pa.float64()), ("wall_seconds", pa.float64()),
])


@dataclass(frozen=True)
class SetEvalOptions:
    """How a distilled set is evaluated: the held-out set (a held-out Parquet file or class folder, or labelled shards
    and the column holding their class: curate.distill.test_set), the seeds (one network each),
    the protocol's epochs, which stored form of the set trains (float or png), the baselines to run beside it
    (random, herding, full), and whether the set trains on its soft crops when it has them."""

    test: str
    seeds: tuple[int, ...] = (0,)
    epochs: int = 300
    stored: str = "float"
    baselines: tuple[str, ...] = ()
    relabel: bool = True
    test_label_column: str | None = None

    def check(self) -> None:
        """Raises UsageError for options no evaluation can run with."""
        if self.stored not in STORED:
            raise UsageError(f"--stored must be one of {', '.join(STORED)}, not {self.stored!r}")
        if unknown := [b for b in self.baselines if b not in BASELINES]:
            raise UsageError(f"unknown --baselines {','.join(unknown)}; choose from {','.join(BASELINES)}")
        if not self.seeds:
            raise UsageError("--seeds needs at least one seed")
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")


@dataclass
class TrainingSet:
    """A set to train evaluation networks on: normalized float images, hard labels or soft targets, the learned
    lr (None: the protocol's default), for baselines that redraw per seed, seed -> the rows to train on, and the
    soft crops to train on instead of the labels (a relabelled set)."""

    method: str
    images: torch.Tensor
    labels: torch.Tensor
    lr: float | None = None
    subsets: dict[int, np.ndarray] | None = None
    crops: SoftCrops | None = None


def set_tensors(run: RunDir, name: str, meta: dict, rows: list[dict], stored: str) -> tuple[torch.Tensor, ...]:
    """Returns (normalized float images, hard labels, soft labels or None) of the finished set: its learned floats
    from images.safetensors, or its PNGs normalized by the set's recorded mean and std."""
    import torch

    from curate.models.encode import image_to_pixels

    path = set_folder(run, name) / IMAGES
    if stored == "float":
        if not path.exists():
            raise UsageError(f"set {name!r} has no {IMAGES} (made by an older curate); pass --stored png")
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        return tensors["images"], tensors["labels"], tensors.get("soft_labels")
    size = int(meta["options"]["image_size"])
    pixels = np.stack([image_to_pixels(r["png"], size) for r in rows])
    images = normalize(pixels, meta["normalization"])
    labels = torch.tensor([r["class"] for r in rows], dtype=torch.int64)
    soft = None if rows[0]["soft_label"] is None else torch.tensor([r["soft_label"] for r in rows])
    return images, labels, soft


def set_crops(run: RunDir, name: str, meta: dict, count: int, options: SetEvalOptions) -> SoftCrops | None:
    """Returns the set's soft crops (its relabel.safetensors) when it has them and options.relabel, else None;
    raises UsageError when the file does not fit the set's images."""
    from curate.distill.relabel import RELABEL, load_soft_crops

    path = set_folder(run, name) / RELABEL
    if not options.relabel or not path.exists():
        return None
    try:
        crops = load_soft_crops(path)
    except Exception as exc:  # unreadable or inconsistent: say which file, in one line
        raise UsageError(f"cannot read {path}: {exc}; evaluate with --no-relabel") from None
    if (crops.images, crops.image_size, crops.classes) != (count, meta["options"]["image_size"],
                                                            len(meta["classnames"])):
        raise UsageError(f"{path} relabels {crops.images} images of side {crops.image_size} over {crops.classes} "
                         f"classes, not the set's {count}; evaluate with --no-relabel")
    return crops


def normalize(pixels: np.ndarray, normalization: dict) -> torch.Tensor:
    """Returns uint8 N x S x S x 3 pixels as float N x 3 x S x S, normalized ((x / 255 - mean) / std) by the
    set's recorded per-channel statistics."""
    import torch

    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1)
    return (torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255) - mean) / std


def test_tensors(meta: dict, path: str, label_column: str | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Returns (normalized test images, class indices in the set's class order, images left out) of the held-out
    set at `path`, its classes matched to the set's by name; raises UsageError when it holds a class the set does
    not have."""
    import torch

    from curate.distill.test_set import load_test_set

    try:
        heldout = load_test_set(path, int(meta["options"]["image_size"]), label_column)
    except UsageError as exc:  # its messages name the evaluate command's flag
        raise UsageError(str(exc).replace("--heldout", "--test", 1)) from None
    position = {name: i for i, name in enumerate(meta["classnames"])}
    if missing := sorted(set(heldout.classnames) - position.keys()):
        raise UsageError(f"--test {path} has classes the set {meta['name']!r} was not distilled on: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    labels = torch.tensor([position[heldout.classnames[c]] for c in heldout.labels], dtype=torch.int64)
    return normalize(heldout.pixels, meta["normalization"]), labels, heldout.skipped


def train_and_test(shared: tuple, seed: int) -> dict:
    """Returns {seed, top1, seconds} of one evaluation network: a picklable Runner.map task over `shared` =
    (TrainingSet, test images, test labels, classes, EvalConfig)."""
    from curate.distill.evaluate import evaluate_set

    training, test_images, test_labels, classes, config = shared
    images, labels = training.images, training.labels
    if training.subsets is not None:
        index = training.subsets[seed]
        images, labels = images[index], labels[index]
    result = evaluate_set(images, labels, test_images, test_labels, classes, config, seeds=(seed,), lr=training.lr,
                          crops=training.crops)
    return dict(seed=seed, top1=result["accuracies"][0], seconds=result["seconds"], size=len(images),
                lr=result["lr"])


def evaluation_name(name: str, options: SetEvalOptions) -> str:
    """Returns the evaluation's name: distill-<set>-<hash of the options and the test set's path>."""
    described = asdict(options) | dict(test=str(Path(options.test).absolute()))
    for option, default in (("relabel", True), ("test_label_column", None)):
        if described[option] == default:  # names of evaluations made before the option existed stay the same
            del described[option]
    return f"distill-{name}-{hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:10]}"


def evaluate_distilled(run: RunDir, name: str, options: SetEvalOptions, runner: str | Runner = "local") -> dict:
    """Evaluates the distilled set `name` (and the baselines asked for) by the protocol on options.test, one
    network per seed through the runner's map; writes the rows as RUN/evaluations/<evaluation>.parquet and rebuilds
    the catalog. Returns {evaluation, parquet, test_undecoded (held-out images that did not decode), summary: one
    {method, size, mean, std, seeds} per set, ...}."""
    from curate.distill.evaluate import EvalConfig
    from curate.distill.output import read_set
    from curate.runners import as_runner

    options.check()
    meta, rows = read_set(run, name)
    images, labels, soft = set_tensors(run, name, meta, rows, options.stored)
    test_images, test_labels, undecoded = test_tensors(meta, options.test, options.test_label_column)
    config = EvalConfig(epochs=options.epochs, width=meta["options"]["width"], depth=meta["options"]["depth"])
    crops = set_crops(run, name, meta, len(images), options)
    sets = [TrainingSet(meta["method"], images, labels if soft is None else soft, meta.get("lr"), crops=crops)]
    sets += baseline_sets(run, meta, options.baselines, options.seeds)
    chosen, classes = as_runner(runner), len(meta["classnames"])
    results = [(training, chosen.map(train_and_test, (training, test_images, test_labels, classes, config),
                                     list(options.seeds), desc=training.method)) for training in sets]
    evaluation = evaluation_name(name, options)
    table = pa.Table.from_pylist(
        [row for training, per_seed in results for row in _rows(evaluation, meta, options, training, per_seed,
                                                                 len(test_labels))], schema=ROW_SCHEMA)
    parquet = _write(run, evaluation, table)
    summary = [dict(method=t.method, size=per_seed[0]["size"], seeds=len(per_seed), relabelled=t.crops is not None,
                    mean=statistics.fmean(r["top1"] for r in per_seed),
                    std=statistics.pstdev([r["top1"] for r in per_seed])) for t, per_seed in results]
    return dict(evaluation=evaluation, parquet=str(parquet), distilled=name, ipc=meta["ipc"], test=options.test,
                test_undecoded=undecoded, epochs=options.epochs, stored=options.stored, summary=summary)


def _rows(evaluation: str, meta: dict, options: SetEvalOptions, training: TrainingSet, per_seed: list[dict],
          heldout_size: int) -> list[dict[str, Any]]:
    """Returns the evaluation rows (ROW_SCHEMA) of one training set's seeds."""
    return [dict(evaluation=evaluation, distilled=meta["name"], method=training.method, ipc=meta["ipc"],
                 stored=options.stored if training.method == meta["method"] else "real",
                 soft_labels=bool(training.labels.is_floating_point()), relabelled=training.crops is not None,
                 predicate=meta["source"].get("where"),
                 subset_size=r["size"], seed=r["seed"], epochs=options.epochs, lr=r["lr"],
                 heldout=str(Path(options.test).absolute()), heldout_size=heldout_size, top1=r["top1"],
                 wall_seconds=r["seconds"]) for r in per_seed]


def _write(run: RunDir, evaluation: str, table: pa.Table) -> Path:
    """Writes the rows atomically under the run's writer lock and rebuilds the catalog; returns the file."""
    from curate.catalogs import build_catalog
    from curate.evaluate.run import EVALUATIONS

    with run.writing():
        path = run.write_bytes(f"{EVALUATIONS}/{evaluation}.parquet", parquet_bytes(table))
        build_catalog(run)
    return path


def baseline_sets(run: RunDir, meta: dict, names: tuple[str, ...], seeds: tuple[int, ...]) -> list[TrainingSet]:
    """Returns the baselines' TrainingSets over the set's source selection, decoded again at the set's size:
    random real images per class at the set's IPC (a draw per seed), herding on the run's image embeddings, the
    full selection. Raises UsageError when the stages the selection read have changed since the set was made."""
    if not names:
        return []
    from curate.distill.baselines import herding, random_real
    from curate.distill.run import label_stages, stage_versions
    from curate.distill.source import labelled_selection

    source, ipc = meta["source"], int(meta["ipc"])
    if stage_versions(run, source["where"], label_stages(meta["options"])) != source["stage_versions"]:
        raise UsageError(f"the stages set {meta['name']!r} read its selection from have changed since it was "
                         "distilled, so its baselines cannot be drawn from the same images; evaluate without "
                         "--baselines")
    data = labelled_selection(run, source["where"], source["label_column"], int(meta["options"]["image_size"]),
                              zeroshot_classes=meta["options"].get("zeroshot_classes"))
    labels = data.labels.numpy()
    made = {"random": lambda: TrainingSet("random", data.images, data.labels,
                                          subsets={s: random_real(labels, ipc, s) for s in seeds}),
            "herding": lambda: TrainingSet("herding", data.images, data.labels,
                                           subsets=dict.fromkeys(seeds, herding(_embeddings(run, data.uids), labels,
                                                                               ipc))),
            "full": lambda: TrainingSet("full", data.images, data.labels)}
    return [made[name]() for name in names]


def _embeddings(run: RunDir, uids: list[str]) -> np.ndarray:
    """Returns the run's image embeddings of `uids`, in their order; raises UsageError when some have none."""
    import pyarrow.compute as pc

    from curate.stages.embeddings import load_embeddings

    embeddings = load_embeddings(run, "image", progress=False)
    rows = pc.index_in(pa.array(uids, pa.string()), value_set=embeddings.uids)
    if rows.null_count:
        raise UsageError(f"herding needs every selected sample's image embedding; {rows.null_count} have none: run "
                         "`curate embed` on the run first")
    return embeddings.vectors[rows.to_numpy(zero_copy_only=False).astype(np.int64)]
