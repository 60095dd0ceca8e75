"""MAE checkpoints: load the official facebookresearch/mae files and curate's own by file, and save curate's.

A checkpoint is a torch file {"model": state_dict} (the official layout), optionally with "curate_mae" (the
config curate trained with). The shape of the network is read from the tensors; heads, which no tensor shape
shows, come from (highest first) a `mae_config.json` beside the weights that names them, the checkpoint's
"curate_mae", or the official rule: encoder width 768 -> 12 heads, 1024 -> 16, 1280 -> 16, else width // 64;
decoder 16 heads at the official width 512, else width // 32 (at least 1 head each). Loading never unpickles: the
file is read by curate.models.weights (torch.load(weights_only=True), or a .safetensors file).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from curate.errors import UsageError
from curate.models.mae import MAEConfig, MaskedAutoencoderViT
from curate.models.weights import read_weights

WEIGHTS_FILE = "mae.pth"
CONFIG_FILE = "mae_config.json"  # optional, beside the weights: {"weights": file name, ...MAEConfig fields}
CONFIG_KEY = "curate_mae"
OFFICIAL_ENCODER_HEADS = {768: 12, 1024: 16, 1280: 16}
OFFICIAL_DECODER_WIDTH, OFFICIAL_DECODER_HEADS = 512, 16


def default_heads(width: int, decoder: bool) -> int:
    """Returns the heads of a width under the official configs' rule (see the module docstring)."""
    if decoder:
        return OFFICIAL_DECODER_HEADS if width == OFFICIAL_DECODER_WIDTH else max(1, width // 32)
    return OFFICIAL_ENCODER_HEADS.get(width, max(1, width // 64))


def infer_config(state: dict, overrides: dict | None = None) -> MAEConfig:
    """Returns the MAEConfig of an official-format state_dict (shapes from its tensors, heads by default_heads),
    with `overrides` (MAEConfig field -> value) applied; raises UsageError for a state_dict that is not an MAE's."""
    for key in ("patch_embed.proj.weight", "pos_embed", "decoder_embed.weight", "decoder_pred.weight"):
        if key not in state:
            why = " (an encoder-only checkpoint cannot reconstruct)" if key.startswith("decoder") else ""
            raise UsageError(f"not an MAE checkpoint: it has no {key}{why}")
    dim, channels, patch, _ = state["patch_embed.proj.weight"].shape
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    if channels != 3 or grid * grid != state["pos_embed"].shape[1] - 1:
        raise UsageError("not an RGB MAE with a square patch grid")
    decoder_dim = state["decoder_embed.weight"].shape[0]
    config = MAEConfig(
        img_size=grid * patch, patch_size=patch, embed_dim=dim, depth=_count_blocks(state, "blocks"),
        num_heads=default_heads(dim, False), decoder_embed_dim=decoder_dim,
        decoder_depth=_count_blocks(state, "decoder_blocks"), decoder_num_heads=default_heads(decoder_dim, True),
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim if "blocks.0.mlp.fc1.weight" in state else 4.0,
    )
    known = {f.name for f in fields(MAEConfig)}
    chosen = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items() if k in known}
    return replace(config, **chosen)


def _count_blocks(state: dict, prefix: str) -> int:
    pattern = re.compile(rf"{prefix}\.(\d+)\.")
    return len({m.group(1) for key in state if (m := pattern.match(key))})


def mae_file(model: str | os.PathLike) -> Path:
    """Returns the weights file of --mae MODEL (a file, or a train-mae folder holding mae.pth); raises
    UsageError when there is none."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise UsageError(f"--mae {model}: no such MAE checkpoint (give a .pth file or a `curate train-mae` folder)")
    return path


def load_mae(model: str | os.PathLike, device: str = "cpu") -> MaskedAutoencoderViT:
    """Returns the MAE of a checkpoint file or train-mae folder, in eval mode on `device`; raises UsageError
    when it can't be read (curate.models.weights.read_weights: weights only, never unpickled)."""
    path = mae_file(model)
    checkpoint = read_weights(path, "--mae")
    if not isinstance(checkpoint, dict):
        raise UsageError(f"--mae {model}: not an MAE checkpoint (expected a dict holding 'model')")
    state = checkpoint.get("model", checkpoint)
    overrides = dict(checkpoint.get(CONFIG_KEY) or {}) | _sidecar(path)
    mae = MaskedAutoencoderViT(infer_config(state, overrides))
    missing, unexpected = mae.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UsageError(f"--mae {model}: parameters do not match an MAE (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return mae.to(device).eval()


def _sidecar(weights: Path) -> dict:
    """Returns the config fields of a mae_config.json beside `weights` that names it, else {}."""
    side = weights.parent / CONFIG_FILE
    if not side.is_file():
        return {}
    try:
        config = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{side}: not readable JSON ({exc})") from None
    return config if config.get("weights") == weights.name else {}


def save_mae(mae: MaskedAutoencoderViT, path: str | os.PathLike) -> Path:
    """Writes {"model": state_dict, "curate_mae": config} at `path` (a temporary file renamed when complete);
    returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    state = {k: v.detach().cpu().contiguous() for k, v in mae.state_dict().items()}
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(mae.config).items()}
    try:
        torch.save({"model": state, CONFIG_KEY: config}, temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
