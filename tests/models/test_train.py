"""CLIP training and train-dfn on real tiny open_clip models and real synth shards."""

import json

import numpy as np
import pytest
import torch

from curate.cli.main import COMMANDS, OneLineArgumentParser, guarded, main
from curate.errors import UsageError
from curate.models import ModelSpec, load_model
from curate.models.encode import encode_batch, image_to_pixels
from curate.models.pairs import load_pairs, random_resized_crop, stored_size
from curate.models.train import TrainConfig, contrastive_losses, save_model_folder, train_clip
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from curate.stages.training import train_dfn
from curate.synth import generate_pool
from tests.shards import clean_shard, image_bytes, sample_members, write_tar

PAIRS = 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A small synth pool: its hq/ folder holds PAIRS trusted pairs in two shards."""
    out = tmp_path_factory.mktemp("synth")
    generate_pool(out, samples=40, hq_samples=PAIRS, heldout_per_concept=0, shard_size=32)
    return out


@pytest.fixture(scope="module")
def pairs(synth, tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("trusted") / "run")
    ingest([str(synth / "hq")], run, progress=False)
    return load_pairs(run, None, 32, progress=False)


def tiny():
    return load_model(ModelSpec(random_weights=True), "cpu")


def config(**kw) -> TrainConfig:
    return TrainConfig(**({"batch_size": 16, "warmup_steps": 2, "progress": False} | kw))


def test_pairs_hold_every_trusted_sample_decoded_once_with_room_to_crop(pairs, synth):
    assert len(pairs) == PAIRS and len(set(pairs.uids)) == PAIRS
    assert pairs.pixels.shape == (PAIRS, 3, stored_size(32), stored_size(32)) == (PAIRS, 3, 37, 37)
    assert pairs.pixels.dtype == torch.uint8 and pairs.nbytes == PAIRS * 3 * 37 * 37
    assert all(c.strip() for c in pairs.captions)


def test_bad_selections_are_usage_errors(pairs, synth, tmp_path):
    run = RunDir(tmp_path / "run")
    ingest([str(synth / "hq")], run, progress=False)
    with pytest.raises(UsageError, match="no samples to train on"):
        load_pairs(run, "caption = 'no such caption'", 32, progress=False)
    with pytest.raises(UsageError, match="invalid --where"):
        load_pairs(run, "caption = ", 32, progress=False)
    with pytest.raises(UsageError, match="GiB in memory"):
        load_pairs(run, None, 32, memory_limit=1000, progress=False)
    assert len(load_pairs(run, "width >= 64 AND caption ILIKE '%a%'", 32, progress=False)) > 0


def test_crops_are_seeded_and_full_crops_resize_the_whole_image():
    pixels = torch.randint(0, 256, (4, 3, 37, 37), dtype=torch.uint8)
    a = random_resized_crop(pixels, 32, (0.5, 1), (0.75, 4 / 3), torch.Generator().manual_seed(1))
    b = random_resized_crop(pixels, 32, (0.5, 1), (0.75, 4 / 3), torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    flat = torch.full((1, 3, 37, 37), 200, dtype=torch.uint8)
    whole = random_resized_crop(flat, 32, (1, 1), (1, 1), torch.Generator())
    assert torch.allclose(whole, torch.full_like(whole, 200 / 255))


def test_per_sample_losses_average_to_open_clips_clip_loss():
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    losses = contrastive_losses(image, text, torch.tensor(14.0))
    assert losses.shape == (8,)
    assert torch.allclose(losses.mean(), ClipLoss()(image, text, torch.tensor(14.0)))


def test_loss_falls_on_a_tiny_set(pairs):
    result = train_clip(tiny(), pairs, config(samples_seen=PAIRS * 10, lr=5e-4, warmup_steps=5))
    assert result.steps == 40 and result.samples_seen == PAIRS * 10
    assert np.mean(result.losses[-8:]) < 0.5 * np.mean(result.losses[:8])


def state_after(pairs, seed: int) -> dict:
    loaded = tiny()
    train_clip(loaded, pairs, config(samples_seen=48, seed=seed))
    return loaded.model.state_dict()


def test_same_seed_gives_identical_weights_and_another_seed_different(pairs):
    a, b, c = state_after(pairs, 0), state_after(pairs, 0), state_after(pairs, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_samples_seen_is_exact_when_not_a_multiple_of_the_dataset(pairs):
    seen = []
    result = train_clip(tiny(), pairs, config(samples_seen=100), on_losses=lambda i, loss: seen.append(i))
    indices = torch.cat(seen)
    assert result.samples_seen == 100 and len(indices) == 100 and result.steps == 7  # 6 x 16 + 4
    assert sorted(indices[:PAIRS].tolist()) == list(range(PAIRS))  # one full pass, then 36 of the next
    assert len(set(indices[PAIRS:].tolist())) == 100 - PAIRS


def test_the_sampler_decides_what_each_step_sees_and_on_losses_gets_per_sample_losses(pairs):
    calls = []
    subset = torch.utils.data.SubsetRandomSampler([3, 5, 7, 11, 13], generator=torch.Generator().manual_seed(0))
    result = train_clip(tiny(), pairs, config(epochs=4, batch_size=4), sampler=subset,
                        on_losses=lambda i, loss: calls.append((i, loss)))
    assert result.samples_seen == 20 and result.steps == 5
    for (indices, losses), step_loss in zip(calls, result.losses, strict=True):
        assert indices.dtype == torch.long and set(indices.tolist()) <= {3, 5, 7, 11, 13}
        assert losses.shape == indices.shape and not losses.requires_grad
        assert abs(float(losses.mean()) - step_loss) < 1e-6
    batches = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(8)), 3, drop_last=False)
    seen = []
    train_clip(tiny(), pairs, config(samples_seen=10), sampler=batches, on_losses=lambda i, loss: seen.append(i))
    assert [i.tolist() for i in seen] == [[0, 1, 2], [3, 4, 5], [6, 7], [0, 1]]
    with pytest.raises(ValueError, match="samples_seen"):
        train_clip(tiny(), pairs, config(epochs=1), sampler=batches)


def embeddings(loaded) -> tuple[np.ndarray, np.ndarray]:
    colors = [(220, 30, 30), (30, 70, 220), (40, 170, 50)]
    pixels = np.stack([image_to_pixels(image_bytes(c, size=(64, 64)), loaded.image_size) for c in colors])
    return encode_batch(loaded, pixels, ["a red square", "blue circle", "a green star"])


def test_saved_folder_loads_in_open_clip_and_curate_with_the_same_embeddings(pairs, tmp_path):
    import open_clip

    loaded = tiny()
    train_clip(loaded, pairs, config(samples_seen=32))
    out = tmp_path / "dfn"
    (out / "trusted_run").mkdir(parents=True)  # train-dfn's layout: the folder exists already
    model = loaded.model
    save_model_folder(model, open_clip.get_model_config("curate-tiny"), model.visual.preprocess_cfg, out, {"x": 1})
    assert json.loads((out / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"] == 128
    assert json.loads((out / "train_info.json").read_text())["versions"]["curate"]
    assert not list(tmp_path.glob(".*tmp-*"))
    plain = open_clip.create_model(f"local-dir:{out}")
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items())
    reloaded = load_model(ModelSpec(model=str(out)), "cpu")
    for a, b in zip(embeddings(loaded), embeddings(reloaded), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    from_file = load_model(ModelSpec(model="curate-tiny", pretrained=str(checkpoint)), "cpu")
    for a, b in zip(embeddings(loaded), embeddings(from_file), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def curate_train_dfn(argv: list[str]) -> int:
    """Runs `curate train-dfn ARGV` through main() once it is registered, else through the same guard."""
    if "train-dfn" in COMMANDS:
        return main(["train-dfn", *argv])
    from curate.cli import train_dfn as command

    parser = OneLineArgumentParser(prog="curate train-dfn")
    command.add_arguments(parser)
    return guarded(lambda: command.run(parser.parse_args(argv)))


def test_train_dfn_quarantines_bad_trusted_samples_and_writes_a_loadable_folder(tmp_path, capsys):
    shards = tmp_path / "trusted"
    shards.mkdir()
    clean_shard(shards / "00000.tar", 24)
    write_tar(shards / "00001.tar", sample_members("x1", "a broken image", b"not an image"))
    assert curate_train_dfn([str(shards), "--out", str(tmp_path / "dfn"), "--epochs", "2", "--batch-size", "8"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trusted"]["quarantined"] == 1 and summary["pairs"] == 24 and summary["samples_seen"] == 48
    info = json.loads((tmp_path / "dfn" / "train_info.json").read_text())
    assert info["seed"] == 0 and info["data"]["pairs"] == 24 and info["config"]["epochs"] == 2
    load_model(ModelSpec(model=str(tmp_path / "dfn")), "cpu")


@pytest.mark.parametrize("argv,message", [
    ([], "required"),
    (["shards/"], "--out"),
    (["shards/", "--out", "m", "--epochs", "0"], "--epochs"),
    (["shards/", "--out", "m", "--lr", "-1"], "--lr"),
    (["shards/", "--out", "m", "--pretrained", "openai"], "--pretrained needs --init"),
    (["shards/", "--out", "m", "--init", "ViT-B-61", "--pretrained", "openai"], "did you mean"),
    (["shards/", "--out", "m", "--init", "curate-tiny"], "needs --pretrained"),
])
def test_train_dfn_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert curate_train_dfn(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("curate: error:") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "m").exists()


def test_train_dfn_refuses_an_out_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        train_dfn(["shards/"], tmp_path)


def test_train_dfn_fine_tunes_an_init_model_from_its_weights(synth, tmp_path):
    start = tiny().model.state_dict()
    checkpoint = tmp_path / "start.pt"
    torch.save(start, checkpoint)
    summary = train_dfn([str(synth / "hq")], tmp_path / "dfn", ModelSpec("curate-tiny", str(checkpoint)), epochs=1,
                        batch_size=32, progress=False)
    assert summary["samples_seen"] == PAIRS
    info = json.loads((tmp_path / "dfn" / "train_info.json").read_text())
    assert info["init"]["pretrained"] == str(checkpoint) and info["config"]["lr"] == 1e-5
    tuned = load_model(ModelSpec(str(tmp_path / "dfn")), "cpu").model.state_dict()
    assert not torch.equal(tuned["visual.proj"], start["visual.proj"])
    assert (tuned["visual.proj"] - start["visual.proj"]).abs().max() < 0.01  # a fine-tuning step, not a reset


def test_loss_weights_scale_each_samples_gradient(pairs):
    from curate.models.train import train_step, training_state

    def step(weights):
        loaded = tiny()
        generator, tokens, optimizer = training_state(loaded, pairs, config())
        train_step(loaded, optimizer, 1e-3, pairs.pixels[:8], tokens[:8], config(), generator, weights)
        return torch.cat([p.detach().flatten() for p in loaded.model.parameters()])

    plain, ones = step(None), step(torch.ones(8))
    first, second = step(torch.eye(8)[0]), step(torch.eye(8)[1])
    assert torch.equal(plain, ones) and not torch.allclose(first, second)


def test_pruned_training_forwards_only_the_selection(pairs):
    from curate.dynamic import make_pruner
    from curate.dynamic.clip import train_clip_pruned

    def run(seed):
        pruner = make_pruner("seta", PAIRS, 4, prune_ratio=0.5, seed=seed, num_groups=4)
        loaded = tiny()
        result = train_clip_pruned(loaded, pairs, config(epochs=4, seed=seed, lr=5e-4), pruner)
        return result, pruner, loaded.model.state_dict()

    result, pruner, weights = run(0)
    stats = pruner.stats()
    assert result.samples_seen == stats.total_forwarded < 4 * PAIRS
    assert stats.saved_fraction == pytest.approx(stats.total_skipped / (4 * PAIRS)) and stats.saved_fraction >= 0.5
    assert (pruner.scores != 3.0).sum() >= PAIRS // 2  # the forwarded samples' scores are their losses now
    again = run(0)[2]
    assert all(torch.equal(weights[k], again[k]) for k in weights)
