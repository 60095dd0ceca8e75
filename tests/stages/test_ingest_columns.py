"""The shards' own columns at ingest: .cls members, json fields under --json-columns, Parquet columns (--columns),
Hugging Face ClassLabel names, --rename, clashes refused before anything is written, and one type per column for
the run whatever order the shards finish in."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate
from curate.catalogs import connect
from curate.cli.main import main
from curate.errors import UsageError
from curate.filters import FILTERS
from curate.io.columns import STAGE_PREFIXES
from curate.io.samples import ReadOptions
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.conftest import catalog_snapshot
from tests.shards import datacomp_shard, image_bytes, image_parquet, sample_members, write_tar


def labelled_tar(path, classes, metas=None):
    """Writes a tar of one sample per class (bytes of its .cls member, None for none) with optional json."""
    members = []
    for i, cls in enumerate(classes):
        meta = (metas or [None] * len(classes))[i]
        members += sample_members(f"k{i}", f"caption {i}", image_bytes((i * 40 % 256, 9, 9)), meta)
        if cls is not None:
            members.append((f"k{i}.cls", cls))
    return write_tar(path, members)


def rows(run, sql):
    con = connect(run)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def ingested(tmp_path, inputs, name="run", **options):
    run = RunDir(tmp_path / name)
    counts = ingest([str(i) for i in inputs], run, options=ReadOptions(**options), progress=False)
    return run, counts


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


def labelled_parquet(path, n=4, extra=None, metadata=None, row_group_size=None):
    """Writes an image Parquet shard with extra columns (name -> Arrow array), optional schema metadata."""
    image_parquet(path, n)
    table = pq.read_table(path)
    for name, values in (extra or {}).items():
        table = table.append_column(name, values)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


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


def mixed_pool(pool):
    """Writes shards whose cls and score columns change type: cls int64 in two tars, text in one; score text in one
    Parquet file, double in another (a tie)."""
    pool.mkdir()
    labelled_tar(pool / "a.tar", [b"1", b"2"])
    labelled_tar(pool / "b.tar", [b"cat"])
    labelled_tar(pool / "c.tar", [b"3"])
    labelled_parquet(pool / "d.parquet", 2, {"score": pa.array(["high", "low"])})
    labelled_parquet(pool / "e.parquet", 2, {"score": pa.array([0.5, 0.25])})


def test_a_column_that_changes_type_across_shards_is_null_there_with_a_reason(tmp_path):
    pool = tmp_path / "pool"
    mixed_pool(pool)
    local, counts = ingested(tmp_path, [pool])
    assert rows(local, "SELECT shard, cls, score FROM samples ORDER BY shard, key") == [
        (str(pool / "a.tar"), 1, None), (str(pool / "a.tar"), 2, None), (str(pool / "b.tar"), None, None),
        (str(pool / "c.tar"), 3, None), (str(pool / "d.parquet"), None, "high"), (str(pool / "d.parquet"), None, "low"),
        (str(pool / "e.parquet"), None, None), (str(pool / "e.parquet"), None, None)]
    assert rows(local, "SELECT shard, key, reason, detail FROM quarantine ORDER BY shard") == [
        (str(pool / "b.tar"), None, "column type mismatch",
         "column 'cls' is string in b but int64 in most shards: its values there are null"),
        (str(pool / "e.parquet"), None, "column type mismatch",
         "column 'score' is double in e but string in most shards: its values there are null")]
    assert counts == dict(read=8, kept=8, quarantined=0, shard_errors=2)
    assert local.manifest()["stages"]["ingest"]["own_columns"] == {"cls": "int64", "score": "string"}
    two = RunDir(tmp_path / "two")
    assert ingest([str(pool)], two, workers=2, progress=False) == counts
    assert catalog_snapshot(two) == catalog_snapshot(local)
    assert ingest([str(pool)], local, progress=False) == counts  # a rerun finds the same, quarantined once


def test_the_ray_runner_settles_the_same_types(tmp_path, ray_local):
    mixed_pool(tmp_path / "pool")
    local, on_ray = RunDir(tmp_path / "local"), RunDir(tmp_path / "ray")
    ingest([str(tmp_path / "pool")], local, progress=False)
    ingest([str(tmp_path / "pool")], on_ray, "ray", progress=False)
    assert catalog_snapshot(local) == catalog_snapshot(on_ray)
    assert local.manifest()["stages"]["ingest"]["own_columns"] == on_ray.manifest()["stages"]["ingest"]["own_columns"]


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


JSON_VALUES = [0, -5, 2**70, 1.5, float("nan"), True, False, None, "", "x" * 10_000, "é\u2028", [1], {"a": 1}]


def refused(raw_cls: bytes, meta: dict) -> bool:
    """The oracle of which drawn samples are quarantined: a .cls that is not UTF-8, a json label not a scalar."""
    try:
        raw_cls.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return isinstance(meta["label"], dict | list)


def shard_type(values: list) -> str | None:
    """The oracle of a shard's type for a column from the values of its kept samples."""
    kinds = {"bool" if isinstance(v, bool) else "int" if isinstance(v, int) and abs(v) < 2**63 else
             "float" if isinstance(v, float) else "text" for v in values if v is not None}
    if not kinds:
        return None
    return ("bool" if kinds == {"bool"} else "int64" if kinds == {"int"} else
            "double" if kinds <= {"int", "float"} else "string")


def as_text(value, kind: str) -> str:
    return (str(int(value)) if kind == "int64" else value if isinstance(value, str) else json.dumps(value)
            if kind == "string" else str(value).lower())


@pytest.mark.parametrize("seed", range(6))
def test_generated_labels_and_json_fields_are_accounted_for(tmp_path, seed):
    """Shards of random .cls bytes and json field values: whatever is drawn, nothing escapes, every sample is
    kept or quarantined as the oracle says, and each kept value is its shard's value in the run's type, or null
    where its shard's type is another (with a quarantine row naming the column)."""
    rng = np.random.default_rng(seed)
    pool = tmp_path / "pool"
    pool.mkdir()
    drawn = {}
    for s in range(int(rng.integers(2, 5))):
        classes = [rng.choice([b"7", b"-3", b"cat", b"\xfe\xff", b"", b"99999999999999999999", rng.bytes(4)])
                   for _ in range(int(rng.integers(1, 6)))]
        metas = [{"label": JSON_VALUES[int(rng.integers(len(JSON_VALUES)))]} for _ in classes]
        labelled_tar(pool / f"s{s}.tar", classes, metas)
        drawn[f"s{s}"] = [(c, m) for c, m in zip(classes, metas, strict=True)]
    run, counts = ingested(tmp_path, [pool], json_columns="label")
    assert counts["read"] == counts["kept"] + counts["quarantined"] == sum(map(len, drawn.values()))
    expected_out = sorted((f"s{s}", f"k{i}") for s in range(len(drawn)) for i, (c, m) in enumerate(drawn[f"s{s}"])
                          if refused(c, m))
    out = rows(run, "SELECT shard, key FROM quarantine WHERE key IS NOT NULL")
    assert sorted((shard.rsplit("/", 1)[1][:-4], key) for shard, key in out) == expected_out
    types = run.manifest()["stages"]["ingest"]["own_columns"]
    mismatched = {(shard.rsplit("/", 1)[1][:-4], detail.split("'")[1])
                  for shard, detail in rows(run, "SELECT shard, detail FROM quarantine WHERE key IS NULL")}
    kept = {sid: [(c, m) for c, m in samples if not refused(c, m)] for sid, samples in drawn.items()}
    for sid, samples in kept.items():
        own = {"cls": shard_type([None if not c.strip() else int(c) if c.strip().lstrip(b"+-").isdigit()
                                  and abs(int(c)) < 2**63 else c.decode().strip() for c, _ in samples]),
               "label": shard_type([m["label"] for _, m in samples])}
        for column, kind in own.items():
            assert ((sid, column) in mismatched) == (kind is not None and kind != types.get(column))
    for shard, key, cls, label in rows(run, "SELECT shard, key, cls::VARCHAR, label::VARCHAR FROM samples"):
        raw_cls, meta = drawn[shard.rsplit("/", 1)[1][:-4]][int(key[1:])]
        if cls is not None:
            assert cls == (str(int(raw_cls)) if types["cls"] == "int64" else raw_cls.decode().strip())
        if label is not None and not (isinstance(meta["label"], float) and meta["label"] != meta["label"]):
            assert label == as_text(meta["label"], types["label"]) or float(label) == meta["label"]


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


NAMES = ["label", "Label", 'a "q"', "sp ace", "select", "名前", "dfn_x", "sha256", "width", "x\ty",
         "__index_level_0__"]
WEIGHTS = np.array([3, 1, 3, 3, 3, 3, 0.4, 2, 2, 0.4, 2]) / 22.8  # refused names drawn now and then
KINDS = {"int": (pa.int32(), lambda r: int(r.integers(-9, 9))), "float": (pa.float64(), lambda r: float(r.random())),
         "text": (pa.string(), lambda r: "é" * int(r.integers(0, 4))),
         "bool": (pa.bool_(), lambda r: bool(r.random() < 0.5))}


@pytest.mark.parametrize("seed", range(10))
def test_generated_column_names_and_types_work_or_are_refused_in_one_line(tmp_path, seed):
    """Parquet files with columns drawn from odd, clashing and ordinary names, each of a random type with nulls:
    either one line refuses them and the run folder is not made, or every kept column reads back, its values
    null exactly in the files whose type is not the run's (a quarantine row saying so)."""
    rng = np.random.default_rng(seed)
    drawn = []
    for f in range(3):
        columns = {}
        for name in dict.fromkeys(rng.choice(NAMES, size=int(rng.integers(1, 4)), p=WEIGHTS)):
            kind, value = KINDS[str(rng.choice(list(KINDS)))]
            columns[name] = pa.array([value(rng) if rng.random() < 0.8 else None for _ in range(3)], kind)
        drawn.append((labelled_parquet(tmp_path / f"f{f}.parquet", 3, columns), columns))
    names = {name for _, columns in drawn for name in columns}
    try:
        run, counts = ingested(tmp_path, [path for path, _ in drawn])
    except UsageError as exc:
        assert "\n" not in str(exc).replace("x\ty", "") and "--rename" in str(exc)
        assert names & {"dfn_x", "x\ty"} or {"label", "Label"} <= names
        assert not (tmp_path / "run").exists()
        return
    assert not (names & {"dfn_x", "x\ty"} or {"label", "Label"} <= names)
    assert counts["read"] == counts["kept"] == 9
    types = run.manifest()["stages"]["ingest"]["own_columns"]
    assert set(types) == names - {"sha256", "width", "__index_level_0__"}
    nulled = {(shard, detail.split("'")[1]) for shard, detail in rows(run, "SELECT shard, detail FROM quarantine")}
    for path, columns in drawn:
        for name in set(columns) & set(types):
            quoted = '"' + name.replace('"', '""') + '"'
            got = [v for (v,) in rows(run, f"SELECT {quoted} FROM samples WHERE shard = '{path}' ORDER BY key")]
            if (str(path), name) in nulled:
                assert got == [None] * 3
            else:
                expected = columns[name].to_pylist()
                assert got == expected or got == pytest.approx(expected)


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
