"""Copy-detection descriptors: the networks, and loading one from a train-copy-detector folder or a user's file.

A descriptor network maps a normalized image to one L2-normalized vector; two copies of an image (crops, shifts,
re-encodes, overlays) land close, distinct images apart. Architectures are a registry (ARCHS): `tiny`, a small
CNN that trains on CPU on a run's own images, and `sscd_resnet50`, SSCD's (Pizzi et al. 2022) released
architecture: a torchvision ResNet-50 trunk, GeM pooling (p = 3), a linear projection to 512, L2 norm.

A model is (1) a folder written by `curate train-copy-detector` (copy_detector.json + model.safetensors), (2) a
TorchScript file such as SSCD's released `sscd_disc_mixup.torchscript.pt`, whatever its name (TorchScript is code:
it loads only with trust_torchscript, the --trust-torchscript flag, given again by each command that loads it), or
(3) a state-dict file (.pt/.pth read with torch.load(weights_only=True), or .safetensors) of the sscd_resnet50
architecture, in any of SSCD's key layouts: its torchvision model (backbone.conv1.*, ...,
backbone.layer4.*, the projection as backbone.fc.*), a trunk with the projection as embeddings.1.*, a plain
torchvision ResNet-50 (conv1.*, ..., fc.* a Linear(2048, 512)), this module's own (backbone.0.*, ...), each
optionally under a Lightning-style state_dict and module./model. prefixes. Files are fed SSCD's preprocessing:
the whole image resized to 288 x 288, ImageNet mean and std, unless `image_size` says otherwise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import UsageError
from curate.models.weights import first_line, is_torchscript, load_torchscript, read_weights

DESCRIPTOR_FILE = "copy_detector.json"
WEIGHTS_FILE = "model.safetensors"
SSCD_IMAGE_SIZE = 288
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision ResNet child names -> their index in the trunk Sequential (children up to layer4).
_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class DescriptorConfig:
    """A descriptor network: its architecture (a key of ARCHS), output dimension, input side, normalization,
    the tiny CNN's base width and the GeM pooling exponent."""

    arch: str = "tiny"
    dim: int = 128
    image_size: int = 64
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    width: int = 32
    gem_p: float = 3.0


@dataclass
class LoadedDescriptor:
    """A descriptor network ready to use: the module (eval mode, on `device`), its input side and normalization,
    its output dimension, and what it was loaded from (curate, torchscript or state_dict)."""

    module: Any
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    device: str
    kind: str
    config: DescriptorConfig | None = field(default=None, repr=False)


def _modules():
    """Returns the nn building blocks (torch imported lazily)."""
    import torch
    from torch import nn

    class GeM(nn.Module):
        """Generalized-mean pooling over the spatial positions: (mean x^p)^(1/p), x clamped positive."""

        def __init__(self, p: float):
            super().__init__()
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    class Descriptor(nn.Module):
        """trunk -> GeM -> linear -> L2 norm (the linear is embeddings[1], SSCD's layout)."""

        def __init__(self, backbone: nn.Module, features: int, dim: int, p: float):
            super().__init__()
            self.backbone = backbone
            self.embeddings = nn.Sequential(GeM(p), nn.Linear(features, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.embeddings(self.backbone(x)), dim=1)

    return nn, Descriptor


def _tiny(config: DescriptorConfig):
    nn, Descriptor = _modules()
    w = config.width

    def block(cin: int, cout: int, stride: int) -> list:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    layers = block(3, w, 1)
    channels = [w, 2 * w, 4 * w, 4 * w]
    for cin, cout in zip([w, *channels[:-1]], channels, strict=True):
        layers += block(cin, cout, 2) + block(cout, cout, 1)
    return Descriptor(nn.Sequential(*layers), channels[-1], config.dim, config.gem_p)


def _sscd_resnet50(config: DescriptorConfig):
    from torchvision.models import resnet50

    nn, Descriptor = _modules()
    trunk = nn.Sequential(*list(resnet50(weights=None).children())[:-2])
    return Descriptor(trunk, 2048, config.dim, config.gem_p)


ARCHS = {"tiny": _tiny, "sscd_resnet50": _sscd_resnet50}
SSCD_CONFIG = DescriptorConfig(arch="sscd_resnet50", dim=512, image_size=SSCD_IMAGE_SIZE)


def build_descriptor(config: DescriptorConfig, seed: int = 0):
    """Returns a new descriptor network of `config` with weights initialised from `seed` (global RNG restored);
    raises UsageError for an unknown architecture."""
    import torch

    if config.arch not in ARCHS:
        raise UsageError(f"unknown copy-detector --arch {config.arch!r}; choose one of {', '.join(ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHS[config.arch](config)


def save_descriptor(module, config: DescriptorConfig, out: Path) -> Path:
    """Writes a model folder (DESCRIPTOR_FILE + WEIGHTS_FILE, each atomically) that load_descriptor reads; returns
    the folder."""
    from safetensors.torch import save

    from curate.rundir import RunDir

    folder = RunDir(out)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    folder.write_bytes(WEIGHTS_FILE, save(state))
    folder.write_bytes(DESCRIPTOR_FILE, (json.dumps(asdict(config), indent=2) + "\n").encode())
    return Path(out)


def load_descriptor(path: str, device: str = "auto", image_size: int | None = None,
                    trust_torchscript: bool = False) -> LoadedDescriptor:
    """Returns the descriptor at `path` (a train-copy-detector folder, a TorchScript file, which loads only with
    `trust_torchscript`, or an sscd_resnet50 state-dict file) in eval mode on `device`; raises UsageError with
    what to fix when it cannot load."""
    from curate.models.loading import pick_device

    device, where = pick_device(device), Path(path)
    if where.is_dir():
        loaded = _load_folder(where)
    elif where.is_file():
        loaded = _load_file(where, trust_torchscript)
    else:
        raise UsageError(f"copy-detector model {path} does not exist; give a `curate train-copy-detector` folder, "
                         "an SSCD TorchScript file or an sscd_resnet50 state-dict file")
    module, config, kind = loaded
    size = image_size or config.image_size
    module.to(device).eval()
    return LoadedDescriptor(module, size, config.mean, config.std, _output_dim(module, size, device, config.dim),
                            device, kind, config)


def _load_folder(folder: Path):
    from safetensors.torch import load_file

    if not (folder / DESCRIPTOR_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise UsageError(f"{folder} has no {DESCRIPTOR_FILE} and {WEIGHTS_FILE}; give a folder written by "
                         "`curate train-copy-detector` (or a model file)")
    try:
        raw = json.loads((folder / DESCRIPTOR_FILE).read_text())
        config = DescriptorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # unreadable JSON, or fields of no config
        raise UsageError(f"{folder / DESCRIPTOR_FILE} is not a copy-detector config ({first_line(exc)}); "
                         "retrain the folder with `curate train-copy-detector`") from None
    module = build_descriptor(config)
    try:
        module.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except Exception as exc:  # safetensors and torch raise several types; each means "not this model's weights"
        raise UsageError(f"{folder / WEIGHTS_FILE} does not hold the weights {DESCRIPTOR_FILE} describes "
                         f"({first_line(exc)}); retrain the folder with `curate train-copy-detector`") from None
    return module, config, "curate"


def _load_file(path: Path, trust_torchscript: bool):
    if is_torchscript(path):
        return load_torchscript(path, trust_torchscript), SSCD_CONFIG, "torchscript"
    return _from_state_dict(path, read_weights(path, "copy-detector model")), SSCD_CONFIG, "state_dict"


def _from_state_dict(path: Path, state: Any):
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    import torch

    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UsageError(f"{path} holds no state dict; give an sscd_resnet50 state dict or a TorchScript file")
    module = build_descriptor(SSCD_CONFIG)
    remapped = {_sscd_key(k): v for k, v in state.items()}
    expected = module.state_dict()
    missing = [k for k in expected if k not in remapped]
    unexpected = [k for k in remapped if k not in expected]
    misshapen = [k for k in expected if k in remapped and tuple(remapped[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or misshapen:
        example = (missing or unexpected or misshapen)[0]
        raise UsageError(f"{path} is not an sscd_resnet50 state dict ({len(missing)} missing, {len(unexpected)} "
                         f"unexpected and {len(misshapen)} misshapen keys, e.g. {example!r}); give a torchvision-"
                         "layout checkpoint or SSCD's TorchScript file")
    module.load_state_dict(remapped)
    return module


def _sscd_key(key: str) -> str:
    """Returns a state-dict key in this module's layout: prefixes module./model. dropped, a plain torchvision key
    put under backbone., the ResNet's fc (SSCD's torchvision projection) renamed embeddings.1, and torchvision
    child names of the trunk (backbone.conv1, backbone.layer2, ...) turned into their Sequential index."""
    for prefix in ("module.", "model."):
        key = key.removeprefix(prefix)
    parts = key.split(".")
    if parts[0] in (*_RESNET_CHILDREN, "fc"):
        parts = ["backbone", *parts]
    if len(parts) > 2 and parts[0] == "backbone" and parts[1] == "fc":
        parts = ["embeddings", "1", *parts[2:]]
    elif len(parts) > 2 and parts[0] == "backbone" and parts[1] in _RESNET_CHILDREN:
        parts[1] = str(_RESNET_CHILDREN.index(parts[1]))
    return ".".join(parts)


def _output_dim(module, size: int, device: str, expected: int) -> int:
    """Returns the module's output width, found by running one blank image (a TorchScript file declares none)."""
    import torch

    with torch.inference_mode():
        out = module(torch.zeros(1, 3, size, size, device=device))
    if out.ndim != 2:
        raise UsageError(f"the copy-detector model returns a {tuple(out.shape)} tensor, not one vector per image")
    return int(out.shape[1]) or expected


def describe_pixels(loaded: LoadedDescriptor, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Returns float32 N x dim descriptors with unit-L2 rows of uint8 N x S x S x 3 pixels (S = loaded.image_size),
    computed in batches without gradients."""
    import torch

    from curate.models.pairs import normalize

    out = np.zeros((len(pixels), loaded.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            chunk = torch.from_numpy(np.array(pixels[start:start + batch_size]))
            images = normalize(chunk.permute(0, 3, 1, 2).float().div(255), loaded.mean, loaded.std)
            vectors = torch.nn.functional.normalize(loaded.module(images.to(loaded.device)).float(), dim=1)
            out[start:start + len(chunk)] = vectors.cpu().numpy()
    return out


def descriptor_fingerprint(path: str) -> str:
    """Returns a short hash of the model's bytes (a folder's weights and config, or the file), so that retrained
    weights give a stage that read the old ones a new version."""
    where = Path(path)
    files = [where / DESCRIPTOR_FILE, where / WEIGHTS_FILE] if where.is_dir() else [where]
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
