"""A DataComp-style evaluation of one selection at fixed compute: train a CLIP from scratch on the subset for
exactly `samples_seen` samples (more epochs for a smaller subset), per seed, then measure it on a held-out set.

Outputs: a JSON result (per seed, mean and std) and one Parquet row per seed under RUN/evaluations/, which
the catalog's `evaluations` view reads.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from curate.errors import UsageError
from curate.evaluate.metrics import TEMPLATES, class_prompts, retrieval_recall, topk_accuracy, zeroshot_weights
from curate.models.heldout import HeldOut, load_heldout
from curate.models.loading import DEFAULT_MODEL, LoadedModel, ModelSpec, config_of, resolve_model, scratch_model
from curate.rundir import RunDir, parquet_bytes

if TYPE_CHECKING:
    from curate.dynamic.base import DynamicPruner
    from curate.models.pairs import PairDataset

EVALUATIONS = "evaluations"
# The tiny model's DFN defaults (curate/models/dfn.py) train 5 epochs of 4,000 pairs: 20,000 samples seen.
DEFAULT_SAMPLES_SEEN = 20_000
DEFAULT_BATCH_SIZE = 128
LR = 1e-3
MAX_WARMUP_STEPS = 50
ENCODE_BATCH = 256
ALIASES = {"tiny": DEFAULT_MODEL}
METRICS = ("zeroshot_top1", "zeroshot_top5", "image_to_text_r1", "image_to_text_r5", "text_to_image_r1",
           "text_to_image_r5")
ROW_SCHEMA = pa.schema(
    [("evaluation", pa.string()), ("predicate", pa.string()), ("subset_size", pa.int64()), ("seed", pa.int64()),
     ("samples_seen", pa.int64()), ("model_config", pa.string()), ("heldout", pa.string()),
     ("heldout_size", pa.int64()), ("dynamic", pa.string()), ("prune_ratio", pa.float64()),
     ("pruner_options", pa.string())]
    + [(m, pa.float64()) for m in METRICS]
    + [("samples_forwarded", pa.int64()), ("saved_fraction", pa.float64()), ("wall_seconds", pa.float64())]
)


@dataclass(frozen=True)
class DynamicPruning:
    """Train with a dynamic pruner (curate.dynamic: seta, infobatch, random) at this prune ratio.

    The budget becomes ceil(samples_seen / subset size) epochs, each over the pruner's selection, so the run
    forwards fewer samples than samples_seen; the per-seed results say how many, and the saved fraction.
    `options` are the pruner's keyword options as (name, value) pairs, e.g. SeTa's CIFAR setting
    (("num_groups", 5), ("window_scale", 0.9)).
    """

    method: str
    prune_ratio: float
    options: tuple[tuple[str, float], ...] = ()

    def describe(self) -> dict:
        """Returns {method, prune_ratio, options} for the result JSON."""
        return dict(method=self.method, prune_ratio=self.prune_ratio, options=dict(self.options))

    def pruner(self, num_samples: int, epochs: int, seed: int = 0) -> DynamicPruner:
        """Returns the configured pruner over `num_samples` for `epochs`; raises UsageError for a bad method,
        ratio or option."""
        from curate.dynamic import make_pruner

        return make_pruner(self.method, num_samples, epochs, self.prune_ratio, seed, **dict(self.options))


def model_name(model_config: str) -> str:
    """Returns the open_clip model config name for `model_config` ("tiny" -> curate-tiny); raises UsageError."""
    name = ALIASES.get(model_config, model_config)
    if Path(name).exists() or name.startswith(("hf-hub:", "local-dir:")):
        raise UsageError(f"--model-config {model_config!r} must name an open_clip model config, not a model")
    return resolve_model(ModelSpec(name, random_weights=True))[0]


def encode_images(loaded: LoadedModel, pixels: np.ndarray) -> np.ndarray:
    """Returns the L2-normalized float32 image embeddings of uint8 N x S x S x 3 pixels."""
    import torch

    from curate.models.encode import pixels_to_tensor

    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), ENCODE_BATCH):
            images = pixels_to_tensor(pixels[start:start + ENCODE_BATCH], loaded.mean, loaded.std, loaded.device)
            out.append(loaded.model.encode_image(images, normalize=True).float().cpu().numpy())
    return np.concatenate(out)


def encode_texts(loaded: LoadedModel, texts: list[str]) -> np.ndarray:
    """Returns the L2-normalized float32 text embeddings of `texts`."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), ENCODE_BATCH):
            tokens = loaded.tokenizer(texts[start:start + ENCODE_BATCH]).to(loaded.device)
            out.append(loaded.model.encode_text(tokens, normalize=True).float().cpu().numpy())
    return np.concatenate(out)


def heldout_metrics(loaded: LoadedModel, heldout: HeldOut) -> dict[str, float | None]:
    """Returns zero-shot top-1/top-5 accuracy and (with captions, else None) retrieval recall@1/@5."""
    image = encode_images(loaded, heldout.pixels)
    prompts = encode_texts(loaded, class_prompts(heldout.classnames, TEMPLATES))
    accuracy = topk_accuracy(image @ zeroshot_weights(prompts, len(TEMPLATES)).T, heldout.labels, (1, 5))
    metrics: dict[str, float | None] = {m: None for m in METRICS}
    metrics |= {"zeroshot_top1": accuracy[1], "zeroshot_top5": accuracy[5]}
    if heldout.captions is not None:
        metrics |= retrieval_recall(image, encode_texts(loaded, heldout.captions), heldout.captions, (1, 5))
    return metrics


def train_and_measure(name: str, pairs: PairDataset, heldout: HeldOut, seed: int, samples_seen: int,
                      batch_size: int, progress: bool, dynamic: DynamicPruning | None = None) -> dict:
    """Trains a fresh model for one seed and measures it; returns {seed, metrics..., samples_forwarded,
    saved_fraction, final_loss, wall_seconds}."""
    from curate.models.train import TrainConfig, train_clip

    start = time.perf_counter()
    loaded = scratch_model(name, seed)
    steps = -(-samples_seen // min(batch_size, len(pairs)))
    config = TrainConfig(samples_seen=samples_seen, batch_size=batch_size, lr=LR, seed=seed, progress=progress,
                         warmup_steps=min(MAX_WARMUP_STEPS, max(1, steps // 10)))
    if dynamic is None:
        result, saved = train_clip(loaded, pairs, config), 0.0
    else:
        result, saved = _train_pruned(loaded, pairs, config, dynamic)
    metrics = heldout_metrics(loaded, heldout)
    return dict(seed=seed, **metrics, samples_forwarded=result.samples_seen, saved_fraction=saved,
                final_loss=result.summary()["final_loss"], wall_seconds=round(time.perf_counter() - start, 3))


def _train_pruned(loaded: LoadedModel, pairs: PairDataset, config, dynamic: DynamicPruning):
    from dataclasses import replace

    from curate.dynamic.clip import train_clip_pruned

    epochs = -(-config.samples_seen // len(pairs))
    pruner = dynamic.pruner(len(pairs), epochs, config.seed)
    result = train_clip_pruned(loaded, pairs, replace(config, samples_seen=None, epochs=epochs), pruner)
    return result, pruner.stats().saved_fraction


def aggregate(per_seed: list[dict]) -> tuple[dict, dict]:
    """Returns ({metric: mean}, {metric: std}) over seeds; std is the sample std (0.0 for one seed)."""
    mean, std = {}, {}
    for m in (*METRICS, "samples_forwarded", "saved_fraction", "wall_seconds"):
        values = [r[m] for r in per_seed if r[m] is not None]
        mean[m] = statistics.fmean(values) if values else None
        std[m] = (statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
    return mean, std


def evaluation_name(where: str | None, seeds: list[int], samples_seen: int, name: str, heldout: Path,
                    dynamic: DynamicPruning | None = None) -> str:
    """Returns a deterministic file stem for the evaluation: eval-<16 hex of its defining arguments' hash>."""
    arguments = dict(where=where, seeds=seeds, samples_seen=samples_seen, model_config=name,
                     heldout=str(heldout.resolve()))
    if dynamic is not None:
        options = [dict(dynamic.options)] if dynamic.options else []  # keeps the names of option-less evaluations
        arguments["dynamic"] = [dynamic.method, dynamic.prune_ratio, *options]
    key = json.dumps(arguments, sort_keys=True)
    return "eval-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _check_arguments(seeds: list[int], samples_seen: int, batch_size: int, dynamic: DynamicPruning | None) -> None:
    if not seeds:
        raise UsageError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds repeats a seed: {seeds}")
    if samples_seen < 1 or batch_size < 1:
        raise UsageError(f"--samples-seen and --batch-size must be >= 1, got {samples_seen} and {batch_size}")
    if dynamic is not None:
        dynamic.pruner(1, 1)  # raises the UsageError of a bad method, ratio or option


def evaluate_subset(
    run: RunDir, where: str | None, heldout: str | Path, samples_seen: int = DEFAULT_SAMPLES_SEEN,
    seeds: list[int] | tuple[int, ...] = (0,), model_config: str = DEFAULT_MODEL, out: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True, dynamic: DynamicPruning | None = None,
) -> dict:
    """Trains and measures one model per seed on the samples matching `where`; returns the JSON result.

    Result keys: evaluation, predicate, subset_size, samples_seen, model_config, heldout, heldout_size,
    heldout_skipped, classes, seeds, per_seed (list of {seed, metrics, final_loss, wall_seconds}), mean, std, json,
    parquet, dynamic. Metrics are zero-shot top-1/5 and retrieval recall@1/5 (None without captions). Raises
    UsageError for an unknown model config, a missing held-out set or an empty selection, before training.
    """
    from curate.models.pairs import load_pairs

    seeds = [int(s) for s in seeds]
    _check_arguments(seeds, samples_seen, batch_size, dynamic)
    name = model_name(model_config)
    heldout = Path(heldout)
    image_size = config_of(ModelSpec(name, random_weights=True)).image_size
    held = load_heldout(heldout, image_size)
    pairs = load_pairs(run, where, image_size, progress=progress)
    per_seed = [train_and_measure(name, pairs, held, s, samples_seen, batch_size, progress, dynamic) for s in seeds]
    mean, std = aggregate(per_seed)
    stem = evaluation_name(where, seeds, samples_seen, name, heldout, dynamic)
    result = dict(evaluation=stem, predicate=where, subset_size=len(pairs), samples_seen=samples_seen,
                  model_config=name, heldout=str(heldout), heldout_size=len(held), heldout_skipped=held.skipped,
                  classes=len(held.classnames), seeds=seeds, per_seed=per_seed, mean=mean, std=std,
                  dynamic=None if dynamic is None else dynamic.describe())
    return write_outputs(run, result, Path(out) if out else run.path / EVALUATIONS / f"{stem}.json")


def write_outputs(run: RunDir, result: dict, json_path: Path) -> dict:
    """Writes the per-seed rows as RUN/evaluations/<evaluation>.parquet and the result as JSON at `json_path`
    (both atomically), rebuilds the catalog; returns the result with `json` and `parquet` paths added."""
    from curate.catalogs import build_catalog

    dynamic = result["dynamic"] or {}
    rows = [dict(evaluation=result["evaluation"], predicate=result["predicate"], subset_size=result["subset_size"],
                 seed=r["seed"], samples_seen=result["samples_seen"], model_config=result["model_config"],
                 heldout=result["heldout"], heldout_size=result["heldout_size"],
                 dynamic=dynamic.get("method"), prune_ratio=dynamic.get("prune_ratio"),
                 pruner_options=json.dumps(dynamic["options"], sort_keys=True) if dynamic.get("options") else None,
                 **{m: r[m] for m in (*METRICS, "samples_forwarded", "saved_fraction", "wall_seconds")})
            for r in result["per_seed"]]
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    with run.writing():
        parquet = run.write_bytes(f"{EVALUATIONS}/{result['evaluation']}.parquet", parquet_bytes(table))
        result = result | {"json": str(json_path.absolute()), "parquet": str(parquet)}
        RunDir(json_path.absolute().parent).write_json(json_path.name, result)
        build_catalog(run)
    return result
