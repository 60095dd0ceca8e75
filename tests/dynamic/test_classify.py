"""The classification trainer on real synth images: learns, is seeded, forwards only the pruner's selection."""

import pytest
import torch

from curate.dynamic import make_pruner
from curate.dynamic.classify import ClassifyConfig, accuracy, augment, load_labelled, schedule, train_classifier
from curate.errors import UsageError
from curate.synth import CONCEPTS, generate_pool


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    train = tmp_path_factory.mktemp("train")
    generate_pool(train, samples=4, hq_samples=0, heldout_per_concept=4, seed=1)
    images, labels, names = load_labelled(train / "heldout.parquet", 32)
    return images, labels, names, train / "heldout.parquet"


def test_loads_labels_by_class_name(labelled, tmp_path):
    images, labels, names, _ = labelled
    assert images.shape == (4 * len(CONCEPTS), 3, 32, 32) and len(names) == len(CONCEPTS)
    assert labels.bincount().tolist() == [4] * len(CONCEPTS)
    other = tmp_path / "other"
    generate_pool(other, samples=4, hq_samples=0, heldout_per_concept=1, seed=2)
    _, test_labels, test_names = load_labelled(other / "heldout.parquet", 32, classnames=names[::-1])
    assert test_names == names[::-1] and sorted(test_labels.tolist()) == list(range(len(CONCEPTS)))
    with pytest.raises(UsageError, match="classes the training set lacks"):
        load_labelled(other / "heldout.parquet", 32, classnames=names[:10])


def test_augment_and_schedule():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment(images, torch.Generator().manual_seed(0))
    assert a.shape == images.shape and torch.equal(a, augment(images, torch.Generator().manual_seed(0)))
    assert schedule(0.5, 10, 0.1) == pytest.approx(0.05) and schedule(1, 10, 0.1) == pytest.approx(0.1)
    assert schedule(10, 10, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_learns_is_seeded_and_leaves_the_global_rng_alone(labelled):
    images, labels, names, _ = labelled
    state = torch.get_rng_state()
    config = ClassifyConfig(epochs=10, batch_size=32, width=8)
    model, result = train_classifier(images, labels, len(names), config)
    assert torch.equal(torch.get_rng_state(), state)
    assert result.epoch_losses[-1] < 0.7 * result.epoch_losses[0]
    assert result.samples_forwarded == 10 * len(images) and result.saved_fraction == 0.0
    assert accuracy(model, images, labels) > 5 / len(names)
    again, _ = train_classifier(images, labels, len(names), config)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_pruned_training_forwards_the_selection(labelled):
    images, labels, names, _ = labelled
    pruner = make_pruner("infobatch", len(images), 4, prune_ratio=0.5, seed=0)
    _, result = train_classifier(images, labels, len(names), ClassifyConfig(epochs=4, batch_size=64, width=8), pruner)
    stats = pruner.stats()
    assert result.samples_forwarded == stats.total_forwarded < 4 * len(images)
    assert result.saved_fraction == stats.saved_fraction > 0
