"""The evaluation protocol: fresh ConvNets trained on a set alone reach high held-out accuracy on a separable
problem, are reproducible per seed, honour the set's learning rate, and train on soft labels."""

import pytest
import torch

from curate.distill.convnet import ConvNetSpec, flatten_params, init_params
from curate.distill.evaluate import EvalConfig, accuracy, evaluate_set, train_on_set

CONFIG = EvalConfig(epochs=30, width=16)


def patterns(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 8 px images: a vertical ramp, a horizontal ramp, a centred blob; plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat(per_class)
    ramp = torch.linspace(-1, 1, 8)
    blob = 0.66 - ramp[:, None] ** 2 - ramp[None, :] ** 2
    base = torch.stack([ramp[:, None].expand(8, 8), ramp[None, :].expand(8, 8), blob])[:, None].expand(3, 3, 8, 8)
    return 2 * base[labels] + 0.5 * torch.randn(len(labels), 3, 8, 8, generator=generator), labels


@pytest.fixture(scope="module")
def task():
    return (*patterns(6, 0), *patterns(50, 1))


def test_defaults_are_the_references():
    config = EvalConfig()
    assert (config.epochs, config.lr, config.momentum, config.weight_decay, config.batch_size) == (
        300, 0.01, 0.9, 0.0005, 256)
    assert (config.width, config.depth, config.dsa) == (128, 3, True)
    assert config.decay_after == 151 and EvalConfig(epochs=1000).decay_after == 501


def test_a_separable_set_reaches_high_accuracy_and_is_deterministic_per_seed(task):
    images, labels, test_images, test_labels = task
    result = evaluate_set(images, labels, test_images, test_labels, 3, CONFIG, seeds=(0, 1))
    assert result["mean"] >= 0.95, result
    assert result["seeds"] == [0, 1] and len(result["accuracies"]) == 2
    assert result["std"] == pytest.approx(abs(result["accuracies"][0] - result["accuracies"][1]) / 2)
    assert (result["epochs"], result["lr"], result["soft"], result["images"]) == (30, 0.01, False, 18)
    assert result["seconds"] > 0
    again = evaluate_set(images, labels, test_images, test_labels, 3, CONFIG, seeds=(0, 1))
    assert again["accuracies"] == result["accuracies"]
    first, second = (flatten_params(train_on_set(images, labels, 3, CONFIG, seed=s)) for s in (0, 0))
    assert torch.equal(first, second)
    assert not torch.equal(first, flatten_params(train_on_set(images, labels, 3, CONFIG, seed=1)))


def test_the_given_learning_rate_is_used(task):
    images, labels, _, _ = task
    frozen = train_on_set(images, labels, 3, EvalConfig(epochs=2, width=16), seed=4, lr=0.0)
    assert torch.equal(flatten_params(frozen), init_params(ConvNetSpec(3, 3, 8, 16), 4))
    result = evaluate_set(images, labels, images, labels, 3, EvalConfig(epochs=1, width=16), seeds=(0,), lr=0.05)
    assert result["lr"] == 0.05


def test_soft_labels_train_by_cross_entropy_against_the_targets(task):
    images, labels, test_images, test_labels = task
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    config = EvalConfig(epochs=3, width=16)
    hard, soft = train_on_set(images, labels, 3, config, 2), train_on_set(images, one_hot, 3, config, 2)
    torch.testing.assert_close(flatten_params(soft), flatten_params(hard))  # one-hot targets: the same gradients
    smoothed = 0.8 * one_hot + 0.2 / 3
    result = evaluate_set(images, smoothed, test_images, test_labels, 3, CONFIG, seeds=(0,))
    assert result["soft"] and result["mean"] >= 0.95, result
    assert accuracy(train_on_set(images, smoothed, 3, CONFIG, 0), test_images, test_labels) == result["mean"]


@pytest.mark.parametrize("bad", ["count", "soft_shape", "class_range"])
def test_mismatched_labels_are_refused(task, bad):
    images, labels, _, _ = task
    targets = {"count": labels[:-1], "soft_shape": torch.ones(len(labels), 2) / 2,
               "class_range": labels + 1}[bad]
    with pytest.raises(ValueError):
        train_on_set(images, targets, 3, CONFIG, 0)
