"""Training a model on shards: ingest them into a run inside the model's folder (bad samples quarantined there; a
rerun with the same inputs resumes), then train on its pairs or images. The models and their training loops are
curate.models'; this module is where they meet the stages."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from curate.models.dfn import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, TRUSTED_RUN, build_model, check_out, train_config
from curate.models.loading import ModelSpec, pick_device
from curate.models.mae_config import MAEConfig, MAETrainConfig
from curate.models.mae_io import WEIGHTS_FILE, save_mae
from curate.models.pairs import load_pairs
from curate.models.train import config_dict, save_model_folder, train_clip, versions
from curate.models.train_mae import INFO_FILE, TRAIN_RUN, scratch_mae, train_mae_model
from curate.models.train_mae import check_out as check_mae_out
from curate.rundir import RunDir
from curate.stages.ingest import ingest


def train_dfn(
    inputs: list[str], out: Path, init: ModelSpec | None = None, epochs: int = DEFAULT_EPOCHS, seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE, lr: float | None = None, samples_seen: int | None = None,
    where: str | None = None, runner: str = "local", device: str = "auto", progress: bool = True,
) -> dict:
    """Trains a DFN on the trusted shards and writes it as a model folder at `out`; returns a summary dict.

    The shards are ingested into out/trusted_run first (bad samples are quarantined there; a rerun with the
    same inputs resumes), `where` optionally narrows them (SQL on the samples view), then the model (tiny
    from scratch, or `init` fine-tuned) trains on the pairs and is saved with train_info.json beside it.
    Summary keys: model, trusted (ingest counts), pairs, samples_seen, steps, seconds, first/final/min_loss.
    """
    out = Path(out)
    check_out(out)
    config = train_config(init, epochs, seed, batch_size, lr, samples_seen, progress)
    loaded, model_cfg = build_model(init, seed, device)
    run = RunDir(out / TRUSTED_RUN)
    counts = ingest(inputs, run, runner, progress=progress)
    pairs = load_pairs(run, where, loaded.image_size, progress=progress)
    result = train_clip(loaded, pairs, config)
    info = dict(
        data=dict(inputs=list(inputs), trusted_run=TRUSTED_RUN, where=where, pairs=len(pairs), ingest=counts),
        init=None if init is None else asdict(init), config=config_dict(config), seed=seed,
        training=result.summary(), device=loaded.device,
    )
    save_model_folder(loaded.model, model_cfg, dict(loaded.model.visual.preprocess_cfg), out, info)
    return dict(model=str(out), trusted=counts, pairs=len(pairs), **result.summary())


def train_mae(inputs: list[str], out: str | Path, model: MAEConfig | None = None,
              config: MAETrainConfig | None = None, where: str | None = None, runner: str = "local",
              device: str = "auto") -> dict:
    """Trains an MAE from scratch on the images of `inputs` (shards: paths, globs, folders or URLs) and writes
    out/mae.pth (official layout, loadable by load_mae) and out/train_info.json; returns a summary dict
    (model, images, samples_seen, steps, seconds, first/final/min_loss).

    The shards are ingested into out/train_run first (a rerun with the same inputs resumes), `where` optionally
    narrows them (SQL on the samples view).
    """
    out, model, config = Path(out), model or MAEConfig(), config or MAETrainConfig()
    check_mae_out(out)
    device = pick_device(device)
    counts = ingest(inputs, RunDir(out / TRAIN_RUN), runner, progress=config.progress)
    pairs = load_pairs(RunDir(out / TRAIN_RUN), where, model.img_size, progress=config.progress, square=True)
    mae = scratch_mae(model, config.seed)
    result = train_mae_model(mae, pairs.pixels, config, device)
    save_mae(mae, out / WEIGHTS_FILE)
    info = dict(data=dict(inputs=list(inputs), where=where, images=len(pairs), ingest=counts),
                model=asdict(model), config=asdict(config), training=result.summary(), device=device,
                versions=versions())
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return dict(model=str(out / WEIGHTS_FILE), images=len(pairs), **result.summary())
