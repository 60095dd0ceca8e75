"""CLIP training on image-text pairs (open_clip's recipe at small scale) and saving the result as a model folder.

The loop is open_clip's: AdamW without weight decay on gains, biases, embeddings and the temperature; linear
warmup then cosine decay; the symmetric contrastive loss with a learnable temperature clamped at ln 100.
Images get RandomResizedCrop only (no flips, no colour jitter: they can make a caption false).

Training length is a budget of samples (DataComp's "samples seen"): `samples_seen` when set, so a small
dataset simply gets more epochs, else `epochs` passes. A `sampler` decides which indices each step sees and
`on_losses` receives every step's per-sample losses: the hooks dynamic data pruning needs.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from curate.models.loading import FOLDER_CONFIG, LoadedModel
from curate.models.pairs import PairDataset, normalize, random_resized_crop
from curate.version import __version__

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "open_clip_model.safetensors"
INFO_FILE = "train_info.json"
MAX_LOGIT_SCALE = math.log(100)
NO_DECAY_NAMES = ("bias", "ln_", "ln.", "norm", "logit_scale", "embedding")


@dataclass
class TrainConfig:
    """How to train: length (samples_seen or epochs), batch, AdamW and schedule, augmentation, seed."""

    epochs: int = 10
    samples_seen: int | None = None  # when set, the exact number of samples trained on (overrides epochs)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 50
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    seed: int = 0
    progress: bool = True


@dataclass
class TrainResult:
    """What a training run did: the mean loss of every step, samples trained on, steps and wall seconds."""

    losses: list[float] = field(default_factory=list)
    samples_seen: int = 0
    steps: int = 0
    seconds: float = 0.0

    def record(self, losses: torch.Tensor) -> None:
        """Counts one step that trained on len(losses) samples, keeping the mean of its per-sample losses."""
        self.losses.append(float(losses.mean()))
        self.samples_seen += len(losses)
        self.steps += 1

    def summary(self, last: int = 20) -> dict:
        """Returns samples, steps, seconds and the first, last-`last`-steps mean and minimum loss."""
        tail = self.losses[-last:] or [float("nan")]
        return dict(samples_seen=self.samples_seen, steps=self.steps, seconds=round(self.seconds, 2),
                    first_loss=self.losses[0] if self.losses else None,
                    final_loss=sum(tail) / len(tail), min_loss=min(self.losses, default=None))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Returns AdamW groups: decay on weight matrices, none on 1-d gains/biases, embeddings and logit_scale."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or any(word in name for word in NO_DECAY_NAMES)
        (no_decay if exempt else decay).append(param)
    return [dict(params=no_decay, weight_decay=0.0), dict(params=decay, weight_decay=weight_decay)]


def learning_rate(seen: int, batch: int, total: int, config: TrainConfig, unit: int) -> float:
    """Returns open_clip's cosine_lr for the step that starts after `seen` samples, in steps of `unit` samples.

    Linear warmup base * (step + 1) / warmup, then 0.5 * (1 + cos(pi * progress)) * base; measured in samples,
    so batches of any size (a batch sampler's, the last one) follow the same curve.
    """
    return warmup_cosine(seen, batch, total, config.lr, config.warmup_steps * unit)


def warmup_cosine(seen: float, batch: float, total: float, lr: float, warmup: float) -> float:
    """Returns the learning rate for the step of `batch` that starts after `seen`, out of `total` (any one unit:
    samples or steps): linear warmup lr * (seen + batch) / warmup, then cosine decay to 0 over the rest."""
    if seen < warmup:
        return lr * (seen + batch) / warmup
    progress = (seen - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) * lr


def contrastive_losses(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Returns each pair's loss: the mean of its image->text and text->image cross-entropy over the batch.

    The mean over the batch is exactly open_clip's ClipLoss (whose logits this reuses).
    """
    import torch
    import torch.nn.functional as F
    from open_clip.loss import ClipLoss

    per_image, per_text = ClipLoss().get_logits(image, text, logit_scale)
    labels = torch.arange(len(image), device=image.device, dtype=torch.long)
    return (F.cross_entropy(per_image, labels, reduction="none")
            + F.cross_entropy(per_text, labels, reduction="none")) / 2


def batch_stream(n: int, batch_size: int, sampler: Iterable | None, generator: torch.Generator) -> Iterator[list]:
    """Yields batches of dataset indices forever, pass after pass.

    Without a sampler each pass is a permutation drawn from `generator`. A sampler yielding indices (a torch
    Sampler) is grouped into `batch_size` batches, which may span passes; one yielding lists (a batch sampler)
    gives its batches as they are. `set_epoch(pass)` is called before each pass when the sampler has it.
    """
    import torch

    pending: list[int] = []
    for epoch in itertools.count():
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        items = torch.randperm(n, generator=generator).tolist() if sampler is None else sampler
        empty = True
        for item in items:
            empty = False
            if isinstance(item, int) or (hasattr(item, "ndim") and item.ndim == 0):
                pending.append(int(item))
                if len(pending) == batch_size:
                    yield pending
                    pending = []
            else:
                yield [int(i) for i in item]
        if empty:
            raise ValueError("the sampler yielded no indices in a pass")


def sample_budget(config: TrainConfig, n: int, sampler: Iterable | None) -> int:
    """Returns the samples to train on: samples_seen, else epochs x the sampler's (or dataset's) length."""
    from torch.utils.data import BatchSampler

    if config.samples_seen is not None:
        return config.samples_seen
    if isinstance(sampler, BatchSampler):
        raise ValueError("a batch sampler's length counts batches: set config.samples_seen to train with one")
    per_pass = n if sampler is None else len(sampler)  # a torch Sampler's len is its indices per pass
    return config.epochs * per_pass


def training_state(loaded: LoadedModel, pairs: PairDataset,
                   config: TrainConfig) -> tuple[torch.Generator, torch.Tensor, torch.optim.Optimizer]:
    """Returns (the run's seeded generator, every caption's tokens, AdamW over the model's parameter groups);
    raises ValueError for a model that does not train with CLIP's loss (SigLIP)."""
    import torch

    if getattr(loaded.model, "logit_bias", None) is not None:
        raise ValueError("this model has a logit_bias (SigLIP); it trains with the sigmoid loss, not CLIP's")
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(param_groups(loaded.model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  eps=config.eps, fused=True)
    return generator, loaded.tokenizer(pairs.captions), optimizer


def train_clip(
    loaded: LoadedModel, pairs: PairDataset, config: TrainConfig, sampler: Iterable | None = None,
    on_losses: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> TrainResult:
    """Trains `loaded.model` in place on the pairs; returns its TrainResult (losses per step, samples, time).

    `loaded` is any open_clip CLIP with its tokenizer (a LoadedModel: build one around your own model). The
    run is deterministic on CPU for a seed: every random draw takes a generator seeded with config.seed.
    `sampler` (indices or batches of indices) decides what each step sees; with a batch sampler set
    samples_seen. `on_losses(indices, losses)` gets each step's dataset indices (LongTensor) and per-sample
    losses (detached). The batch is capped at the dataset's size.
    """
    import torch

    model = loaded.model
    generator, tokens, optimizer = training_state(loaded, pairs, config)
    total = sample_budget(config, len(pairs), sampler)
    batch_size = min(config.batch_size, len(pairs))
    result = TrainResult()
    start = time.perf_counter()
    model.train()
    bar = tqdm(total=total, desc="train", unit="sample", disable=not config.progress)
    for batch in batch_stream(len(pairs), batch_size, sampler, generator):
        if not batch:
            continue
        indices = torch.tensor(batch[: total - result.samples_seen], dtype=torch.long)
        lr = learning_rate(result.samples_seen, len(indices), total, config, batch_size)
        losses = train_step(loaded, optimizer, lr, pairs.pixels[indices], tokens[indices], config, generator)
        if on_losses is not None:
            on_losses(indices, losses)
        result.record(losses)
        bar.update(len(indices))
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", refresh=False)
        if result.samples_seen >= total:
            break
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def train_step(
    loaded: LoadedModel, optimizer: torch.optim.Optimizer, lr: float, pixels: torch.Tensor, tokens: torch.Tensor,
    config: TrainConfig, generator: torch.Generator, weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Runs one AdamW step on a batch, on the mean of its per-sample losses times `weights` (InfoBatch's
    rescaling; all ones when None); returns the unweighted per-sample losses (detached, on the CPU)."""
    import torch

    model, device = loaded.model, loaded.device
    size = loaded.image_size
    crops = random_resized_crop(pixels.to(device), size, config.crop_scale, config.crop_ratio, generator)
    images = normalize(crops, loaded.mean, loaded.std)
    for group in optimizer.param_groups:
        group["lr"] = lr
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
    with autocast:
        image = model.encode_image(images, normalize=True)
        text = model.encode_text(tokens.to(device), normalize=True)
        losses = contrastive_losses(image.float(), text.float(), model.logit_scale.exp())
    optimizer.zero_grad(set_to_none=True)
    (losses if weights is None else losses * weights.to(losses.device)).mean().backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return losses.detach().float().cpu()


def save_model_folder(
    model: torch.nn.Module, model_cfg: dict, preprocess_cfg: dict, out: Path, info: dict | None = None,
) -> Path:
    """Writes an open_clip model folder at `out`; returns its path.

    Files: open_clip_config.json ({"model_cfg", "preprocess_cfg"}), open_clip_model.safetensors and
    train_info.json (`info` plus versions). `open_clip.create_model("local-dir:OUT")` and
    `load_model(ModelSpec(model=OUT))` load it. The files are written in a temporary folder first; a new
    `out` is that folder renamed, an existing one (a train-dfn folder holding its trusted run) gets the
    files renamed into it with the config last, the file that makes a folder loadable, after any old
    config is removed: a folder with a config never has partial weights.
    """
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    temp.mkdir()
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(temp / WEIGHTS_FILE))
        os.chmod(temp / WEIGHTS_FILE, 0o644)  # safetensors creates it owner-only; share it like the json files
        _write_json(temp / INFO_FILE, (info or {}) | {"versions": versions()})
        _write_json(temp / FOLDER_CONFIG, {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
        if not out.exists():
            os.rename(temp, out)
            return out
        (out / FOLDER_CONFIG).unlink(missing_ok=True)
        for name in (WEIGHTS_FILE, INFO_FILE, FOLDER_CONFIG):
            os.replace(temp / name, out / name)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return out


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def versions() -> dict:
    """Returns the curate, open_clip, torch and python versions."""
    import open_clip
    import torch

    return dict(curate=__version__, open_clip=open_clip.__version__, torch=torch.__version__,
                python=platform.python_version())


def config_dict(config: TrainConfig) -> dict:
    """Returns the config as a JSON-ready dict."""
    return asdict(config)
