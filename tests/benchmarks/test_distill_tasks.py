"""benchmarks/distill_tasks.py's ZCA whitening (the reference's --zca): the training split comes out whitened up to
eps, the held-out split by the training split's transform, and the image grids' way back to pixels inverts it."""

import argparse

import numpy as np
import pytest
import torch

from tests.benchmarks import bench_module


@pytest.fixture(scope="module")
def tasks():
    return bench_module("distill_tasks.py")


def test_zca_whitens_the_training_split_up_to_eps(tasks):
    eps = 0.1
    plain = tasks.load_task("digits", argparse.Namespace(size=8, zca=None))
    white = tasks.load_task("digits", argparse.Namespace(size=8, zca=eps))
    unit = (plain["images"] * plain["std"] + plain["mean"]).flatten(1).double()
    values = torch.linalg.eigvalsh(torch.cov(unit.T)).clamp_min(0)
    whitened = torch.linalg.eigvalsh(torch.cov(white["images"].flatten(1).double().T))
    # ZCA maps covariance eigenvalue s to s / (s + eps): the strong directions to about 1, the weak ones shrink
    assert torch.allclose(whitened.sort().values, (values / (values + eps)).sort().values, atol=1e-4)
    assert white["images"].flatten(1).mean(0).abs().max() < 1e-5
    assert white["test_images"].flatten(1).mean(0).abs().max() > 1e-3  # the training split's mean, not its own


def test_zca_images_go_back_to_the_same_pixels(tasks):
    plain = tasks.load_task("digits", argparse.Namespace(size=16, zca=None))
    white = tasks.load_task("digits", argparse.Namespace(size=16, zca=0.1))
    assert not torch.allclose(plain["images"][:8], white["images"][:8])
    np.testing.assert_array_equal(tasks.to_pixels(white["images"][:8], white),
                                  tasks.to_pixels(plain["images"][:8], plain))
    np.testing.assert_array_equal(tasks.to_pixels(white["test_images"][:8], white),
                                  tasks.to_pixels(plain["test_images"][:8], plain))
