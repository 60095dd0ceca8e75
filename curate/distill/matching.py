"""The trajectory-matching objective of MTT (Cazenavette et al. 2022) and TESLA's constant-memory gradient of it
(Cui et al. 2023).

From an expert's parameters theta*_t, the student takes N SGD steps of learning rate alpha on minibatches of the
synthetic images (DSA-augmented), theta_{i+1} = theta_i - alpha g_i with g_i the gradient of the cross-entropy
at theta_i on batch i; the loss is ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2.

- `unrolled_gradients(detach=False)` is MTT: autograd through all N steps, whose graph (every step's activations
  and their double-backward) grows with N.
- `tesla_gradients` is TESLA: it drops the second-order terms through theta_i (each g_i taken at theta_i as a
  constant), which makes theta_N = theta_0 - alpha sum_i g_i, so with G = dL/dtheta_N every dL/dg_i = -alpha G.
  Pass 1 runs the N steps without a graph and keeps only the gradient sum; pass 2 walks the same steps again
  (recomputing each theta_i instead of storing N snapshots), rebuilds one step's graph at a time with
  create_graph, and backpropagates <-alpha G, g_i> into that step's synthetic images. dL/dalpha = <G, -sum g_i>.
  Memory is constant in N: the parameters, the gradient sum and one step's graph.
- `unrolled_gradients(detach=True)` is the same approximation by plain autograd (theta_i detached inside each
  gradient): it equals `tesla_gradients` to float precision, which the tests check.

The steps use the reference's minibatching: a random permutation of the synthetic set split into batch_syn
chunks, taken from the end, a new permutation when they run out; and one per-image DSA draw per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from curate.distill.convnet import ConvNetSpec
    from curate.distill.dsa import DSAConfig, DSAParams


@dataclass
class InnerStep:
    """One student step: the synthetic images it uses (indices) and their augmentation (None: none)."""

    indices: torch.Tensor
    augmentation: DSAParams | None


@dataclass
class MatchGradients:
    """The matching loss and its gradients w.r.t. the synthetic images and the learning rate alpha."""

    loss: float
    images: torch.Tensor
    lr: float


def make_plan(n: int, syn_steps: int, batch_syn: int, image_size: int, generator: torch.Generator,
              dsa_config: DSAConfig | None) -> list[InnerStep]:
    """Returns the minibatches and augmentations of `syn_steps` student steps over `n` synthetic images, drawn from
    `generator` (no augmentation when dsa_config is None)."""
    import torch

    from curate.distill import dsa

    chunks: list[torch.Tensor] = []  # CPU indices (the generator's device); they index GPU tensors too
    plan = []
    for _ in range(syn_steps):
        if not chunks:
            chunks = list(torch.randperm(n, generator=generator).split(batch_syn))
        indices = chunks.pop()
        augmentation = None if dsa_config is None else dsa.draw(len(indices), image_size, generator, dsa_config)
        plan.append(InnerStep(indices, augmentation))
    return plan


def inner_loss(theta: torch.Tensor, images: torch.Tensor, targets: torch.Tensor, spec: ConvNetSpec) -> torch.Tensor:
    """Returns the student's mean cross-entropy on the images: targets are class indices or soft probabilities."""
    import torch.nn.functional as F

    from curate.distill.convnet import functional_forward

    return F.cross_entropy(functional_forward(theta, images, spec), targets)


def soft_labels(images: torch.Tensor, params: torch.Tensor, spec: ConvNetSpec) -> torch.Tensor:
    """Returns the softmax of the network with flat parameters `params` on the (unaugmented) images, without a
    graph: TESLA's soft labels from the target expert."""
    import torch

    from curate.distill.convnet import functional_forward

    with torch.no_grad():
        return torch.softmax(functional_forward(params, images.detach(), spec), dim=1)


def _augment(x: torch.Tensor, step: InnerStep, dsa_config: DSAConfig | None) -> torch.Tensor:
    from curate.distill import dsa

    return x if step.augmentation is None else dsa.apply(x, step.augmentation, dsa_config)


def _distance(start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (start - target).pow(2).sum()


def student_run(images: torch.Tensor, targets: torch.Tensor, lr: float, start: torch.Tensor, spec: ConvNetSpec,
                plan: list[InnerStep], dsa_config: DSAConfig | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (theta_N, sum of the N step gradients) of the student's steps from `start`, without a graph (TESLA's
    first pass)."""
    import torch

    theta, total = start.detach().clone(), torch.zeros_like(start)
    images = images.detach()
    for step in plan:
        x = _augment(images[step.indices], step, dsa_config)
        point = theta.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(inner_loss(point, x, targets[step.indices], spec), point)
        theta = (theta.detach() - lr * grad).detach()
        total += grad
    return theta, total


def matching_loss(images: torch.Tensor, targets: torch.Tensor, lr: float, start: torch.Tensor, target: torch.Tensor,
                  spec: ConvNetSpec, plan: list[InnerStep], dsa_config: DSAConfig | None) -> float:
    """Returns the normalized matching loss ||theta_N - target||^2 / ||start - target||^2 (no gradients)."""
    theta, _ = student_run(images, targets, lr, start, spec, plan, dsa_config)
    return float(_distance(theta, target) / _distance(start, target))


def tesla_gradients(images: torch.Tensor, targets: torch.Tensor, lr: float, start: torch.Tensor, target: torch.Tensor,
                    spec: ConvNetSpec, plan: list[InnerStep], dsa_config: DSAConfig | None) -> MatchGradients:
    """Returns the matching loss and TESLA's two-pass gradients w.r.t. the synthetic images and alpha; memory is
    constant in the number of steps."""
    import torch

    theta_n, total = student_run(images, targets, lr, start, spec, plan, dsa_config)
    distance = _distance(start, target)
    residual = theta_n - target
    loss = residual.pow(2).sum() / distance
    outer = 2 * residual / distance  # G = dL/dtheta_N
    image_grad = torch.zeros_like(images)
    theta = start.detach().clone()
    for step in plan:
        batch = images.detach()[step.indices].requires_grad_(True)
        point = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            x = _augment(batch, step, dsa_config)
            (grad,) = torch.autograd.grad(inner_loss(point, x, targets[step.indices], spec), point, create_graph=True)
            (batch_grad,) = torch.autograd.grad(grad, batch, grad_outputs=-lr * outer)
        image_grad.index_add_(0, step.indices.to(images.device), batch_grad)
        theta = (theta - lr * grad.detach()).detach()
    return MatchGradients(float(loss), image_grad, float(-(outer * total).sum()))


def unrolled_gradients(images: torch.Tensor, targets: torch.Tensor, lr: float, start: torch.Tensor,
                       target: torch.Tensor, spec: ConvNetSpec, plan: list[InnerStep], dsa_config: DSAConfig | None,
                       detach: bool = False) -> MatchGradients:
    """Returns the matching loss and its autograd gradients through all N steps: MTT's full unroll, or with
    `detach` each g_i taken at a detached theta_i (the objective TESLA differentiates). Memory grows with N."""
    import torch

    leaf = images.detach().clone().requires_grad_(True)
    alpha = torch.tensor(lr, dtype=images.dtype, requires_grad=True)
    theta = start.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        for step in plan:
            x = _augment(leaf[step.indices], step, dsa_config)
            point = theta.detach().requires_grad_(True) if detach else theta
            (grad,) = torch.autograd.grad(inner_loss(point, x, targets[step.indices], spec), point, create_graph=True)
            theta = theta - alpha * grad
        loss = _distance(theta, target) / _distance(start, target)
        image_grad, lr_grad = torch.autograd.grad(loss, [leaf, alpha])
    return MatchGradients(float(loss.detach()), image_grad, float(lr_grad))
