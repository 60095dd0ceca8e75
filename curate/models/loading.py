"""Loading CLIP models: open_clip names with pretrained tags or checkpoint files, hf-hub: ids, model folders.

Names and tags are checked before anything is downloaded, so a typo or a QuickGELU mismatch fails in a
second with the fix in the message instead of after a multi-gigabyte download. open_clip reads checkpoints with
torch.load(weights_only=True); its refusals get curate.models.weights' one-line errors.
"""

import contextlib
import difflib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from curate.errors import UsageError
from curate.models.weights import first_line, weights_refusal

DEFAULT_MODEL = "curate-tiny"
CONFIG_DIR = Path(__file__).parent / "configs"
FOLDER_CONFIG = "open_clip_config.json"
FOLDER_WEIGHTS = ("*.safetensors", "*.bin", "*.pth")  # what open_clip loads from a local-dir folder
SCHEMAS = ("hf-hub:", "local-dir:")


@dataclass(frozen=True)
class ModelSpec:
    """Which CLIP to use: an open_clip name, hf-hub:org/repo, or a model folder; and its weights."""

    model: str = DEFAULT_MODEL
    pretrained: str | None = None  # a tag of the named model, or a checkpoint file
    random_weights: bool = False  # allow a named model without weights (training from scratch, benchmarks)


@dataclass
class LoadedModel:
    """A CLIP ready to encode: the module, its tokenizer, and its input size and normalization."""

    model: object
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str


def register_configs() -> None:
    """Adds the project's model configs (curate-tiny) to open_clip's registry; safe to call repeatedly."""
    import open_clip

    if DEFAULT_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def resolve_model(spec: ModelSpec) -> tuple[str, str | None]:
    """Returns open_clip's (model_name, pretrained) for the spec without downloading; raises UsageError."""
    register_configs()
    folder = Path(spec.model)
    if folder.is_dir():
        check_folder(folder)
        return f"local-dir:{folder.resolve()}", _no_pretrained(spec)
    if spec.model.startswith(SCHEMAS):
        return spec.model, _no_pretrained(spec)
    name = _known_name(spec.model)
    if spec.pretrained is None:
        if not spec.random_weights:
            raise UsageError(f"--model {name} needs --pretrained TAG or a checkpoint file; tags: {_tags(name)}")
        return name, None
    if os.path.isfile(spec.pretrained):
        return name, spec.pretrained
    _check_tag(name, spec.pretrained)
    return name, spec.pretrained


def check_folder(folder: Path) -> None:
    """Raises UsageError saying what a model folder lacks: a readable FOLDER_CONFIG with a model_cfg (vision_cfg,
    embed_dim), or a weights file (open_clip would give random weights without one); returns nothing."""
    broken = f"model folder {folder} is not a complete open_clip model folder (as `curate train-dfn` writes)"
    try:
        config = json.loads((folder / FOLDER_CONFIG).read_text())
    except FileNotFoundError:
        raise UsageError(f"{broken}: it has no {FOLDER_CONFIG}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{broken}: its {FOLDER_CONFIG} does not read as JSON ({exc})") from None
    model_cfg = config.get("model_cfg") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or not {"vision_cfg", "embed_dim"} <= model_cfg.keys():
        raise UsageError(f"{broken}: its {FOLDER_CONFIG} has no model_cfg with vision_cfg and embed_dim")
    if not any(any(folder.glob(pattern)) for pattern in FOLDER_WEIGHTS):
        raise UsageError(f"{broken}: it has no weights file (open_clip_model.safetensors)")


def _no_pretrained(spec: ModelSpec) -> None:
    if spec.pretrained is not None:
        raise UsageError(f"--pretrained does not apply to {spec.model}: its weights come with it; drop --pretrained")


def _known_name(model: str) -> str:
    import open_clip

    name = model.replace("/", "-")
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see open_clip.list_models()"
        raise UsageError(f"unknown model {model!r}: not an open_clip name, hf-hub: id or model folder{hint}")
    return name


def _tags(name: str) -> str:
    import open_clip

    return ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none (pass a checkpoint file)"


def _check_tag(name: str, tag: str) -> None:
    import open_clip

    if tag not in open_clip.list_pretrained_tags_by_model(name):
        raise UsageError(f"{name} has no pretrained tag {tag!r} and no such file exists; tags: {_tags(name)}")
    tag_quick_gelu = open_clip.get_pretrained_cfg(name, tag).get("quick_gelu", False)
    model_quick_gelu = open_clip.get_model_config(name).get("quick_gelu", False)
    if tag_quick_gelu != model_quick_gelu:
        # open_clip only warns here, and the embeddings come out silently wrong.
        fixed = f"{name}-quickgelu" if tag_quick_gelu else name.removesuffix("-quickgelu")
        activation = "QuickGELU" if tag_quick_gelu else "GELU"
        raise UsageError(
            f"the {tag} weights were trained with {activation} but {name} does not use it; "
            f"use --model {fixed} --pretrained {tag}"
        )


@dataclass(frozen=True)
class ModelConfig:
    """A CLIP's open_clip model config, with the two figures curate reads from it."""

    cfg: dict
    image_size: int
    embed_dim: int


def config_of(spec: ModelSpec) -> ModelConfig:
    """Returns the model config of a name, hf-hub: id or model folder, from open_clip's own config lookup, without
    building the model; raises UsageError as resolve_model does."""
    import open_clip

    name, _ = resolve_model(spec)
    cfg = open_clip.get_model_config(name)
    size = cfg["vision_cfg"].get("image_size", 224)
    return ModelConfig(cfg, size if isinstance(size, int) else size[0], int(cfg["embed_dim"]))


def pick_device(device: str = "auto") -> str:
    """Returns "cuda" when asked for auto and a GPU is visible, else the device asked for (auto -> cpu)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(spec: ModelSpec, device: str = "auto") -> LoadedModel:
    """Returns the model in eval mode with its tokenizer and preprocessing; raises UsageError if it can't load."""
    name, pretrained = resolve_model(spec)
    device = pick_device(device)
    try:
        # Unloaded weights come from seed 0: the same in every worker and every run.
        return _create(name, pretrained, device, seed=0)
    except Exception as exc:  # open_clip, torch and the hub raise many types; each means "can't load this"
        refused = weights_refusal(exc, pretrained if pretrained and os.path.isfile(pretrained) else spec.model)
        if refused is not None:  # open_clip reads checkpoints with torch.load(weights_only=True)
            raise refused from None
        raise UsageError(_load_error(spec, name, pretrained, first_line(exc))) from None


def _load_error(spec: ModelSpec, name: str, pretrained: str | None, error: str) -> str:
    """Returns the one-line error for a model that did not load with `error`, saying what to fix for its kind."""
    if name.startswith("local-dir:"):
        return (f"could not load the model folder {spec.model}: its weights do not read or do not fit its config "
                f"({error}); give a complete folder from `curate train-dfn`")
    if pretrained is not None and os.path.isfile(pretrained):
        return f"could not load the checkpoint {pretrained} into {name}: {error}; pass a state dict of that model"
    return (f"could not load {spec.model} ({pretrained or 'no weights'}): {error}; without network access pass a "
            "model folder or --pretrained CHECKPOINT")


def scratch_model(name: str, seed: int, device: str = "auto") -> LoadedModel:
    """Returns the named open_clip config with random weights initialised from `seed` (global RNG restored)."""
    resolve_model(ModelSpec(name, random_weights=True))  # a one-line error for an unknown name
    return _create(name, None, pick_device(device), seed)


class _NoWeightsWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" warning: random weights are what was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Returns False for the warning (dropped), True for every other record."""
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_when(random_weights: bool):
    quiet = _NoWeightsWarning()
    if random_weights:
        logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


def _create(name: str, pretrained: str | None, device: str, seed: int) -> LoadedModel:
    import open_clip
    import torch

    with torch.random.fork_rng(devices=[]), _quiet_when(pretrained is None):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=pretrained, device=device, weights_only=True)
    model.eval()
    config = model.visual.preprocess_cfg
    size = config["size"] if isinstance(config["size"], int) else config["size"][0]
    return LoadedModel(model, open_clip.get_tokenizer(name), size, tuple(config["mean"]), tuple(config["std"]), device)
