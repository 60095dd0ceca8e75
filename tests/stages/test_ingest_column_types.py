"""One type per kept column for the run, whatever order the shards finish in: a shard of another type keeps its
samples with the column null and a quarantine row naming it; generated .cls bytes, json values and Parquet column
names and types checked against an oracle."""

import json

import numpy as np
import pyarrow as pa
import pytest

from curate.errors import UsageError
from curate.rundir import RunDir
from curate.stages.ingest import ingest
from tests.conftest import catalog_snapshot
from tests.stages.own_columns import ingested, labelled_parquet, labelled_tar, mixed_pool, rows


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
