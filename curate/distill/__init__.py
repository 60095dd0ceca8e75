"""Dataset distillation by trajectory matching: TESLA (Cui et al., ICML 2023) and MTT (Cazenavette et al. 2022).

    trajectories = train_experts(images, labels, classes, ExpertConfig(), folder)   # expert_{i}.safetensors
    result = distill(images, labels, classes, trajectories, TeslaConfig(ipc=10), folder)
    scores = evaluate_set(result.images, result.labels, test_images, test_labels, classes, EvalConfig())

Importing this package does not import torch; its functions do.
"""

from curate.distill.baselines import herding, random_real
from curate.distill.convnet import (
    ConvNetSpec,
    convnet,
    convnet3,
    flatten_params,
    functional_forward,
    init_params,
    param_count,
)
from curate.distill.dsa import DSAConfig, DSAParams
from curate.distill.evaluate import EvalConfig, evaluate_set, train_on_set
from curate.distill.experts import ExpertConfig, load_trajectory, train_expert, train_experts
from curate.distill.matching import MatchGradients, matching_loss, tesla_gradients, unrolled_gradients
from curate.distill.tesla import DistillResult, TeslaConfig, distill

__all__ = [
    "ConvNetSpec",
    "DSAConfig",
    "DSAParams",
    "DistillResult",
    "EvalConfig",
    "ExpertConfig",
    "MatchGradients",
    "TeslaConfig",
    "convnet",
    "convnet3",
    "distill",
    "evaluate_set",
    "flatten_params",
    "functional_forward",
    "herding",
    "init_params",
    "load_trajectory",
    "matching_loss",
    "param_count",
    "random_real",
    "tesla_gradients",
    "train_expert",
    "train_experts",
    "train_on_set",
    "unrolled_gradients",
]
