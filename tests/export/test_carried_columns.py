"""Exports carry the user's columns: a WebDataset `.cls` as a `.cls` member, kept and annotated columns in each
sample's json and as Parquet columns, and a Hugging Face ClassLabel back as a ClassLabel with its names."""

import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

import curate
from curate.export import export_subset
from tests.stages.own_columns import ingested, labelled_parquet, labelled_tar

FEATURES = {"image": {"_type": "Image"}, "label": {"names": ["cat", "dog", "fox"], "_type": "ClassLabel"}}


def hf_run(tmp_path):
    metadata = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}
    extra = {"label": pa.array([2, 0, None, 1]), "aesthetic": pa.array([5.5, None, 4.0, 6.25])}
    shard = labelled_parquet(tmp_path / "hf.parquet", 4, extra, metadata)
    run, _ = ingested(tmp_path, [shard])
    uids = curate.open(run.path).sql("SELECT uid FROM samples ORDER BY key")["uid"].to_list()
    curate.open(run.path).annotate("mine", pa.table({"uid": uids[:2], "lang": ["en", "de"]}))
    return run, uids


def test_a_hugging_face_class_label_and_the_other_columns_survive_export_to_hf_and_parquet(tmp_path):
    from datasets import ClassLabel, load_dataset, load_from_disk

    run, uids = hf_run(tmp_path)
    export_subset(run, None, "hf", tmp_path / "hf", progress=False)
    dataset = load_from_disk(str(tmp_path / "hf"))
    assert isinstance(dataset.features["label"], ClassLabel)
    assert dataset.features["label"].names == ["cat", "dog", "fox"]
    rows = {row["uid"]: row for row in dataset.remove_columns("image")}
    assert [rows[u]["label"] for u in uids] == [2, 0, None, 1]
    assert [dataset.features["label"].int2str(rows[u]["label"]) for u in (uids[0], uids[3])] == ["fox", "dog"]
    assert [rows[u]["aesthetic"] for u in uids] == [5.5, None, 4.0, 6.25]
    assert [rows[u]["mine_lang"] for u in uids] == ["en", "de", None, None]

    export_subset(run, "label = 'fox' OR label IS NULL", "parquet", tmp_path / "pq", progress=False)
    table = pq.read_table(tmp_path / "pq" / "part-00000.parquet")
    assert sorted(table.column_names[-3:]) == ["aesthetic", "label", "mine_lang"]
    parts = load_dataset("parquet", data_files=str(tmp_path / "pq" / "part-00000.parquet"), split="train",
                         cache_dir=str(tmp_path / "cache"))
    assert parts.features["label"].names == ["cat", "dog", "fox"] and sorted(parts["label"], key=str) == [2, None]


def test_webdataset_exports_keep_the_class_member_and_the_columns_in_the_json(tmp_path):
    shard = labelled_tar(tmp_path / "a.tar", [b"3", None, b"7"])
    run, _ = ingested(tmp_path, [shard])
    uids = curate.open(run.path).sql("SELECT uid FROM samples ORDER BY key")["uid"].to_list()
    curate.open(run.path).annotate("score", pa.table({"uid": uids, "value": [0.5, 1.5, None]}))
    export_subset(run, None, "webdataset", tmp_path / "wds", progress=False)
    with tarfile.open(tmp_path / "wds" / "00000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert members[f"{uids[0]}.cls"] == b"3" and members[f"{uids[2]}.cls"] == b"7"
    assert f"{uids[1]}.cls" not in members
    metas = [json.loads(members[f"{u}.json"]) for u in uids]
    assert [m.get("score_value") for m in metas] == [0.5, 1.5, None] and all("cls" not in m for m in metas)
