"""ConvNet-3, the network of the dataset-distillation papers (DC, DSA, MTT, TESLA), and a functional forward over
one flat parameter vector so that expert trajectories (one flat vector per epoch) can be applied directly.

The layout follows the reference `ConvNet` (net_width 128, net_depth 3, ReLU, 'instancenorm', 'avgpooling'):
depth x [conv 3x3 (bias) -> GroupNorm(width, width, affine) -> ReLU -> AvgPool 2x2], then one linear layer over
the flattened features. The flat vector concatenates the parameters in `model.parameters()` order (conv weight,
conv bias, norm weight, norm bias per block, then the classifier's weight and bias), the reference ReparamModule's
order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

NORM_EPS = 1e-5  # GroupNorm's default


@dataclass(frozen=True)
class ConvNetSpec:
    """The shape of a ConvNet: input channels, classes, square image size, width and depth (blocks)."""

    channels: int
    classes: int
    image_size: int
    width: int = 128
    depth: int = 3

    @property
    def first_padding(self) -> int:
        """The first conv's padding: 3 for 1-channel 28 px images (MNIST-like, padded to 32 as the reference
        does), else 1."""
        return 3 if self.channels == 1 and self.image_size == 28 else 1

    @property
    def feature_size(self) -> int:
        """The side of the last block's feature map."""
        side = 32 if self.channels == 1 and self.image_size == 28 else self.image_size
        for _ in range(self.depth):
            side //= 2
        if side < 1:
            raise ValueError(f"image size {self.image_size} is too small for depth {self.depth}")
        return side

    def shapes(self) -> list[tuple[int, ...]]:
        """Returns the parameter shapes in flat-vector order."""
        shapes: list[tuple[int, ...]] = []
        cin = self.channels
        for _ in range(self.depth):
            shapes += [(self.width, cin, 3, 3), (self.width,), (self.width,), (self.width,)]
            cin = self.width
        features = self.width * self.feature_size**2
        return [*shapes, (self.classes, features), (self.classes,)]


def param_count(spec: ConvNetSpec | nn.Module) -> int:
    """Returns the number of parameters of a spec's network (or of any module)."""
    if isinstance(spec, ConvNetSpec):
        return sum(_numel(shape) for shape in spec.shapes())
    return sum(p.numel() for p in spec.parameters())


def convnet(spec: ConvNetSpec) -> nn.Sequential:
    """Returns a freshly initialized (PyTorch default init, from the global RNG) ConvNet of the spec."""
    from torch import nn

    layers: list[nn.Module] = []
    cin = spec.channels
    for block in range(spec.depth):
        padding = spec.first_padding if block == 0 else 1
        layers += [nn.Conv2d(cin, spec.width, 3, padding=padding), nn.GroupNorm(spec.width, spec.width, affine=True),
                   nn.ReLU(), nn.AvgPool2d(2, 2)]
        cin = spec.width
    layers += [nn.Flatten(), nn.Linear(spec.width * spec.feature_size**2, spec.classes)]
    return nn.Sequential(*layers)


def convnet3(channels: int, classes: int, image_size: int, width: int = 128) -> nn.Sequential:
    """Returns a freshly initialized ConvNet-3 (three blocks) of the given shape."""
    return convnet(ConvNetSpec(channels, classes, image_size, width, 3))


def init_params(spec: ConvNetSpec, seed: int) -> torch.Tensor:
    """Returns the flat float32 parameters of a ConvNet of the spec initialized from `seed` (PyTorch's default
    init), without touching the caller's global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return flatten_params(convnet(spec))


def flatten_params(model: nn.Module) -> torch.Tensor:
    """Returns a detached copy of the model's parameters concatenated into one flat vector."""
    import torch

    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def unflatten(flat: torch.Tensor, spec: ConvNetSpec) -> list[torch.Tensor]:
    """Returns views of the flat vector shaped as the spec's parameters (raises ValueError on a length mismatch)."""
    shapes = spec.shapes()
    sizes = [_numel(shape) for shape in shapes]
    if flat.numel() != sum(sizes):
        raise ValueError(f"flat parameters have {flat.numel()} values; the network needs {sum(sizes)}")
    return [chunk.view(shape) for chunk, shape in zip(flat.split(sizes), shapes, strict=True)]


def functional_forward(flat_params: torch.Tensor, images: torch.Tensor, spec: ConvNetSpec) -> torch.Tensor:
    """Returns the logits of the spec's ConvNet with parameters `flat_params` on `images` (N x C x S x S);
    differentiable w.r.t. both."""
    import torch.nn.functional as F

    params = unflatten(flat_params, spec)
    x = images
    for block in range(spec.depth):
        weight, bias, norm_weight, norm_bias = params[4 * block:4 * block + 4]
        x = F.conv2d(x, weight, bias, padding=spec.first_padding if block == 0 else 1)
        x = F.group_norm(x, spec.width, norm_weight, norm_bias, eps=NORM_EPS)
        x = F.avg_pool2d(F.relu(x), 2, 2)
    return F.linear(x.flatten(1), params[-2], params[-1])


def load_flat(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    """Copies the flat vector into the model's parameters in place; returns the model."""
    import torch

    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
    if offset != flat.numel():
        raise ValueError(f"flat parameters have {flat.numel()} values; the model has {offset}")
    return model


def _numel(shape: tuple[int, ...]) -> int:
    size = 1
    for side in shape:
        size *= side
    return size
