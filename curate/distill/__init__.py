"""Dataset distillation by trajectory matching: TESLA (Cui et al., ICML 2023) and MTT (Cazenavette et al. 2022);
and by recovery from a batch-norm teacher: CDA (Yin & Shen, TMLR 2024) and SRe2L (Yin et al., NeurIPS 2023).

    trajectories = train_experts(images, labels, classes, ExpertConfig(), folder)   # expert_{i}.safetensors
    result = distill(images, labels, classes, trajectories, TeslaConfig(ipc=10), folder)
    scores = evaluate_set(result.images, result.labels, test_images, test_labels, classes, EvalConfig())

    teacher = train_teacher(images, labels, classes, TeacherConfig(arch="convnet"), seed=0)
    slice_ = recover_slice(teacher, range(classes), 0, image_size, mean, std, CDAConfig(), seed=0)  # IPC index 0

Importing this package does not import torch; its functions do.
"""

from curate.distill.baselines import herding, random_real
from curate.distill.cda import CDAConfig, bn_matching_loss, crop_lower_bound, recover_slice
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
from curate.distill.teacher import TeacherConfig, load_teacher, save_teacher, train_teacher
from curate.distill.tesla import DistillResult, TeslaConfig, distill

__all__ = [
    "CDAConfig",
    "ConvNetSpec",
    "DSAConfig",
    "DSAParams",
    "DistillResult",
    "EvalConfig",
    "ExpertConfig",
    "MatchGradients",
    "TeacherConfig",
    "TeslaConfig",
    "bn_matching_loss",
    "convnet",
    "convnet3",
    "crop_lower_bound",
    "distill",
    "evaluate_set",
    "flatten_params",
    "functional_forward",
    "herding",
    "init_params",
    "load_teacher",
    "load_trajectory",
    "matching_loss",
    "param_count",
    "random_real",
    "recover_slice",
    "save_teacher",
    "tesla_gradients",
    "train_expert",
    "train_experts",
    "train_on_set",
    "train_teacher",
    "unrolled_gradients",
]
