"""The shards' own columns at ingest: .cls members, json fields under --json-columns, Parquet columns (--columns),
Hugging Face ClassLabel names and dataset folders, --rename, and clashes refused before anything is written."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate
from curate.cli.main import main
from curate.errors import UsageError
from curate.filters import FILTERS
from curate.io.columns import STAGE_PREFIXES
from curate.io.samples import ReadOptions
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.shards import datacomp_shard, image_bytes
from tests.stages.own_columns import ingested, labelled_parquet, labelled_tar, rows


def test_cls_members_are_integers_or_text(tmp_path):
    run, _ = ingested(tmp_path, [labelled_tar(tmp_path / "a.tar", [b"3\n", b" 7", None, b""])])
    assert rows(run, "SELECT key, cls, typeof(cls) FROM samples ORDER BY key") == [
        ("k0", 3, "BIGINT"), ("k1", 7, "BIGINT"), ("k2", None, "BIGINT"), ("k3", None, "BIGINT")]
    digits = b"9" * 5000  # past Python's limit on converting digits to an int
    text, counts = ingested(tmp_path, [labelled_tar(tmp_path / "b.tar", [b"cat", b"4", b"\xff", digits])], "text")
    assert rows(text, "SELECT cls FROM samples ORDER BY key") == [("cat",), ("4",), (digits.decode(),)]
    assert rows(text, "SELECT reason FROM quarantine") == [("invalid cls",)]
    assert counts["read"] == counts["kept"] + counts["quarantined"] == 4
    entry = text.manifest()["stages"]["ingest"]
    assert entry["own_columns"] == {"cls": "string"} and "cls" in entry["columns"]


def test_json_columns_are_typed_and_objects_refused_by_name_skipped_under_all(tmp_path):
    metas = [{"label": "dog", "score": 0.5, "n": 3, "ok": True, "tags": ["a"], "caption": "c", "dfn_x": 1},
             {"label": "cat", "score": 1, "n": None, "ok": False, "tags": {"b": 1}, "caption": "d", "dfn_x": 2}]
    tar = labelled_tar(tmp_path / "j.tar", [None, None], metas)
    run, _ = ingested(tmp_path, [tar], json_columns="label,score,n,ok")
    assert rows(run, "SELECT label, score, n, ok, typeof(score), typeof(n) FROM samples ORDER BY key") == [
        ("dog", 0.5, 3, True, "DOUBLE", "BIGINT"), ("cat", 1.0, None, False, "DOUBLE", "BIGINT")]
    assert rows(run, "SELECT count(json) FROM samples") == [(2,)]  # the json column stays
    every, _ = ingested(tmp_path, [tar], "all", json_columns="all")
    columns = [c for c, *_ in rows(every, "DESCRIBE samples")]
    assert {"label", "score", "n", "ok"} <= set(columns) and not {"tags", "dfn_x"} & set(columns)
    named, counts = ingested(tmp_path, [tar], "named", json_columns="label,tags")
    assert counts["quarantined"] == 2
    assert [d for (d,) in rows(named, "SELECT detail FROM quarantine")] == [
        "json field 'tags' is a list, not a scalar: --json-columns keeps only text, numbers and booleans",
        "json field 'tags' is an object, not a scalar: --json-columns keeps only text, numbers and booleans"]


def test_parquet_scalar_columns_are_kept_unless_columns_narrows_them(tmp_path):
    shard = labelled_parquet(tmp_path / "p.parquet", 3, {
        "aesthetic": pa.array([5.5, None, 7.0], pa.float32()), "licence": pa.array(["cc", "by", None]),
        "nsfw": pa.array([False, True, None]), "tags": pa.array([["a"], [], None]),
        "width": pa.array([1, 2, 3], pa.int16())})  # curate's own width stands
    run, _ = ingested(tmp_path, [shard])
    assert rows(run, "SELECT aesthetic, licence, nsfw, width FROM samples ORDER BY key") == [
        (5.5, "cc", False, 48), (None, "by", True, 48), (7.0, None, None, 48)]
    assert "tags" not in dict(rows(run, "SELECT column_name, 1 FROM (DESCRIBE samples)"))
    narrow, _ = ingested(tmp_path, [shard], "narrow", columns="licence", rename="licence=licence_name")
    names = [c for c, *_ in rows(narrow, "DESCRIBE samples")]
    assert "licence_name" in names and "aesthetic" not in names and "licence" not in names
    with pytest.raises(UsageError, match="--columns names 'tags', which holds list<element: string> values"):
        ingested(tmp_path, [shard], "list", columns="tags")
    with pytest.raises(UsageError, match="--columns names 'nope', which no Parquet input has"):
        ingested(tmp_path, [shard], "missing", columns="nope")
    renamed, _ = ingested(tmp_path, [shard], "own", rename="width=source_width")
    assert rows(renamed, "SELECT source_width, width FROM samples ORDER BY key LIMIT 1") == [(1, 48)]


def test_hugging_face_class_labels_read_as_names(tmp_path):
    features = {"image": {"_type": "Image"}, "label": {"names": ["cat", "dog"], "_type": "ClassLabel"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    shard = labelled_parquet(tmp_path / "hf.parquet", 4, {"label": pa.array([1, 0, -1, None], pa.int64())},
                             metadata)
    run, _ = ingested(tmp_path, [shard])
    assert rows(run, "SELECT label FROM samples ORDER BY key") == [("dog",), ("cat",), (None,), (None,)]
    entry = run.manifest()["stages"]["ingest"]
    assert entry["class_labels"] == {"label": ["cat", "dog"]} and entry["own_columns"] == {"label": "string"}
    bad = labelled_parquet(tmp_path / "bad.parquet", 2, {"label": pa.array([1, 0])}, {b"huggingface": b"[1"})
    assert rows(ingested(tmp_path, [bad], "bad")[0], "SELECT label FROM samples ORDER BY key") == [(1,), (0,)]


@pytest.mark.parametrize("column, options", [
    ("dfn_score", {}), ("Caption", {}), ("cluster_id", {}), ("ok", {"json_columns": "url"}),
    ("ok", {"json_columns": "label", "rename": "label=KEY"}), ("line\nbreak", {}), ("ok", {"rename": "absent=x"}),
])
def test_a_clash_is_one_line_and_leaves_nothing_behind(tmp_path, column, options):
    shard = labelled_parquet(tmp_path / "p.parquet", 2, {column: pa.array([1, 2])})
    with pytest.raises(UsageError) as error:
        ingested(tmp_path, [shard], **options)
    assert "\n" not in str(error.value).replace("line\nbreak", "") and "--rename" in str(error.value)
    assert not (tmp_path / "run").exists()


def test_the_cli_refuses_a_clash_in_one_line(tmp_path, capsys):
    shard = labelled_parquet(tmp_path / "p.parquet", 2, {"dfn_keep": pa.array([True, False])})
    assert main(["ingest", str(shard), "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--rename dfn_keep=source_dfn_keep" in err
    assert main(["ingest", str(shard), "--run", str(tmp_path / "run"), "--rename", "dfn_keep"]) == 2
    assert "--rename takes old=new pairs" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["ingest", str(shard), "--run", str(tmp_path / "run"), "--rename", "dfn_keep=kept_before"]) == 0
    assert rows(RunDir(tmp_path / "run"), "SELECT kept_before FROM samples ORDER BY key") == [(True,), (False,)]


def test_nulls_long_strings_and_odd_names(tmp_path):
    long = "x" * 10_000
    odd = {'a "quoted" name': pa.array([long, None]), "with space": pa.array([None, 2]),
           "select": pa.array(["from", "where"]), "étiquette 名": pa.array([None, None], pa.string()),
           "'; DROP TABLE samples; --": pa.array([1.5, None])}
    shard = labelled_parquet(tmp_path / "p.parquet", 2, odd)
    run, _ = ingested(tmp_path, [shard])
    got = rows(run, 'SELECT "a ""quoted"" name", "with space", "select", "étiquette 名", '
                    + "\"'; DROP TABLE samples; --\" FROM samples ORDER BY key")
    assert got == [(long, None, "from", None, 1.5), (None, 2, "where", None, None)]
    api = curate.open(run.path).samples(where='"with space" = 2 OR "select" = \'from\'')
    assert api.to_polars(['a "quoted" name', "select"]).rows() == [(long, "from"), (None, "where")]
    entry = run.manifest()["stages"]["ingest"]
    assert sorted(entry["own_columns"]) == sorted(odd) and entry["columns"][-len(odd):] == list(odd)


def test_a_large_file_read_in_pieces_keeps_its_columns_row_for_row(tmp_path, monkeypatch):
    shard = labelled_parquet(tmp_path / "p.parquet", 5, {"rank": pa.array([4, None, 2, 1, 0], pa.int32())},
                             row_group_size=2)
    whole, _ = ingested(tmp_path, [shard], "whole")
    monkeypatch.setattr("curate.io.inputs.PIECE_ROWS", 2)
    pieces, _ = ingested(tmp_path, [shard], "pieces")
    query = "SELECT key, image_offset, rank FROM samples ORDER BY key"
    assert rows(pieces, query) == rows(whole, query) == [
        ("k0", 0, 4), ("k1", 1, None), ("k2", 2, 2), ("k3", 3, 1), ("k4", 4, 0)]
    assert len(rows(pieces, "SELECT * FROM shards")) == 3


def test_a_rerun_with_other_column_options_is_refused(tmp_path):
    tar = labelled_tar(tmp_path / "a.tar", [b"1"], [{"label": "x"}])
    run, first = ingested(tmp_path, [tar], json_columns="label")
    assert ingest([str(tar)], run, options=ReadOptions(json_columns=["label"]), progress=False) == first
    with pytest.raises(UsageError, match="other inputs or options"):
        ingest([str(tar)], run, options=ReadOptions(json_columns="all"), progress=False)
    assert ReadOptions(**run.manifest()["stages"]["ingest"]["config"]["options"]) == ReadOptions(json_columns="label")


def test_datacomp_metadata_keeps_its_other_columns_beside_the_scores(tmp_path):
    uids = datacomp_shard(tmp_path, np.ones((3, 4)))
    table = pq.read_table(tmp_path / "0000.parquet")
    pq.write_table(table.append_column("language", pa.array(["en", None, "fr"])), tmp_path / "0000.parquet")
    run, counts = ingested(tmp_path, [tmp_path / "0000.parquet"])
    assert counts == dict(read=3, kept=3, quarantined=0, shard_errors=0)
    got = rows(run, "SELECT uid, language, clip_l14_similarity_score IS NOT NULL FROM samples")
    assert sorted(got) == sorted(zip(uids, ["en", None, "fr"], [True] * 3, strict=True))
    assert run.manifest()["stages"]["ingest"]["own_columns"] == {"language": "string"}


def test_text_that_is_not_utf8_in_a_kept_column_is_null_with_a_reason(tmp_path):
    raw = pa.array([b"ok", b"\xff\xfe", None], pa.binary())
    shard = labelled_parquet(tmp_path / "p.parquet", 3, {"note": pa.Array.from_buffers(pa.string(), 3, raw.buffers(),
                                                                                         null_count=1)})
    run, counts = ingested(tmp_path, [shard])
    assert rows(run, "SELECT note FROM samples ORDER BY key") == [("ok",), (None,), (None,)]
    assert rows(run, "SELECT reason, detail FROM quarantine") == [
        ("invalid column text", "column 'note': 1 text values are not valid UTF-8; they are null")]
    assert counts == dict(read=3, kept=3, quarantined=0, shard_errors=1)


def test_own_columns_never_reach_the_stages_that_re_read_shards(tmp_path):
    meta = {"image": "photo.jpg", "label": 3}
    run, _ = ingested(tmp_path, [labelled_tar(tmp_path / "a.tar", [b"1"], [meta])], json_columns="all")
    curate.open(run.path).filter("basic")
    assert rows(run, "SELECT image, label, cls, basic_keep IS NOT NULL FROM samples") == [("photo.jpg", 3, 1, True)]


def test_every_registered_method_prefix_is_reserved():
    assert set(FILTERS) <= set(STAGE_PREFIXES)


def test_a_hugging_face_dataset_folder_is_an_input_with_its_class_names(tmp_path):
    import datasets

    from curate.export import export_subset

    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["cat", "dog"]),
                                  "score": datasets.Value("float32")})
    data = {"image": [{"bytes": image_bytes((i * 60, 9, 9)), "path": None} for i in range(4)],
            "text": [f"photo {i}" for i in range(4)], "label": [0, 1, 1, 0], "score": [0.5, None, 1.5, 2.0]}
    folder = tmp_path / "hf"
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(folder), num_shards=2)
    (folder / "cache-0123.arrow").write_bytes(b"not a data file")  # datasets' own cache files are left out
    run, counts = ingested(tmp_path, [folder])
    assert counts == dict(read=4, kept=4, quarantined=0, shard_errors=0)
    assert rows(run, "SELECT caption, label, score FROM samples ORDER BY shard, image_offset") == [
        ("photo 0", "cat", 0.5), ("photo 1", "dog", None), ("photo 2", "dog", 1.5), ("photo 3", "cat", 2.0)]
    assert run.manifest()["stages"]["ingest"]["class_labels"] == {"label": ["cat", "dog"]}
    summary = export_subset(run, None, "parquet", tmp_path / "out", progress=False)  # re-reads the .arrow images
    assert summary["samples"] == 4 and summary["skipped"] == 0
    (tmp_path / "cut").mkdir()
    cut = (folder / "data-00000-of-00002.arrow").read_bytes()
    (tmp_path / "cut" / "d.arrow").write_bytes(cut[: len(cut) // 2])  # a data file cut short: the shard's error
    damaged, counts = ingested(tmp_path, [tmp_path / "cut" / "d.arrow"], "damaged")
    assert counts["shard_errors"] == 1 and rows(damaged, "SELECT reason FROM quarantine") == [("unreadable shard",)]
    datasets.Dataset.from_dict({"text": ["no image"] * 2}).save_to_disk(str(tmp_path / "textonly"))
    _, counts = ingested(tmp_path, [tmp_path / "textonly"], "textrun")
    assert counts == dict(read=2, kept=0, quarantined=2, shard_errors=0)


def test_a_file_naming_two_columns_alike_is_quarantined_row_by_row_not_a_crash(tmp_path):
    # An image file whose extra column is named twice, and DataComp metadata whose uid is: which one is meant would
    # be a guess, so every row goes to the quarantine with the names, and the counts add up.
    image = labelled_parquet(tmp_path / "a.parquet", 3)
    table = pq.read_table(image)
    table = pa.Table.from_arrays([*table.columns, pa.array([1, 2, 3]), pa.array([4, 5, 6])],
                                 names=[*table.column_names, "score", "score"])
    pq.write_table(table, image)
    meta = pa.Table.from_arrays([pa.array(["u1", "u2"]), pa.array(["x", "y"]), pa.array(["u3", "u4"])],
                                names=["uid", "text", "uid"])
    pq.write_table(meta, tmp_path / "b.parquet")
    run, counts = ingested(tmp_path, [image, tmp_path / "b.parquet"])
    assert counts == dict(read=5, kept=0, quarantined=5, shard_errors=0)
    details = rows(run, "SELECT DISTINCT detail FROM quarantine ORDER BY 1")
    assert details == [("columns named more than once: 'score'",), ("columns named more than once: 'uid'",)]
