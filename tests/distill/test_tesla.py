"""TESLA: the two-pass constant-memory gradient equals autograd of the same objective; distillation resumes
exactly; it lowers the matching loss on digits and warns about settings that overshoot the expert; its memory does
not grow with the number of student steps."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curate.distill.convnet import ConvNetSpec, init_params
from curate.distill.dsa import DSAConfig
from curate.distill.experts import ExpertConfig, train_expert
from curate.distill.matching import make_plan, matching_loss, soft_labels, tesla_gradients, unrolled_gradients
from curate.distill.tesla import (
    CHECKPOINT,
    TeslaConfig,
    distill,
    init_synthetic,
    iteration_generator,
    matching_warnings,
)

TINY = ConvNetSpec(3, 2, 8, width=4)



def segment(spec: ConvNetSpec, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    start = init_params(spec, 0).to(dtype)
    return start, start + 0.05 * torch.randn(start.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("augment", [True, False])
def test_two_pass_gradients_equal_autograd_of_the_detached_objective(soft, augment):
    start, target = segment(TINY)
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    targets = soft_labels(images, target, TINY) if soft else labels
    config = DSAConfig() if augment else None
    plan = make_plan(4, 5, 2, 8, torch.Generator().manual_seed(3), config)
    tesla = tesla_gradients(images, targets, 0.05, start, target, TINY, plan, config)
    reference = unrolled_gradients(images, targets, 0.05, start, target, TINY, plan, config, detach=True)
    assert tesla.loss == pytest.approx(reference.loss, rel=1e-12)
    assert tesla.lr == pytest.approx(reference.lr, rel=1e-9)
    torch.testing.assert_close(tesla.images, reference.images, rtol=1e-9, atol=1e-15)
    assert tesla.images.abs().max() > 0
    full = unrolled_gradients(images, targets, 0.05, start, target, TINY, plan, config, detach=False)
    assert full.loss == pytest.approx(tesla.loss, rel=1e-12)  # the same forward; the unroll adds 2nd-order terms
    assert not torch.allclose(full.images, tesla.images, rtol=1e-6)
    assert matching_loss(images, targets, 0.05, start, target, TINY, plan, config) == pytest.approx(tesla.loss)


@pytest.fixture(scope="module")
def tiny_experts():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat(6)
    images = torch.randn(len(labels), 3, 8, 8, generator=generator) + labels[:, None, None, None]
    config = ExpertConfig(epochs=3, width=4, batch_size=4)
    return images, labels, [train_expert(images, labels, 2, config, seed) for seed in range(2)]


@pytest.mark.parametrize("soft", [False, True])
def test_a_resumed_distillation_ends_with_the_images_of_an_uninterrupted_one(tiny_experts, tmp_path, soft):
    images, labels, trajectories = tiny_experts
    config = TeslaConfig(ipc=2, iterations=6, syn_steps=5, expert_epochs=1, max_start_epoch=2, lr_img=10.0,
                         width=4, batch_syn=2, checkpoint_every=2, soft_labels=soft)
    whole = distill(images, labels, 2, trajectories, config, tmp_path / "whole")

    def crash(iteration: int, loss: float) -> None:
        if iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(images, labels, 2, trajectories, config, tmp_path / "resumed", callback=crash)
    saved = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert len(saved["losses"]) == 2  # iterations 0, 1 and 2 ran; the checkpoint of the first two was kept
    resumed = distill(images, labels, 2, trajectories, config, tmp_path / "resumed")
    assert torch.equal(resumed.images, whole.images) and resumed.lr == whole.lr
    assert resumed.losses == whole.losses and len(whole.losses) == 6
    assert not torch.equal(whole.images, init_synthetic(images, labels, 2, 2, 0)[0])
    assert torch.equal(whole.labels, torch.tensor([0, 0, 1, 1]))
    again = distill(images, labels, 2, trajectories, config, tmp_path / "whole")  # finished: nothing left to run
    assert torch.equal(again.images, whole.images) and again.losses == whole.losses
    if soft:
        assert whole.soft_labels.shape == (4, 2) and torch.equal(again.soft_labels, whole.soft_labels)
        torch.testing.assert_close(whole.soft_labels.sum(1), torch.ones(4))
    else:
        assert whole.soft_labels is None


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = F.interpolate(torch.tensor(data.images, dtype=torch.float32)[:, None] / 16, size=16, mode="bilinear")
    return (x - x.mean()) / x.std(), torch.tensor(data.target)


def test_distillation_lowers_the_matching_loss_on_digits():
    images, labels = digits()
    trajectories = [train_expert(images, labels, 10, ExpertConfig(epochs=3, width=16, batch_size=128), s)
                    for s in range(2)]
    config = TeslaConfig(ipc=2, iterations=20, syn_steps=10, expert_epochs=1, max_start_epoch=2, lr_img=300.0,
                         width=16, batch_syn=10, seed=1)
    spec = ConvNetSpec(1, 10, 16, width=16)

    def held_out_loss(syn: torch.Tensor, syn_labels: torch.Tensor, lr: float) -> float:
        losses = []  # fixed segments and minibatches, none of them the ones distillation drew
        for k in range(8):
            plan = make_plan(len(syn), 10, 10, 16, iteration_generator(123, k), DSAConfig())
            expert, start = trajectories[k % 2], k % 2
            losses.append(matching_loss(syn, syn_labels, lr, expert[start], expert[start + 1], spec, plan, DSAConfig()))
        return float(np.mean(losses))

    before = held_out_loss(*init_synthetic(images, labels, 10, 2, config.seed), config.lr_teacher)
    result = distill(images, labels, 10, trajectories, config)
    after = held_out_loss(result.images, result.labels, result.lr)
    assert after < 0.85 * before, (before, after)
    assert len(result.losses) == 20 and result.seconds > 0 and result.lr != config.lr_teacher
    assert result.warnings == []
    # five times the expert's lr: the student's 10 steps overshoot the expert's epoch, and the result says so
    overshoot = distill(images, labels, 10, trajectories, dataclasses.replace(config, iterations=3, lr_teacher=0.05))
    assert len(overshoot.warnings) == 1 and "--syn-steps" in overshoot.warnings[0]


def test_only_the_first_iterations_losses_decide_the_overshoot_warning():
    config = TeslaConfig(syn_steps=20, lr_teacher=0.01, expert_epochs=2)
    (warning,) = matching_warnings([12.0, 9.0, 11.0], config)
    assert warning.startswith("the first matching losses average 10.7: after 20 student steps at lr 0.01")
    assert "3.3 times the expert's own move" in warning
    assert matching_warnings([4.0, 4.0], config) == [] and matching_warnings([], config) == []
    assert matching_warnings([1.0] * 10 + [50.0] * 10, config) == []


ALLOCATOR_SLACK_MIB = 16  # RSS moves by a few MiB between identical runs at this size (allocator pages)


def test_memory_stays_flat_in_the_number_of_steps_for_tesla_and_grows_for_mtt():
    script = Path(__file__).parents[2] / "benchmarks" / "tesla_memory.py"
    command = [sys.executable, str(script), "--one", "tesla:2,tesla:40,mtt:2,mtt:40", "--width", "64", "--size", "8",
               "--classes", "4", "--ipc", "8", "--batch-syn", "32"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=180)
    rows = {(r["method"], r["syn_steps"]): r for r in json.loads(done.stdout.strip().splitlines()[-1])}
    budget_mib = 38 * rows["tesla", 2]["params"] * 4 * 1.1 / 2**20 + ALLOCATOR_SLACK_MIB  # 38 more snapshots, + 10%
    tesla_growth = rows["tesla", 40]["iteration_mib"] - rows["tesla", 2]["iteration_mib"]
    mtt_growth = rows["mtt", 40]["iteration_mib"] - rows["mtt", 2]["iteration_mib"]
    assert tesla_growth <= budget_mib, rows
    assert mtt_growth > 3 * budget_mib, rows
