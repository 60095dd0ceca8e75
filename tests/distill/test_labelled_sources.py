"""Labels that come with the shards reach distillation through the CLI: WebDataset `.cls` classes distilled with
`--label-column cls` and evaluated on other `.cls` shards, Hugging Face ClassLabel names read as the test set's
classes, and a test class the set lacks refused in one line."""

import json

import pyarrow as pa
import pytest

from curate.cli.main import main
from curate.distill.test_set import load_test_set
from curate.errors import UsageError
from tests.distill.test_distill_cli import TINY
from tests.stages.own_columns import labelled_parquet, labelled_tar

LABELLED = [a for a in TINY if a not in ("--label-column", "shard")]


def cls_shards(folder, classes: list[bytes], copies: int):
    folder.mkdir()
    for i in range(copies):
        labelled_tar(folder / f"{i}.tar", classes)
    return folder


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    pool = cls_shards(root / "pool", [b"0", b"1"], 4)
    run = root / "run"
    assert main(["ingest", str(pool), "--run", str(run)]) == 0
    assert main(["distill", str(run), "--name", "cls", "--label-column", "cls", *LABELLED]) == 0
    return root, run


def test_cls_shards_are_distilled_by_class_and_evaluated_on_other_cls_shards(distilled, capsys):
    root, run = distilled
    assert json.loads((run / "distilled" / "cls" / "distilled.json").read_text())["classnames"] == ["0", "1"]
    test = cls_shards(root / "test", [b"1", b"0", b"1"], 2)
    capsys.readouterr()
    assert main(["distill-eval", str(run), "--name", "cls", "--test", str(test), "--epochs", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_undecoded"] == 0 and result["summary"][0]["seeds"] == 1
    assert not list(root.glob("test/*run*"))  # the test shards' temporary ingest lies outside them, and is gone


def test_a_test_class_the_set_lacks_and_a_missing_label_column_are_one_line(distilled, capsys):
    root, run = distilled
    test = cls_shards(root / "test7", [b"0", b"7"], 1)
    capsys.readouterr()
    assert main(["distill-eval", str(run), "--name", "cls", "--test", str(test), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has classes the set 'cls' was not distilled on: 7" in err and "\n" not in err
    assert main(["distill-eval", str(run), "--name", "cls", "--test", str(test), "--epochs", "2",
                 "--test-label-column", "fine_label"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no label column 'fine_label'" in err and "\n" not in err


def test_hugging_face_class_labels_are_the_test_sets_class_names(tmp_path):
    features = {"image": {"_type": "Image"}, "label": {"names": ["cat", "dog"], "_type": "ClassLabel"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    path = labelled_parquet(tmp_path / "test.parquet", 4, {"label": pa.array([1, 0, 1, None])}, metadata)
    held = load_test_set(str(path), 8)
    assert held.classnames == ["cat", "dog"] and held.labels.tolist() == [1, 0, 1] and held.skipped == 1
    assert held.pixels.shape == (3, 8, 8, 3)
    with pytest.raises(UsageError, match="no label column 'cls'"):
        load_test_set(str(path), 8, "cls")


def test_a_class_label_keeps_its_order_from_ingest_to_a_distilled_hf_export(tmp_path):
    from datasets import load_from_disk

    from curate.distill.source import class_order

    features = {"image": {"_type": "Image"}, "label": {"names": ["zebra", "ant", "owl"], "_type": "ClassLabel"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    path = labelled_parquet(tmp_path / "train.parquet", 6, {"label": pa.array([0, 1, 0, 1, 0, 1])}, metadata)
    run = tmp_path / "run"
    assert main(["ingest", str(path), "--run", str(run)]) == 0
    assert main(["distill", str(run), "--name", "hf", "--label-column", "label", "--method", "relabel", "--ipc", "1",
                 "--image-size", "8", "--width", "4", "--depth", "1", "--teacher", "convnet", "--teacher-epochs",
                 "1", "--relabel-epochs", "1"]) == 0
    assert main(["export", str(run), "--distilled", "hf", "--format", "hf", "--out", str(tmp_path / "out")]) == 0
    dataset = load_from_disk(str(tmp_path / "out"))
    assert dataset.features["label"].names == ["zebra", "ant"]  # the declared order; owl has no image
    assert sorted(dataset["label"]) == [0, 1]
    assert class_order({"10", "2", "b", "a"}, []) == ["2", "10", "a", "b"]  # .cls integers by value


def test_a_label_column_of_too_many_values_is_refused_before_decoding(distilled, monkeypatch, capsys):
    import curate.distill.source as source

    _, run = distilled
    monkeypatch.setattr(source, "MAX_CLASSES", 3)  # the bound is 10,000: eight uids stand for a million here
    capsys.readouterr()
    assert main(["distill", str(run), "--name", "keys", "--label-column", "uid", *LABELLED]) == 2
    err = capsys.readouterr().err.strip()
    assert "--label-column uid has 8 distinct values" in err and "\n" not in err
    assert not (run / "distilled" / "keys").exists()
