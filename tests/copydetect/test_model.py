"""The copy descriptor: InfoNCE and KoLeo against hand computations, the copy augmentations, and loading a model
from a train-copy-detector folder, a TorchScript file and an SSCD-layout state dict (each written here)."""

import math

import numpy as np
import pytest
import torch

from curate.copydetect.augment import AugmentConfig, copy_views
from curate.copydetect.loss import info_nce, koleo
from curate.copydetect.model import (
    SSCD_CONFIG,
    DescriptorConfig,
    build_descriptor,
    describe_pixels,
    descriptor_fingerprint,
    load_descriptor,
    save_descriptor,
)
from curate.errors import UsageError


def test_info_nce_equals_the_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    t = 0.5
    z = torch.cat([z1, z2]).tolist()
    positive = {0: 2, 1: 3, 2: 0, 3: 1}
    expected = 0.0
    for a in range(4):
        logits = [sum(x * y for x, y in zip(z[a], z[b], strict=True)) / t for b in range(4) if b != a]
        others = [b for b in range(4) if b != a]
        expected -= logits[others.index(positive[a])] - math.log(sum(math.exp(v) for v in logits))
    assert info_nce(z1, z2, t).item() == pytest.approx(expected / 4, rel=1e-6)


def test_koleo_is_minus_the_mean_log_nearest_neighbour_distance():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    nearest = [1.0, math.dist((3, 4), (0, 1)), 1.0]  # each point's closest other point
    assert koleo(z).item() == pytest.approx(-sum(math.log(d) for d in nearest) / 3, rel=1e-5)


def test_copy_views_are_seeded_in_range_and_differ_from_the_source():
    pixels = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    first = copy_views(pixels, 32, AugmentConfig(), torch.Generator().manual_seed(3))
    again = copy_views(pixels, 32, AugmentConfig(), torch.Generator().manual_seed(3))
    other = copy_views(pixels, 32, AugmentConfig(), torch.Generator().manual_seed(4))
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1


def test_every_augmentation_can_be_switched_off():
    none = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), pad_p=0, flip_p=0, jitter=0, blur_p=0,
                         overlay_p=0, jpeg_p=0)
    pixels = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    views = copy_views(pixels, 16, none, torch.Generator().manual_seed(0))
    assert torch.allclose(views, pixels.float() / 255, atol=1e-5)


def test_a_folder_round_trip_gives_the_same_unit_descriptors(tmp_path):
    config = DescriptorConfig(dim=16, image_size=24, width=8)
    module = build_descriptor(config, seed=1).eval()
    save_descriptor(module, config, tmp_path / "model")
    loaded = load_descriptor(str(tmp_path / "model"), "cpu")
    pixels = np.random.default_rng(0).integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    vectors = describe_pixels(loaded, pixels, batch_size=2)
    assert loaded.kind == "curate" and loaded.dim == 16 and loaded.image_size == 24
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    with torch.inference_mode():
        direct = module((torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
                         - torch.tensor(config.mean).view(1, 3, 1, 1)) / torch.tensor(config.std).view(1, 3, 1, 1))
    assert np.allclose(vectors, direct.numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def sscd_module():
    return build_descriptor(SSCD_CONFIG, seed=2).eval()


def test_an_sscd_state_dict_in_torchvision_names_loads(tmp_path, sscd_module):
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    state = {}
    for key, value in sscd_module.state_dict().items():
        parts = key.split(".")
        if parts[0] == "backbone":
            parts[1] = names[int(parts[1])]  # SSCD's layout: backbone.conv1.weight, backbone.layer1.0...
        state["model." + ".".join(parts)] = value
    torch.save({"state_dict": state}, tmp_path / "sscd.pt")
    loaded = load_descriptor(str(tmp_path / "sscd.pt"), "cpu", image_size=64)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert loaded.kind == "state_dict" and loaded.dim == 512
    reference = describe_pixels(load_descriptor_module(sscd_module, 64), pixels)
    assert np.allclose(describe_pixels(loaded, pixels), reference, atol=1e-5)


def load_descriptor_module(module, size):
    from curate.copydetect.model import LoadedDescriptor

    return LoadedDescriptor(module, size, SSCD_CONFIG.mean, SSCD_CONFIG.std, 512, "cpu", "test")


def test_a_torchscript_file_loads_with_sscd_preprocessing(tmp_path):
    config = DescriptorConfig(dim=8, image_size=32, width=8)
    module = build_descriptor(config, seed=0).eval()
    torch.jit.trace(module, torch.zeros(1, 3, 32, 32)).save(str(tmp_path / "model.torchscript.pt"))
    loaded = load_descriptor(str(tmp_path / "model.torchscript.pt"), "cpu", image_size=32)
    assert loaded.kind == "torchscript" and loaded.dim == 8 and loaded.mean == SSCD_CONFIG.mean
    assert load_descriptor(str(tmp_path / "model.torchscript.pt"), "cpu").image_size == 288  # SSCD's default
    pixels = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    folder = save_descriptor(module, config, tmp_path / "folder")
    assert np.allclose(describe_pixels(loaded, pixels), describe_pixels(load_descriptor(str(folder), "cpu"), pixels),
                       atol=1e-5)


def test_fingerprints_follow_the_weights(tmp_path):
    config = DescriptorConfig(dim=8, width=8)
    save_descriptor(build_descriptor(config, seed=0), config, tmp_path / "a")
    save_descriptor(build_descriptor(config, seed=0), config, tmp_path / "b")
    save_descriptor(build_descriptor(config, seed=1), config, tmp_path / "c")
    prints = [descriptor_fingerprint(str(tmp_path / n)) for n in "abc"]
    assert prints[0] == prints[1] != prints[2]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "copy_detector.json"),
    (lambda p: (p / "bad.pt").write_bytes(b"not a checkpoint") and p / "bad.pt", "could not read"),
    (lambda p: torch.save({"fc.weight": torch.zeros(2, 2)}, p / "other.pt") or p / "other.pt", "not an sscd_resnet50"),
])
def test_unloadable_models_get_one_line_errors(tmp_path, make, message):
    with pytest.raises(UsageError, match=message) as error:
        load_descriptor(str(make(tmp_path)), "cpu")
    assert "\n" not in str(error.value)


def test_an_unknown_architecture_is_a_one_line_error():
    with pytest.raises(UsageError, match="unknown copy-detector --arch"):
        build_descriptor(DescriptorConfig(arch="vit-huge"))
