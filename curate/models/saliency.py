"""Patch saliency: how much each p x p patch of an image matters, as an N x (g*g) score array (row-major patches).

Two sources:

- `clip_saliency`, for image-text pools (the patch-drop export): gradient x input of the cosine similarity
  between the image's CLIP embedding and its own caption's embedding, summed in absolute value over each patch's
  pixels and channels. Web pools carry no class labels, so the GradCAM-of-a-classifier ranking of the DQ paper
  has no target to explain; the image-caption match is the signal CLIP training learns from, so the patches it
  depends on are the ones worth keeping verbatim. The run's own embedding model scores them, so the ranking is
  the one its other scores (DFN, SemDeDup, DQ) came from. Gradient x input is taken in the model's normalized
  input space (grad w.r.t. pixels times pixels minus the normalization mean), attributing relative to the mean
  colour; the image is differentiably resized from the MAE's input size to the CLIP's, so scores fall on the
  MAE's patch grid exactly.
- `classifier_saliency`, for labelled data: GradCAM (Selvaraju et al. 2017) of a CNN such as
  curate.dynamic.classify.small_cnn, the ranking the DQ reference code uses (GradCAM++ of a ResNet-18 there),
  or gradient x input of the class logit. The target is each image's label, or its predicted class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from curate.models.loading import LoadedModel

SALIENCY_BATCH = 64


def patch_sums(attribution: torch.Tensor, patch_size: int) -> np.ndarray:
    """Returns the N x (g*g) per-patch sums of an N x S x S attribution map (row-major patches)."""
    n, size, _ = attribution.shape
    g = size // patch_size
    sums = attribution.reshape(n, g, patch_size, g, patch_size).sum(dim=(2, 4))
    return sums.reshape(n, g * g).detach().float().cpu().numpy()


def clip_saliency(loaded: LoadedModel, pixels: np.ndarray, captions: list[str], patch_size: int,
                  batch_size: int = SALIENCY_BATCH) -> np.ndarray:
    """Returns N x (g*g) patch scores of uint8 N x S x S x 3 pixels: |gradient x input| of the cosine between
    each image's CLIP embedding and its caption's, summed over each patch (see the module docstring)."""
    parts = [_clip_batch(loaded, pixels[i:i + batch_size], captions[i:i + batch_size], patch_size)
             for i in range(0, len(pixels), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, (pixels.shape[1] // patch_size) ** 2), np.float32)


def _clip_batch(loaded: LoadedModel, pixels: np.ndarray, captions: list[str], patch_size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    from curate.models.pairs import normalize

    model, device = loaded.model, loaded.device
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2).float().div_(255)
    x.requires_grad_(True)
    resized = x if x.shape[-1] == loaded.image_size else F.interpolate(
        x, size=(loaded.image_size, loaded.image_size), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        text = model.encode_text(loaded.tokenizer(captions).to(device), normalize=True).float()
    image = model.encode_image(normalize(resized, loaded.mean, loaded.std), normalize=True).float()
    (grad,) = torch.autograd.grad((image * text).sum(), x)  # each image's own cosine: samples are independent
    mean = torch.tensor(loaded.mean, device=device).view(1, 3, 1, 1)
    return patch_sums((grad * (x.detach() - mean)).abs().sum(1), patch_size)


def classifier_saliency(model: torch.nn.Module, images: torch.Tensor, patch_size: int,
                        labels: torch.Tensor | None = None, method: str = "gradcam",
                        layer: torch.nn.Module | None = None, batch_size: int = SALIENCY_BATCH) -> np.ndarray:
    """Returns N x (g*g) patch scores of a classifier's float N x C x S x S inputs (as it was trained on them).

    method "gradcam": ReLU(sum_k mean(dscore/dA_k) * A_k) at `layer` (default: the module feeding the last
    AdaptiveAvgPool2d, small_cnn's final ReLU), upsampled bilinearly to S x S and summed per patch.
    method "gradxinput": |dscore/dx * x| summed over channels and per patch. The score is the logit of each
    image's label (its predicted class when `labels` is None). The model runs in eval mode (restored after).
    """
    if method not in ("gradcam", "gradxinput"):
        raise ValueError(f"method must be gradcam or gradxinput, got {method!r}")
    was_training = model.training
    model.eval()
    layer = layer or _cam_layer(model)
    try:
        parts = [_classifier_batch(model, images[i:i + batch_size], patch_size,
                                   None if labels is None else labels[i:i + batch_size], method, layer)
                 for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(parts)


def _classifier_batch(model: torch.nn.Module, images: torch.Tensor, patch_size: int, labels: torch.Tensor | None,
                      method: str, layer: torch.nn.Module) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        x = images.detach().clone().requires_grad_(True)
        logits = model(x)
    finally:
        handle.remove()
    target = logits.argmax(1) if labels is None else labels.to(logits.device)
    score = logits.gather(1, target.view(-1, 1)).sum()
    if method == "gradxinput":
        (grad,) = torch.autograd.grad(score, x)
        return patch_sums((grad * x.detach()).abs().sum(1), patch_size)
    activation = captured[-1]
    (grad,) = torch.autograd.grad(score, activation)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * activation).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return patch_sums(cam[:, 0], patch_size)


def _cam_layer(model: torch.nn.Module) -> torch.nn.Module:
    """Returns the module whose output feeds the model's last AdaptiveAvgPool2d, else its last Conv2d."""
    from torch import nn

    modules = [m for m in model.modules() if not list(m.children())]
    pools = [i for i, m in enumerate(modules) if isinstance(m, nn.AdaptiveAvgPool2d)]
    if pools and pools[-1] > 0:
        return modules[pools[-1] - 1]
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("no GradCAM layer found: pass layer=")
    return convs[-1]
