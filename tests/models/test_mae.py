"""The MAE: official-format checkpoints load by file and compute what the module that wrote them computes; the
head rule and its config override; reconstruction pastes kept pixels exactly; train-mae writes a loadable model."""

import json

import numpy as np
import pytest
import torch

from curate.cli.main import main
from curate.errors import UsageError
from curate.models.mae import MAEConfig, MaskedAutoencoderViT, patchify, random_keep, reconstruct, unpatchify
from curate.models.mae_io import CONFIG_FILE, default_heads, load_mae, save_mae
from curate.models.train_mae import MAETrainConfig, scratch_mae, train_mae_model
from tests.shards import clean_shard

SMALL = MAEConfig(embed_dim=64, depth=2, num_heads=1, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=1)


def outputs(mae: MaskedAutoencoderViT, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, mae.config.img_size, mae.config.img_size, generator=generator)
    with torch.no_grad():
        return mae(images, random_keep(3, mae.config.num_patches, 0.75, generator))


def official_file(mae: MaskedAutoencoderViT, path):
    """Writes the module as facebookresearch/mae does: {"model": state_dict}, nothing else."""
    torch.save({"model": mae.state_dict()}, path)
    return path


def test_official_checkpoint_loads_by_file_with_identical_outputs(tmp_path):
    mae = scratch_mae(SMALL, seed=3).eval()
    loaded = load_mae(official_file(mae, tmp_path / "mae_visualize_tiny.pth"))
    assert loaded.config == SMALL  # shapes inferred from the tensors, heads from the rule (64 -> 1, 32 -> 1)
    assert torch.equal(outputs(loaded), outputs(mae))
    names = set(torch.load(tmp_path / "mae_visualize_tiny.pth", weights_only=True)["model"])
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias",
            "norm.weight", "decoder_embed.weight", "mask_token", "decoder_pos_embed", "decoder_blocks.0.norm2.bias",
            "decoder_norm.weight", "decoder_pred.weight"} <= names


def test_heads_rule_and_config_file_override(tmp_path):
    assert [default_heads(w, False) for w in (768, 1024, 1280, 128)] == [12, 16, 16, 2]
    assert [default_heads(w, True) for w in (512, 64, 16)] == [16, 2, 1]
    mae = scratch_mae(MAEConfig(embed_dim=64, depth=1, num_heads=4, decoder_embed_dim=32, decoder_depth=1,
                                decoder_num_heads=2), seed=0).eval()
    path = official_file(mae, tmp_path / "w.pth")
    assert load_mae(path).config.num_heads == 1  # the rule's guess, which differs from what it was built with
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"weights": "w.pth", "num_heads": 4, "decoder_num_heads": 2}))
    assert torch.equal(outputs(load_mae(path)), outputs(mae))
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"weights": "other.pth", "num_heads": 4}))
    assert load_mae(path).config.num_heads == 1  # a config naming other weights does not apply


def test_curate_checkpoint_round_trip_keeps_config(tmp_path):
    config = MAEConfig(embed_dim=64, depth=1, num_heads=4, decoder_embed_dim=32, decoder_depth=1,
                       decoder_num_heads=2, norm_pix_loss=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    mae = scratch_mae(config, seed=1).eval()
    loaded = load_mae(save_mae(mae, tmp_path / "out" / "mae.pth").parent)  # a folder holding mae.pth loads too
    assert loaded.config == config and torch.equal(outputs(loaded), outputs(mae))


def test_unreadable_or_incomplete_checkpoints_are_usage_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="cannot read"):
        load_mae(tmp_path / "junk.pth")
    with pytest.raises(UsageError, match="no such MAE"):
        load_mae(tmp_path / "missing.pth")
    encoder = {k: v for k, v in scratch_mae(SMALL, 0).state_dict().items() if not k.startswith(("decoder", "mask"))}
    torch.save({"model": encoder}, tmp_path / "encoder.pth")
    with pytest.raises(UsageError, match="encoder-only"):
        load_mae(tmp_path / "encoder.pth")


def test_patchify_inverse_and_reconstruction_keeps_visible_pixels():
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(images, 4), 4), images)
    assert torch.equal(patchify(images, 4)[0, 9], images[0, :, 4:8, 4:8].permute(1, 2, 0).reshape(-1))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    keep = rng.random((4, 64)) < 0.6
    keep[0] = True
    rebuilt = reconstruct(scratch_mae(SMALL, 0).eval(), pixels, keep)
    mask = np.repeat(np.repeat(keep.reshape(4, 8, 8), 4, 1), 4, 2)
    assert np.array_equal(rebuilt[mask], pixels[mask]) and not np.array_equal(rebuilt[~mask], pixels[~mask])


def test_training_is_seeded_and_lowers_the_loss():
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    pixels[:, :, :16] = 40  # structure to learn: a flat top half
    config = MAETrainConfig(steps=12, batch_size=8, warmup_steps=2, progress=False)
    first, second = scratch_mae(SMALL, 0), scratch_mae(SMALL, 0)
    result = train_mae_model(first, pixels, config)
    train_mae_model(second, pixels, config)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(),
                                                   strict=True))
    assert np.mean(result.losses[-3:]) < result.losses[0]


def test_train_mae_cli_writes_a_loadable_model(tmp_path, capsys):
    clean_shard(tmp_path / "a.tar", 10)
    out = tmp_path / "mae"
    argv = ["train-mae", str(tmp_path / "a.tar"), "--out", str(out), "--steps", "2", "--batch-size", "4",
            "--width", "64", "--depth", "1", "--image-size", "16", "--patch-size", "4"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 10 and summary["steps"] == 2
    mae = load_mae(out)
    assert (mae.config.img_size, mae.config.patch_size, mae.config.embed_dim) == (16, 4, 64)
    assert json.loads((out / "train_info.json").read_text())["data"]["images"] == 10
    assert main([*argv[:-4], "--image-size", "16", "--patch-size", "5"]) == 2
    assert "must divide" in capsys.readouterr().err


def test_official_block_matches_timm():
    timm = pytest.importorskip("timm.models.vision_transformer")
    from functools import partial

    from curate.models.mae import Block

    ours = Block(64, 4, 4.0)
    theirs = timm.Block(64, 4, 4.0, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 9, 64)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
