"""Model resolution without downloads, and loading from checkpoints the tests write."""

import numpy as np
import pytest
import torch

from curate.errors import UsageError
from curate.models import ModelSpec, load_model, resolve_model
from curate.models.encode import encode_batch, image_to_pixels
from tests.shards import image_bytes


def test_named_models_and_tags_resolve_without_downloading():
    assert resolve_model(ModelSpec("ViT-B-16-quickgelu", "dfn2b")) == ("ViT-B-16-quickgelu", "dfn2b")
    assert resolve_model(ModelSpec("ViT-H-14-quickgelu", "dfn5b")) == ("ViT-H-14-quickgelu", "dfn5b")
    assert resolve_model(ModelSpec("ViT/B/32", "laion2b_s34b_b79k"))[0] == "ViT-B-32"
    assert resolve_model(ModelSpec("hf-hub:apple/DFN-public")) == ("hf-hub:apple/DFN-public", None)


@pytest.mark.parametrize("spec,message", [
    (ModelSpec("ViT-B-16", "dfn2b"), "use --model ViT-B-16-quickgelu --pretrained dfn2b"),
    (ModelSpec("ViT-H-14", "dfn5b"), "use --model ViT-H-14-quickgelu --pretrained dfn5b"),
    (ModelSpec("ViT-B-16", "no-such-tag"), "has no pretrained tag 'no-such-tag'"),
    (ModelSpec("ViT-B-61", "openai"), "did you mean"),
    (ModelSpec("ViT-B-16"), "needs --pretrained"),
    (ModelSpec("hf-hub:apple/DFN-public", "dfn2b"), "drop --pretrained"),
])
def test_bad_model_arguments_say_what_to_fix(spec, message):
    with pytest.raises(UsageError, match=message):
        resolve_model(spec)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"no open_clip_config\.json"):
        resolve_model(ModelSpec(str(tmp_path)))


def test_local_checkpoint_loads_with_weights_only(tmp_path):
    reference = load_model(ModelSpec(random_weights=True), "cpu")
    with torch.no_grad():
        for p in reference.model.parameters():
            p.add_(0.01)
    path = tmp_path / "tiny.pt"
    torch.save(reference.model.state_dict(), path)
    loaded = load_model(ModelSpec("curate-tiny", str(path)), "cpu")
    pixels = np.stack([image_to_pixels(image_bytes((200, 10, 10), size=(64, 48)), loaded.image_size)])
    a = encode_batch(reference, pixels, ["a red square"])
    b = encode_batch(loaded, pixels, ["a red square"])
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
    assert abs(np.linalg.norm(a[0]) - 1) < 1e-5


def test_random_weights_are_the_same_in_every_load():
    a = load_model(ModelSpec(random_weights=True), "cpu").model.state_dict()
    b = load_model(ModelSpec(random_weights=True), "cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unreadable_checkpoint_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match=r"cannot read .*bad\.pt: torch's weights-only reader refuses it") as error:
        load_model(ModelSpec("curate-tiny", str(bad)), "cpu")
    assert "weights_only=False" not in str(error.value) and "\n" not in str(error.value)


def test_pixels_are_resized_and_center_cropped():
    pixels = image_to_pixels(image_bytes(size=(80, 40)), 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
