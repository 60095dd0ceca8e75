"""The copy descriptor: InfoNCE and KoLeo against hand computations, and loading a model from a train-copy-detector
folder, a TorchScript file (only when trusted) and SSCD-layout state dicts (each written here)."""

import math

import numpy as np
import pytest
import torch

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


def test_koleo_with_instances_skips_the_other_views_of_the_same_image():
    z = torch.tensor([[0.0, 0.0], [0.0, 0.1], [0.0, 1.0], [3.0, 4.0]])  # rows 0, 1 and 2, 3: two views each
    instances = torch.tensor([0, 0, 1, 1])
    nearest = [1.0, 0.9, 0.9, math.dist((3, 4), (0, 0.1))]  # the nearest view of another image
    assert koleo(z, instances).item() == pytest.approx(-sum(math.log(d) for d in nearest) / 4, rel=1e-5)


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


TRUNK_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def sscd_layout(state: dict, layout: str) -> dict:
    """Returns this module's state dict in one of SSCD's layouts: `lightning` (SSCD's torchvision model inside a
    training checkpoint: model.backbone.conv1..., the projection as model.backbone.fc), `embeddings` (torchvision
    trunk names, the projection as embeddings.1) or `plain` (a bare torchvision ResNet-50 whose fc is the
    projection)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "backbone":
            parts[1] = TRUNK_NAMES[int(parts[1])]
        elif layout != "embeddings":
            parts = ["backbone", "fc", *parts[2:]]
        if layout == "plain":
            parts = parts[1:]
        out[("model." if layout == "lightning" else "") + ".".join(parts)] = value
    return {"state_dict": out} if layout == "lightning" else out


@pytest.mark.parametrize("layout, suffix", [("lightning", ".pt"), ("embeddings", ".pth"), ("plain", ".safetensors")])
def test_an_sscd_state_dict_loads_from_each_layout(tmp_path, sscd_module, layout, suffix):
    state = sscd_layout(sscd_module.state_dict(), layout)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / f"sscd{suffix}"))
    else:
        torch.save(state, tmp_path / f"sscd{suffix}")
    loaded = load_descriptor(str(tmp_path / f"sscd{suffix}"), "cpu", image_size=64)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert loaded.kind == "state_dict" and loaded.dim == 512 and loaded.image_size == 64
    reference = describe_pixels(load_descriptor_module(sscd_module, 64), pixels)
    assert np.allclose(describe_pixels(loaded, pixels), reference, atol=1e-5)


def load_descriptor_module(module, size):
    from curate.copydetect.model import LoadedDescriptor

    return LoadedDescriptor(module, size, SSCD_CONFIG.mean, SSCD_CONFIG.std, 512, "cpu", "test")


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # SSCD ships TorchScript
def test_a_torchscript_file_loads_with_sscd_preprocessing(tmp_path):
    config = DescriptorConfig(dim=8, image_size=32, width=8)
    module = build_descriptor(config, seed=0).eval()
    torch.jit.trace(module, torch.zeros(1, 3, 32, 32)).save(str(tmp_path / "model.torchscript.pt"))
    with pytest.raises(UsageError, match="is a TorchScript file, and TorchScript is code"):
        load_descriptor(str(tmp_path / "model.torchscript.pt"), "cpu")
    loaded = load_descriptor(str(tmp_path / "model.torchscript.pt"), "cpu", image_size=32, trust_torchscript=True)
    assert loaded.kind == "torchscript" and loaded.dim == 8 and loaded.mean == SSCD_CONFIG.mean
    assert load_descriptor(str(tmp_path / "model.torchscript.pt"), "cpu",
                           trust_torchscript=True).image_size == 288  # SSCD's default
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
    (lambda p: (p / "bad.pt").write_bytes(b"not a checkpoint") and p / "bad.pt", "cannot read"),
    (lambda p: torch.save({"fc.weight": torch.zeros(2, 2)}, p / "other.pt") or p / "other.pt", "not an sscd_resnet50"),
    (lambda p: torch.save({1: torch.zeros(2)}, p / "odd.pt") or p / "odd.pt", "holds no state dict"),
])
def test_unloadable_models_get_one_line_errors(tmp_path, make, message):
    with pytest.raises(UsageError, match=message) as error:
        load_descriptor(str(make(tmp_path)), "cpu")
    assert "\n" not in str(error.value)


def test_an_unknown_architecture_is_a_one_line_error():
    with pytest.raises(UsageError, match="unknown copy-detector --arch"):
        build_descriptor(DescriptorConfig(arch="vit-huge"))


def test_an_imagenet_resnet50_is_refused_for_its_classifier_head(tmp_path, sscd_module):
    state = sscd_layout(sscd_module.state_dict(), "plain")
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)  # an ImageNet classifier
    torch.save(state, tmp_path / "resnet50.pth")
    with pytest.raises(UsageError, match="2 misshapen keys") as error:
        load_descriptor(str(tmp_path / "resnet50.pth"), "cpu")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "copy_detector.json").write_text("{"), "not a copy-detector config"),
    (lambda d: (d / "copy_detector.json").write_text('{"arch": "tiny", "colour": 1}'), "not a copy-detector config"),
    (lambda d: (d / "copy_detector.json").write_text('{"arch": "tiny", "dim": 8, "width": 16}'), "does not hold"),
    (lambda d: (d / "model.safetensors").write_bytes(b"xx"), "does not hold"),
])
def test_a_damaged_folder_gets_a_one_line_error(tmp_path, damage, message):
    config = DescriptorConfig(dim=8, width=8)
    folder = save_descriptor(build_descriptor(config), config, tmp_path / "model")
    damage(folder)
    with pytest.raises(UsageError, match=message) as error:
        load_descriptor(str(folder), "cpu")
    assert "\n" not in str(error.value)
