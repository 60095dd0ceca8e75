"""`curate distill --method relabel`: real images of each class (herding or random), the teacher's soft crops as
their labels, evaluated by distill-eval like any set; another method's settings refused."""

import json

import pytest
import torch
from safetensors.torch import load_file

from curate.cli.main import main
from curate.distill.source import labelled_selection
from tests.distill.test_distill_eval import noise_heldout
from tests.shards import ingested_tars

TINY_RELABEL = ["--label-column", "shard", "--ipc", "2", "--image-size", "8", "--width", "4", "--depth", "1",
                "--method", "relabel", "--teacher", "convnet", "--teacher-epochs", "1", "--relabel-epochs", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = ingested_tars(tmp_path_factory.mktemp("relabel"), shards=2, per_shard=6)
    assert main(["distill", str(run.path), "--name", "herd", *TINY_RELABEL]) == 0
    return run


def test_a_relabel_set_is_real_images_of_each_class_with_soft_crops(run, tmp_path, capsys):
    folder = run.path / "distilled" / "herd"
    summary = json.loads((folder / "distilled.json").read_text())
    assert summary["method"] == "relabel" and summary["images"] == 4
    assert summary["options"]["pick"] == "herding" and "iterations" not in summary["options"]
    saved = load_file(folder / "images.safetensors")
    source = labelled_selection(run, None, "shard", 8)
    for image, label in zip(saved["images"], saved["labels"], strict=True):
        same = (source.images - image).flatten(1).abs().amax(1) < 1e-5
        assert same.any() and source.labels[same][0] == label  # one of the selection's own images, its class
    assert saved["labels"].tolist() == [0, 0, 1, 1] and (folder / "relabel.safetensors").exists()

    assert main(["distill", str(run.path), "--name", "drawn", *TINY_RELABEL, "--pick", "random"]) == 0
    drawn = load_file(run.path / "distilled" / "drawn" / "images.safetensors")["images"]
    assert not torch.equal(drawn, saved["images"])

    heldout = noise_heldout(tmp_path / "heldout.parquet", summary["classnames"], 2)
    capsys.readouterr()
    assert main(["distill-eval", str(run.path), "--name", "herd", "--test", str(heldout), "--epochs", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"][0]["method"] == "relabel"


@pytest.mark.parametrize(("extra", "message"), [
    (["--experts", "2"], "--experts is a setting of --method tesla, not relabel"),
    (["--iterations", "3"], "--iterations is a setting of --method tesla, cda and sre2l, not relabel"),
    (["--r-bn", "0.5"], "--r-bn is a setting of --method cda and sre2l, not relabel"),
    (["--soft-labels"], "--soft-labels is TESLA's"),
])
def test_other_methods_settings_are_refused_in_one_line_and_write_nothing(run, capsys, extra, message):
    assert main(["distill", str(run.path), "--name", "bad", *TINY_RELABEL, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (run.path / "distilled" / "bad").exists()


def test_pick_is_relabels_own_setting(run, capsys):
    assert main(["distill", str(run.path), "--name", "bad", "--label-column", "shard", "--pick", "random"]) == 2
    assert "--pick is a setting of --method relabel, not tesla" in capsys.readouterr().err
