"""Patch-drop exports: kept patches stored losslessly with a mask, chosen by saliency, rebuilt by an MAE at the
original size (reader and --reconstruct), and one-line errors for bad options."""

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from curate.cli.main import main
from curate.dynamic.classify import small_cnn
from curate.export import iter_patch_export, read_patch_sample
from curate.export.patches import stored_patches, tar_samples
from curate.models.encode import square_pixels
from curate.models.loading import ModelSpec, load_model
from curate.models.mae import MAEConfig
from curate.models.mae_io import load_mae, save_mae
from curate.models.saliency import classifier_saliency, clip_saliency
from curate.models.train_mae import scratch_mae
from curate.pixels import decode_patches, encode_patches, kept_count, select_patches
from tests.shards import ingested_tars

TINY = MAEConfig(embed_dim=64, depth=1, num_heads=1, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(run folder, MAE folder, source images by key, work folder): 2 x 5 clean 48 x 40 jpgs, embedded."""
    root = tmp_path_factory.mktemp("patch_drop")
    run = ingested_tars(root / "pool", 2, 5, embedded=True)
    save_mae(scratch_mae(TINY, seed=0), root / "mae" / "mae.pth")
    sources = {}
    for tar in sorted((root / "pool").glob("*.tar")):
        sources |= {key: members["jpg"] for key, members in tar_samples(tar)}
    return run.path, root / "mae", sources, root


def export(setup, name, *options):
    run, mae, _, root = setup
    out = root / name
    code = main(["export", str(run), "--format", "webdataset", "--out", str(out), "--mae", str(mae), *options])
    assert code == 0
    return out


def samples_of(folder):
    return [s for tar in sorted(folder.glob("*.tar")) for s in tar_samples(tar)]


def test_patch_drop_stores_kept_patches_losslessly_and_rebuilds_at_original_size(setup):
    _, mae_folder, sources, root = setup
    out = export(setup, "dropped", "--patch-drop", "0.25")
    summary = json.loads((out / "_export.json").read_text())["patch_drop"]
    mae = load_mae(mae_folder)
    found = samples_of(out)
    assert len(found) == 10 and summary["kept_patches"] == 10 * 48 and summary["total_patches"] == 10 * 64
    for _, members in found:
        assert set(members) == {"patches.png", "txt", "json"}
        meta = json.loads(members["json"])
        source = sources[meta["key"]]
        assert meta["source_sha256"] == hashlib.sha256(source).hexdigest() and "stored_sha256" not in meta
        mask = json.loads(members["json"])["patch_mask"]
        assert (mask["grid"], mask["patch_size"], mask["original_size"]) == ([8, 8], 4, [48, 40])
        resized = square_pixels(source, 32)[0]
        small = np.asarray(read_patch_sample(members, mae, full_size=False))
        pixel_keep = np.repeat(np.repeat(stored_patches(members)
                                         .keep.reshape(8, 8), 4, 0), 4, 1)
        assert np.array_equal(small[pixel_keep], resized[pixel_keep])  # lossless where kept
        assert read_patch_sample(members, mae).size == (48, 40)
    assert summary["source_image_bytes"] == sum(len(b) for b in sources.values())
    assert summary["written_bytes"] == summary["patch_bytes"] + summary["mask_bytes"] > 0

    rec = root / "rebuilt"
    assert main(["export", str(out), "--format", "webdataset", "--reconstruct", "--mae", str(mae_folder),
                 "--out", str(rec)]) == 0
    expected = {s.key: np.asarray(s.image) for s in iter_patch_export(out, mae, batch_size=3)}
    for key, members in samples_of(rec):
        assert json.loads(members["json"])["stored_sha256"] == hashlib.sha256(members["png"]).hexdigest()
        image = Image.open(io.BytesIO(members["png"]))
        assert image.size == (48, 40) and np.array_equal(np.asarray(image), expected[key])


def test_patch_drop_ranks_by_the_runs_clip(setup):
    _, _, sources, _ = setup
    out = export(setup, "ranked", "--patch-drop", "0.5")
    found = samples_of(out)
    pixels = np.stack([square_pixels(sources[json.loads(m["json"])["key"]], 32)[0] for _, m in found])
    captions = [m["txt"].decode() for _, m in found]
    scores = clip_saliency(load_model(ModelSpec(random_weights=True), "cpu"), pixels, captions, 4)
    stored = np.stack([stored_patches(m).keep for _, m in found])
    assert np.array_equal(stored, select_patches(scores, 0.5)) and stored.sum(1).tolist() == [32] * 10


def test_patch_drop_zero_keeps_every_patch_and_reconstruct_from_a_run(setup):
    _, _, sources, _ = setup
    out = export(setup, "whole", "--patch-drop", "0", "--reconstruct")
    summary = json.loads((out / "_export.json").read_text())["patch_drop"]
    assert summary["kept_patches"] == summary["total_patches"] == 640 and summary["reconstructed"]
    for _, members in samples_of(out):
        source = sources[json.loads(members["json"])["key"]]
        image = Image.open(io.BytesIO(members["png"]))
        expected = Image.fromarray(square_pixels(source, 32)[0]).resize((48, 40), Image.Resampling.BICUBIC)
        assert np.array_equal(np.asarray(image), np.asarray(expected))


def test_selection_keeps_the_highest_scores_with_ties_to_the_lower_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.0, 0.7, 0.2, 0.3],
                       [1, 1, 1, 1, 1, 1, 1, 1], [np.nan, 1, 2, 3, 4, 5, 6, 7]])
    keep = select_patches(scores, 0.5)
    assert [np.flatnonzero(k).tolist() for k in keep] == [[1, 2, 3, 5], [0, 1, 2, 3], [4, 5, 6, 7]]
    assert select_patches(scores, 0.0).all() and kept_count(64, 0.99) == 1 and kept_count(10, 0.7) == 3


def test_codec_round_trip_and_inconsistent_masks():
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    keep = np.array([True, False, False, True])
    png, mask = encode_patches(pixels, keep, 4, (20, 10))
    record = decode_patches(png, mask)
    assert np.array_equal(record.pixels[:4, :4], pixels[:4, :4]) and not record.pixels[:4, 4:].any()
    assert record.original_size == (20, 10) and record.keep.tolist() == keep.tolist()
    for bad, message in ((mask | {"kept": "9"}, "must be 1 hex bytes"), (mask | {"kept": "00"}, "keeps no patch"),
                         (mask | {"input_size": 16, "grid": [4, 4]}, "bitmap must be 2 hex bytes")):
        with pytest.raises(ValueError, match=message):
            decode_patches(png, bad)


def test_classifier_saliency_on_small_cnn():
    torch.manual_seed(0)
    model = small_cnn(3, width=8)
    images = torch.zeros(4, 3, 8, 8)
    images[:, :, 2:4, 4:6] = torch.randn(4, 3, 2, 2)  # all signal in patch 6 of the 4 x 4 grid of 2 px patches
    grad_input = classifier_saliency(model, images, 2, labels=torch.tensor([0, 1, 2, 0]), method="gradxinput")
    assert grad_input.shape == (4, 16) and (np.flatnonzero(grad_input.sum(0)) == [6]).all()
    cam = classifier_saliency(model, images, 2)
    assert cam.shape == (4, 16) and (cam >= 0).all() and np.array_equal(cam, classifier_saliency(model, images, 2))


@pytest.mark.parametrize("options, message", [
    (["--patch-drop", "1.0"], "in [0, 1)"),
    (["--patch-drop", "-0.1"], "in [0, 1)"),
    (["--patch-drop", "0.25", "--no-mae"], "needs --mae"),
    (["--patch-drop", "0.25", "--format", "parquet"], "webdataset tars only"),
    (["--patch-drop", "0.25", "--mae", "/nonexistent/mae.pth"], "no such MAE"),
    (["--patch-drop", "0.25", "--mae", "JUNK"], "cannot read"),
    (["--reconstruct"], "needs --patch-drop"),
    ([], "--mae applies only"),
])
def test_bad_options_are_one_line_errors(setup, capsys, options, message):
    run, mae, _, root = setup
    (root / "junk.pth").write_bytes(b"junk")
    fmt = ["--format", "parquet"] if "parquet" in options else ["--format", "webdataset"]
    options = [o for o in options if o not in ("--format", "parquet", "--no-mae")]
    options = [str(root / "junk.pth") if o == "JUNK" else o for o in options]
    with_mae = [] if "needs --mae" in message or "--mae" in options else ["--mae", str(mae)]
    code = main(["export", str(run), *fmt, "--out", str(root / "bad"), *with_mae, *options])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (root / "bad").exists()
