"""Training a copy descriptor on a run's own images (`curate train-copy-detector`): SSCD's recipe at small scale.

Instance discrimination: each image of a batch is augmented twice (curate.copydetect.augment: crops, shifts
with padding, flips, colour jitter, blur, overlays, JPEG re-encodes); the loss is InfoNCE over the 2B views at
temperature 0.05 plus KoLeo_weight x the KoLeo entropy term (SSCD: 30; each view's distance to its nearest view
of another image, as SSCD measures it: the other view of its own image is no neighbour), AdamW with a linear
warmup and cosine decay. No labels or captions are read. Images are resized whole (nothing cropped) to the model's
input side.

The folder gets train_config.json (the options, written once the images are read: a refused request leaves no
folder), checkpoint.pt after every epoch (weights and optimizer state, read back with weights_only=True; each
epoch's random draws come from (seed, epoch), so a killed run resumed from its checkpoint ends with the same
weights as one that was not killed), and when done the model (copy_detector.json + model.safetensors,
curate.copydetect.model) and train_info.json. A rerun of a finished folder with the same options returns its
summary; other options are refused.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from curate.copydetect.augment import AugmentConfig, copy_views
from curate.copydetect.config import CopyTrainConfig
from curate.copydetect.loss import info_nce, koleo
from curate.copydetect.model import DescriptorConfig, build_descriptor, save_descriptor
from curate.errors import UsageError
from curate.models.pairs import load_pairs, normalize
from curate.models.train import warmup_cosine
from curate.models.weights import read_weights
from curate.rundir import RunDir

CONFIG_FILE, CHECKPOINT, INFO_FILE = "train_config.json", "checkpoint.pt", "train_info.json"


def _check_folder(out: Path, options: dict) -> None:
    """Raises UsageError unless `out` is new, empty, or an earlier run's folder with the same options; writes
    nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the copy detector")
    path = out / CONFIG_FILE
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier != options:
            changed = sorted(k for k in options if earlier.get(k) != options[k])
            raise UsageError(f"{out} was trained with other options ({', '.join(changed)}); give a new --out folder")
    elif out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out} holds other files; give a new folder (or an earlier train-copy-detector one)")


def train_copy_detector(run: RunDir, out: Path, config: CopyTrainConfig, where: str | None = None,
                        progress: bool = True, device: str = "auto") -> dict:
    """Trains a descriptor on the images of the run's samples (`where`: SQL on the samples view) into the folder
    `out`, resuming from its checkpoint, on `device` (auto: a GPU when one is visible; the augmentations stay on
    the CPU); returns the summary (model folder, images, epochs, loss per epoch, seconds, device)."""
    config.check()
    device = _training_device(device)
    out = Path(out)
    # the augmentations are recorded too, so a folder trained with other ones is not resumed with these
    options = json.loads(json.dumps(asdict(config) | dict(where=where, augment=asdict(AugmentConfig()))))
    _check_folder(out, options)
    if (out / INFO_FILE).exists():
        return json.loads((out / INFO_FILE).read_text())
    pixels = load_pairs(run, where, config.image_size, progress=progress, square=True).pixels
    if config.max_images is not None:
        pixels = pixels[torch.randperm(len(pixels), generator=torch.Generator().manual_seed(config.seed))
                        [:config.max_images]]
    if len(pixels) < 2:
        raise UsageError(f"{len(pixels)} image(s) selected; a copy detector needs at least 2 to tell apart")
    RunDir(out).write_json(CONFIG_FILE, options)
    model_config = DescriptorConfig(arch=config.arch, dim=config.dim, image_size=config.image_size,
                                    width=config.width)
    model = build_descriptor(model_config, config.seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = _resume(out, model, optimizer)
    for epoch in range(len(state["losses"]), config.epochs):
        began = time.perf_counter()
        loss = _epoch(model, optimizer, pixels, config, (model_config.mean, model_config.std), epoch, progress,
                      device)
        state = dict(losses=[*state["losses"], loss], seconds=state["seconds"] + time.perf_counter() - began)
        _checkpoint(out, model, optimizer, state)
    save_descriptor(model.eval().cpu(), model_config, out)
    info = dict(model=str(out), images=len(pixels), epochs=config.epochs, losses=state["losses"],
                final_loss=state["losses"][-1], seconds=round(state["seconds"], 1), device=device, where=where,
                config=asdict(config))
    RunDir(out).write_json(INFO_FILE, info)
    return info


def _training_device(device: str) -> str:
    """Returns the torch device to train on; raises UsageError for a GPU that is not there."""
    from curate.models.loading import pick_device

    chosen = pick_device(device)
    if chosen.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no GPU is visible here; use --device auto or cpu")
    return chosen


def _epoch(model, optimizer, pixels: torch.Tensor, config: CopyTrainConfig, normalization: tuple, epoch: int,
           progress: bool, device: str = "cpu") -> float:
    """Trains one epoch (random draws from (seed, epoch)); returns its mean loss."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(len(pixels), generator=generator)
    batch = min(config.batch_size, len(pixels))
    steps = len(pixels) // batch  # a ragged last batch would change the loss's scale; it is dropped
    total, losses = config.epochs * steps, []
    warmup = max(1, int(config.warmup_epochs * steps))  # steps of linear warmup
    augment, (mean, std) = AugmentConfig(), normalization
    model.train()
    for step in tqdm(range(steps), desc=f"train-copy-detector epoch {epoch + 1}", disable=not progress):
        chosen = pixels[order[step * batch:(step + 1) * batch]]
        views = [normalize(copy_views(chosen, config.image_size, augment, generator), mean, std).to(device)
                 for _ in range(2)]
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(epoch * steps + step, 1, total, config.lr, warmup)
        z1, z2 = model(views[0]), model(views[1])
        views_of = torch.arange(len(z1), device=z1.device).repeat(2)  # KoLeo's neighbours: other images' views
        loss = info_nce(z1, z2, config.temperature) + config.koleo_weight * koleo(torch.cat([z1, z2]), views_of)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return sum(losses) / len(losses)


def _checkpoint(out: Path, model, optimizer, state: dict) -> None:
    """Writes the weights, optimizer state and progress atomically to out/checkpoint.pt."""
    buffer = io.BytesIO()
    torch.save(dict(model=model.state_dict(), optimizer=optimizer.state_dict(), **state), buffer)
    RunDir(out).write_bytes(CHECKPOINT, buffer.getvalue())


def _resume(out: Path, model, optimizer) -> dict:
    """Loads out/checkpoint.pt into the model and optimizer when there is one; returns the progress so far
    (losses per finished epoch, seconds)."""
    path = out / CHECKPOINT
    if not path.exists():
        return dict(losses=[], seconds=0.0)
    saved = read_weights(path, "the checkpoint")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return dict(losses=list(saved["losses"]), seconds=float(saved["seconds"]))
