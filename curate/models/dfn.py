"""Training a data filtering network (Fang et al. 2023): a CLIP trained on trusted, high-quality pairs only.

Its image-text cosine then scores a pool (`curate embed POOL_RUN --model OUT`, then `curate filter dfn`).
The paper's finding is that filtering quality comes from the trusted data, not from the model's size or its
ImageNet accuracy: a DFN trained on a small trusted set filters better than one trained on raw pool pairs.
"""

from __future__ import annotations

from pathlib import Path

from curate.errors import UsageError
from curate.models.loading import (
    FOLDER_CONFIG,
    LoadedModel,
    ModelSpec,
    config_of,
    load_model,
    resolve_model,
    scratch_model,
)
from curate.models.train import TrainConfig

TRUSTED_RUN = "trusted_run"

# Defaults for the tiny model from scratch, chosen on the synth benchmark (benchmarks/dfn_quality.py; the
# settings tried are in benchmarks/README.md): on 4,000 trusted pairs, 5 epochs give a pool AUC of about 0.975
# in 2.5 minutes on 2 CPU cores (3 epochs: 0.969, 10: 0.984 at twice the time); the learning rate barely
# mattered (5e-4 to 2e-3), and batch 256 was no better than 128 at the same samples seen.
DEFAULT_EPOCHS = 5
DEFAULT_BATCH_SIZE = 128
SCRATCH_LR = 1e-3
SCRATCH_WARMUP = 50
# Fine-tuning a pretrained CLIP (the paper fine-tunes OpenAI's) keeps its features with a small step.
FINETUNE_LR = 1e-5
FINETUNE_WARMUP = 10


def build_model(init: ModelSpec | None, seed: int, device: str = "auto") -> tuple[LoadedModel, dict]:
    """Returns the model to train and its open_clip model config.

    Without `init`: the tiny default from scratch, initialised from `seed` (the global RNG is restored after).
    With it: that model and its weights (name + tag or checkpoint, hf-hub: id, or model folder).
    """
    spec = init or ModelSpec(random_weights=True)
    name, _ = resolve_model(spec)
    model_cfg = config_of(spec).cfg
    if init is not None:
        return load_model(spec, device), model_cfg
    return scratch_model(name, seed, device), model_cfg


def check_out(out: Path) -> None:
    """Raises UsageError when `out` exists with content that is not a train-dfn folder's."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the model")
    if out.is_dir() and any(out.iterdir()) and not ((out / FOLDER_CONFIG).exists() or (out / TRUSTED_RUN).exists()):
        raise UsageError(f"--out {out} holds other files; give a new folder (or an earlier train-dfn output)")


def train_config(init: ModelSpec | None, epochs: int, seed: int, batch_size: int, lr: float | None,
                 samples_seen: int | None, progress: bool) -> TrainConfig:
    """Returns the TrainConfig of a DFN run: scratch or fine-tuning defaults for what is not given."""
    scratch = init is None
    for value, label in ((epochs, "--epochs"), (batch_size, "--batch-size")):
        if value < 1:
            raise UsageError(f"{label} must be >= 1, got {value}")
    if lr is not None and not lr > 0:
        raise UsageError(f"--lr must be > 0, got {lr}")
    if samples_seen is not None and samples_seen < 1:
        raise UsageError(f"--samples-seen must be >= 1, got {samples_seen}")
    return TrainConfig(
        epochs=epochs, samples_seen=samples_seen, batch_size=batch_size,
        lr=lr or (SCRATCH_LR if scratch else FINETUNE_LR),
        warmup_steps=SCRATCH_WARMUP if scratch else FINETUNE_WARMUP, seed=seed, progress=progress,
    )
