"""ConvNet-3 and its flat-parameter functional forward; DSA's augmentations: differentiable, seeded, siamese."""

import pytest
import torch

from curate.distill import dsa
from curate.distill.convnet import (
    ConvNetSpec,
    convnet,
    convnet3,
    flatten_params,
    functional_forward,
    init_params,
    load_flat,
    param_count,
    unflatten,
)

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")



def test_convnet3_is_the_papers_network():
    model = convnet3(3, 10, 32)
    assert param_count(model) == param_count(ConvNetSpec(3, 10, 32)) == 320_010  # MTT's CIFAR-10 ConvNet-3
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "GroupNorm", "ReLU", "AvgPool2d"] * 3 + ["Flatten", "Linear"]
    assert all(m.num_groups == m.num_channels == 128 for m in model if isinstance(m, torch.nn.GroupNorm))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("spec", [ConvNetSpec(3, 2, 8, width=4), ConvNetSpec(1, 10, 16, width=8),
                                  ConvNetSpec(1, 3, 28, width=4)])
def test_functional_forward_matches_the_module(spec):
    model = convnet(spec)
    images = torch.randn(5, spec.channels, spec.image_size, spec.image_size)
    flat = flatten_params(model)
    assert flat.numel() == param_count(spec) == param_count(model)
    torch.testing.assert_close(functional_forward(flat, images, spec), model(images), atol=1e-5, rtol=1e-5)
    assert [p.shape for p in unflatten(flat, spec)] == [p.shape for p in model.parameters()]
    other = init_params(spec, 7)
    torch.testing.assert_close(load_flat(convnet(spec), other)(images), functional_forward(other, images, spec),
                               atol=1e-5, rtol=1e-5)


def test_init_params_is_seeded_and_leaves_the_global_rng_alone():
    spec = ConvNetSpec(3, 2, 8, width=4)
    state = torch.random.get_rng_state()
    assert torch.equal(init_params(spec, 3), init_params(spec, 3))
    assert not torch.equal(init_params(spec, 3), init_params(spec, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError):
        functional_forward(torch.zeros(5), torch.randn(1, 3, 8, 8), spec)


def one_family(family: str) -> dsa.DSAConfig:
    return dsa.DSAConfig(strategy=family)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_differentiable(family):
    config = one_family(family)
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    params = dsa.draw(3, 6, torch.Generator().manual_seed(1), config)
    assert params.families == (family,)
    assert torch.autograd.gradcheck(lambda images: dsa.apply(images, params, config), (x,))


def test_draws_are_seeded_by_the_generator_alone():
    x = torch.randn(16, 3, 8, 8)
    first = dsa.augment(x, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(first, dsa.augment(x, torch.Generator().manual_seed(5)))
    outputs = [dsa.augment(x, torch.Generator().manual_seed(s)) for s in range(6)]
    assert any(not torch.equal(first, other) for other in outputs[1:])
    families = {dsa.draw(4, 8, torch.Generator().manual_seed(s)).families for s in range(40)}
    assert families == {(f,) for f in FAMILIES}  # single mode: one family per call, each reachable


@pytest.mark.parametrize("family", ["crop", "cutout", "flip", "scale", "rotate"])
def test_siamese_one_draw_is_one_transformation_of_both_batches(family):
    config = one_family(family)
    real, synthetic = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    params = dsa.draw(4, 8, torch.Generator().manual_seed(2), config)
    # a geometric transformation is linear in the image: the same one on both batches commutes with their mix
    torch.testing.assert_close(dsa.apply(real - 2 * synthetic, params, config),
                               dsa.apply(real, params, config) - 2 * dsa.apply(synthetic, params, config))
    shared = dsa.draw(4, 8, torch.Generator().manual_seed(2), config, batchwise=True)
    small, large = dsa.apply(real[:1].expand(2, -1, -1, -1), shared, config), dsa.apply(real[:1], shared, config)
    torch.testing.assert_close(small, large.expand(2, -1, -1, -1))  # batch-wide draw fits any batch size


def test_color_siamese_and_ranges():
    config = one_family("color")
    x = torch.randn(5, 3, 8, 8)
    params = dsa.draw(5, 8, torch.Generator().manual_seed(0), config)
    assert torch.equal(dsa.apply(x, params, config), dsa.apply(x.clone(), params, config))
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in params.values.values())


def test_crop_flip_and_cutout_do_what_they_say():
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
    shifted = dsa.apply(x, dsa.DSAParams(("crop",), {"crop": torch.tensor([[1, 0]])}))
    assert torch.equal(shifted[0, 0, :7], x[0, 0, 1:]) and shifted[0, 0, 7].abs().sum() == 0
    flipped = dsa.apply(x, dsa.DSAParams(("flip",), {"flip": torch.tensor([True])}))
    assert torch.equal(flipped, x.flip(3))
    cut = dsa.apply(x + 1, dsa.DSAParams(("cutout",), {"cutout": torch.tensor([[4, 4]])}))
    assert int((cut == 0).sum()) == 16 and cut[0, 0, 2:6, 2:6].abs().sum() == 0
    corner = dsa.apply(x + 1, dsa.DSAParams(("cutout",), {"cutout": torch.tensor([[0, 0]])}))
    assert int((corner == 0).sum()) == 4  # clipped at the border as the reference's clamped grid does
