"""Training the copy descriptor on a run's own images: seeded, resumable after a kill to the same weights, a
rerun with other options refused, and training that tells copies from other images better than the start."""

import numpy as np
import pytest
import torch

from curate.cli.main import main
from curate.copydetect.augment import AugmentConfig, copy_views
from curate.copydetect.config import CopyTrainConfig
from curate.copydetect.model import WEIGHTS_FILE, build_descriptor, describe_pixels, load_descriptor
from curate.copydetect.train import CHECKPOINT, train_copy_detector
from curate.errors import UsageError
from curate.models.pairs import load_pairs
from tests.shards import ingested_synth_pool

# warmup_epochs=1: the first epoch's learning rates do not depend on the number of epochs, so the checkpoint a
# 1-epoch run leaves is the one a 2-epoch run killed after its first epoch leaves
SMALL = CopyTrainConfig(epochs=2, batch_size=16, image_size=32, dim=16, width=8, koleo_weight=1.0, warmup_epochs=1.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return ingested_synth_pool(tmp_path_factory.mktemp("copy-train"), samples=64, shard_size=32)[0]


def weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / WEIGHTS_FILE))


def test_same_seed_same_weights_and_a_killed_run_resumes_to_them(run, tmp_path):
    whole = train_copy_detector(run, tmp_path / "whole", SMALL, progress=False)
    assert len(whole["losses"]) == 2 and whole["images"] == 64
    # a run killed after its first epoch: only the checkpoint is left, then the same command again
    first = train_copy_detector(run, tmp_path / "killed", CopyTrainConfig(**{**SMALL.__dict__, "epochs": 1}),
                                progress=False)
    assert first["epochs"] == 1
    resumed_folder = tmp_path / "resumed"
    resumed_folder.mkdir()
    (resumed_folder / "train_config.json").write_text((tmp_path / "whole" / "train_config.json").read_text())
    (resumed_folder / CHECKPOINT).write_bytes((tmp_path / "killed" / CHECKPOINT).read_bytes())
    resumed = train_copy_detector(run, resumed_folder, SMALL, progress=False)
    assert resumed["losses"][0] == pytest.approx(whole["losses"][0])
    a, b = weights(tmp_path / "whole"), weights(resumed_folder)
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = train_copy_detector(run, tmp_path / "whole", SMALL, progress=False)  # finished: its summary
    assert again["losses"] == whole["losses"]
    # killed after the model was written but before its summary: finished from the checkpoint, no epoch rerun
    (tmp_path / "whole" / "train_info.json").unlink()
    redone = train_copy_detector(run, tmp_path / "whole", SMALL, progress=False)
    assert redone["losses"] == whole["losses"] and redone["seconds"] == whole["seconds"]
    assert all(torch.equal(a[k], weights(tmp_path / "whole")[k]) for k in a)


def test_other_options_into_the_same_folder_are_refused(run, tmp_path):
    train_copy_detector(run, tmp_path / "m", SMALL, progress=False)
    with pytest.raises(UsageError, match=r"other options .*epochs"):
        train_copy_detector(run, tmp_path / "m", CopyTrainConfig(**{**SMALL.__dict__, "epochs": 3}), progress=False)


def copy_rank_accuracy(loaded, pixels: torch.Tensor) -> float:
    """Returns the share of images whose augmented copy's nearest image (among all originals) is itself."""
    views = copy_views(pixels, pixels.shape[-1], AugmentConfig(overlay_p=0, pad_p=0.5, crop_scale=(0.5, 1.0)),
                       torch.Generator().manual_seed(9))
    copies = (views * 255).round().byte().permute(0, 2, 3, 1).numpy()
    originals = pixels.permute(0, 2, 3, 1).numpy()
    sims = describe_pixels(loaded, copies) @ describe_pixels(loaded, originals).T
    return float((sims.argmax(1) == np.arange(len(pixels))).mean())


def test_training_learns_to_find_copies(run, tmp_path):
    config = CopyTrainConfig(epochs=6, batch_size=32, image_size=32, dim=32, width=16, lr=3e-3)
    train_copy_detector(run, tmp_path / "trained", config, progress=False)
    trained = load_descriptor(str(tmp_path / "trained"), "cpu")
    untrained = load_descriptor(str(tmp_path / "trained"), "cpu")
    untrained.module = build_descriptor(trained.config, config.seed).eval()  # the weights training started from
    pixels = load_pairs(run, None, 32, progress=False, square=True).pixels
    assert copy_rank_accuracy(trained, pixels) > copy_rank_accuracy(untrained, pixels) + 0.1


@pytest.mark.parametrize("args, message", [
    (["--arch", "vit-huge"], "invalid choice"),
    (["--batch-size", "1"], "at least 2"),
    (["--where", "no_such_column"], "no_such_column"),
    *([(["--device", "cuda"], "no GPU is visible here")] if not torch.cuda.is_available() else []),
])
def test_bad_arguments_get_one_line_errors(run, tmp_path, capsys, args, message):
    code = main(["train-copy-detector", str(run.path), "--out", str(tmp_path / "m"), "--epochs", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()  # no train_config.json to refuse the corrected command


def test_a_predicate_that_fails_leaves_no_folder_and_the_corrected_command_trains(run, tmp_path, capsys):
    args = ["train-copy-detector", str(run.path), "--out", str(tmp_path / "m"), "--epochs", "1", "--batch-size",
            "8", "--max-images", "8", "--image-size", "16", "--dim", "8", "--width", "4"]
    assert main([*args, "--where", "CAST(caption AS INTEGER) > 0"]) == 2  # parses, fails on the data
    assert "invalid --where predicate" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert main([*args, "--where", "width > 0"]) == 0


def test_the_command_trains_and_prints_its_summary(run, tmp_path, capsys):
    import json

    args = ["--epochs", "1", "--batch-size", "16", "--image-size", "32", "--dim", "8", "--width", "8", "--seed", "3"]
    assert main(["train-copy-detector", str(run.path), "--out", str(tmp_path / "m"), *args]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 64 and summary["epochs"] == 1 and len(summary["losses"]) == 1
    assert summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    loaded = load_descriptor(str(tmp_path / "m"), "cpu")
    assert loaded.kind == "curate" and loaded.dim == 8 and loaded.image_size == 32


def test_the_augmentations_are_recorded_with_the_options(run, tmp_path):
    import json

    train_copy_detector(run, tmp_path / "m", SMALL, progress=False)
    recorded = json.loads((tmp_path / "m" / "train_config.json").read_text())
    assert recorded["augment"]["jpeg_quality"] == list(AugmentConfig().jpeg_quality)
    recorded["augment"]["jpeg_p"] = 0.1  # a folder trained with other augmentations
    (tmp_path / "m" / "train_config.json").write_text(json.dumps(recorded))
    with pytest.raises(UsageError, match="augment"):
        train_copy_detector(run, tmp_path / "m", SMALL, progress=False)
